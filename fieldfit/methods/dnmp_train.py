"""DNMP training steps (METHODS.md 2.3), both stages under one time budget.

Geometry stage (``GeometryStepper``): latents, centre offsets, vertex features and the MLPs are
optimised photometrically (scenes here carry no MVS depth, so the paper's depth loss has no
target): each step rasterizes, with gradients to the vertex positions, one random window of one
training view and compares the composited colours with the photo. Radiance stage
(``RadianceStepper``): the geometry is frozen, so every training view is rasterized once into a
fragment cache (face id int32 + barycentrics float16, hit pixels only: the paper's per-camera
cache, compact) and steps draw random cached pixels: only vertex features and MLPs train.

Vertex features train through dnmp_rows.RowAdam (a lazy Adam on the rows a batch touched); the
rest through a dense Adam. ``self.opt`` is the pair (dense Adam, RowAdam).

Alpha scenes composite on a random colour per ray (their targets are premultiplied, as in rbf),
so the opacity learns the alpha; other scenes composite on the background MLP.
"""

import numpy as np
import torch

from fieldfit.render.raster import PinholeCamera

from .common import set_lr
from .dnmp_render import LayerBatch, rasterize_levels, rasterize_window, shade
from .radiance_data import PixelStore, frame_rays


def frame_offsets(scene, ids: list[int]) -> np.ndarray:
    """Start of each frame's pixels in a PixelStore built on ``ids`` (row-major frames, in order)."""
    sizes = [scene.frames[i].width * scene.frames[i].height for i in ids]
    return np.concatenate([[0], np.cumsum(sizes)])


class _Base:
    def __init__(self, model, opt, store: PixelStore, scene, extra, seed: int):
        self.model, self.opt, self.store, self.scene, self.extra = model, opt, store, scene, extra
        self.rng = np.random.default_rng(seed)
        self.alpha_bg = bool(scene.has_alpha)
        self.rays = self.calls = 0

    def _background(self, dirs):
        n = dirs.shape[0]
        return torch.rand(n, 3) if self.alpha_bg else self.model.background(dirs)

    def _step(self, loss, progress):
        for opt in self.opt:  # dense Adam (MLPs, geometry) and SparseAdam (vertex features)
            set_lr(opt, progress, self.extra["lr_final"])
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.opt:
            opt.step()
        self.calls += 1


class GeometryStepper(_Base):
    """One random window of one training view per step, rasterized with gradients."""

    def __init__(self, model, opt, store, scene, extra, seed):
        super().__init__(model, opt, store, scene, extra, seed)
        self.ids = scene.split("train")
        self.offsets = frame_offsets(scene, self.ids)

    def __call__(self, i: int, progress: float) -> dict:
        j = int(self.rng.integers(len(self.ids)))
        f = self.scene.frames[self.ids[j]]
        w = min(int(self.extra["window"]), f.width)
        h = min(int(self.extra["window"]), f.height)
        x0, y0 = int(self.rng.integers(f.width - w + 1)), int(self.rng.integers(f.height - h + 1))
        cam = PinholeCamera.of_frame(f).crop(x0, y0, w, h)
        layers, geometry = rasterize_window(self.model, cam)
        rows = np.arange(y0, y0 + h)[:, None] * f.width + np.arange(x0, x0 + w)[None]
        batch = self.store.take(self.offsets[j] + rows.reshape(-1))
        bg = self._background(batch.dirs)
        rgb, _ = shade(self.model, layers, batch.dirs, bg, geometry=geometry, row_adam=self.opt[1])
        loss = torch.nn.functional.mse_loss(rgb, batch.target(bg))
        self.rays += w * h
        self._step(loss, progress)
        return {"loss": loss.detach()}


class FragmentCache:
    """Fragments of every training pixel that some primitive covers (geometry frozen); with the model's
    ``antialias`` also the four sub-samples of each outline pixel (dnmp_edges)."""

    def __init__(self, model, scene, ids: list[int], log=None):
        from .dnmp_edges import SUB, edge_pixels, rasterize_subpixels

        offsets = frame_offsets(scene, ids)
        pix, faces, barys, epix, efaces, ebarys = [], [], [], [], [], []
        for j, i in enumerate(ids):
            cam = PinholeCamera.of_frame(scene.frames[i])
            layers = rasterize_levels(model, cam)
            hit = (layers.face >= 0).any(1)
            if model.antialias:
                edges = edge_pixels(hit, cam.width, cam.height)
                sub = rasterize_subpixels(model, cam, edges)
                hit[edges] = False
                epix.append(edges.numpy() + offsets[j])
                kt = sub.face.shape[1]
                efaces.append(sub.face.int().reshape(edges.numel(), SUB, kt))
                ebarys.append(sub.bary.half().reshape(edges.numel(), SUB, kt, 3))
            hit = hit.nonzero().squeeze(-1)
            pix.append(hit.numpy() + offsets[j])
            faces.append(layers.face[hit].int())
            barys.append(layers.bary[hit].half())
        self.face = torch.cat(faces)
        self.bary = torch.cat(barys)
        self.edge_pixels = np.concatenate(epix) if epix else np.zeros(0, np.int64)
        self.edge_face = torch.cat(efaces) if efaces else None
        self.edge_bary = torch.cat(ebarys) if ebarys else None
        self.pixels = np.concatenate(pix + [self.edge_pixels])  # every pixel with something cached
        self.total = int(offsets[-1])
        self.row_of = self.edge_of = None

    def lookup(self, pixels: np.ndarray) -> LayerBatch:
        """Layers of arbitrary training pixels (misses get empty layers; outline pixels their sub-samples)."""
        if self.row_of is None:
            self.row_of = np.full(self.total, -1, np.int64)
            self.row_of[self.pixels[:len(self.face)]] = np.arange(len(self.face))
            self.edge_of = np.full(self.total, -1, np.int64)
            self.edge_of[self.edge_pixels] = np.arange(len(self.edge_pixels))
        rows = torch.from_numpy(self.row_of[pixels])
        ok = rows >= 0
        face = torch.full((len(pixels), self.face.shape[1]), -1, dtype=torch.long)
        bary = torch.zeros(len(pixels), self.face.shape[1], 3)
        face[ok] = self.face[rows[ok]].long()
        bary[ok] = self.bary[rows[ok]].float()
        if self.edge_face is None:
            return LayerBatch(face, bary)
        e = torch.from_numpy(self.edge_of[pixels])
        on = (e >= 0).nonzero().squeeze(-1)
        rest = (e < 0).nonzero().squeeze(-1)
        sub = self.edge_face.shape[1]
        owner = torch.cat([rest, on.repeat_interleave(sub)])
        face = torch.cat([face[rest], self.edge_face[e[on]].long().reshape(-1, face.shape[1])])
        bary = torch.cat([bary[rest], self.edge_bary[e[on]].float().reshape(-1, face.shape[1], 3)])
        return LayerBatch(face, bary, None, owner, len(pixels))


class RadianceStepper(_Base):
    """Random cached pixels per step: hit pixels only for alpha scenes, all pixels otherwise."""

    def __init__(self, model, opt, store, scene, extra, seed, cache: FragmentCache):
        super().__init__(model, opt, store, scene, extra, seed)
        self.cache = cache

    def __call__(self, i: int, progress: float) -> dict:
        n = int(self.extra["batch"])
        if self.alpha_bg:
            pixels = self.cache.pixels[self.rng.integers(0, len(self.cache.pixels), n)]
        else:
            pixels = self.rng.integers(0, self.store.count, n)
        layers = self.cache.lookup(pixels)
        batch = self.store.take(pixels)
        bg = self._background(batch.dirs)
        rgb, _ = shade(self.model, layers, batch.dirs, bg, row_adam=self.opt[1])
        loss = torch.nn.functional.mse_loss(rgb, batch.target(bg))
        self.rays += n
        self._step(loss, progress)
        return {"loss": loss.detach()}


def frame_dirs(scene, frame) -> torch.Tensor:
    return frame_rays(scene, frame)[1]


__all__ = ["FragmentCache", "GeometryStepper", "RadianceStepper", "frame_dirs", "frame_offsets"]
