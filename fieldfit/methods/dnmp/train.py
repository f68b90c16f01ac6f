"""DNMP training steps (METHODS.md 2.3), both stages under one time budget.

Geometry stage (``GeometryStepper``): latents, centre offsets, vertex features and the MLPs are
optimised photometrically (scenes here carry no MVS depth, so the paper's depth loss has no
target): each step rasterizes, with gradients to the vertex positions, one random window of one
training view and compares the composited colours with the photo. Radiance stage
(``RadianceStepper``): the geometry is frozen, so every training view is rasterized once into a
fragment cache (face id int32 + barycentrics float16, hit pixels only: the paper's per-camera
cache, compact) and steps draw random cached pixels: only vertex features and MLPs train.

Vertex features train through ``rows.RowAdam`` (a lazy Adam on the rows a batch touched); the
rest through a dense Adam. ``self.opt`` is the pair (dense Adam, ``rows.RowAdam``).

Alpha scenes composite on a random colour per ray (their targets are premultiplied, as in rbf),
so the opacity learns the alpha; other scenes composite on the background MLP.

Devices: the steps run on the model's device (``DNMPModel.device``). The random draws stay where they are on
the CPU (numpy pixel and window draws, torch's CPU generator for the random backgrounds), so a CPU run draws the
same numbers whatever the device; batches from the ``PixelStore`` (host memory, or the GPU after ``keep_on``) and
the cache's fragments are moved to the model's device.
"""

import numpy as np
import torch

from fieldfit import dist
from fieldfit.optim import set_lr
from fieldfit.tasks.radiance import PixelStore, camera_rays

from .edges import SUB, edge_pixels, rasterize_subpixels
from .model import LayerBatch, rasterize_levels, rasterize_window, shade


def frame_offsets(scene, ids: list[int]) -> np.ndarray:
    """Start of each frame's pixels in a PixelStore built on ``ids`` (row-major frames, in order)."""
    sizes = [scene.frames[i].camera.pixels for i in ids]
    return np.concatenate([[0], np.cumsum(sizes)])


class _Base:
    def __init__(self, model, opt, store: PixelStore, scene, extra, seed: int):
        self.model, self.opt, self.store, self.scene, self.extra = model, opt, store, scene, extra
        self.device = model.device
        self.rng = np.random.default_rng(dist.sample_seed(seed))  # each rank its own pixels (rank 0: the seed)
        self.alpha_bg = bool(scene.has_alpha)
        self.rays = self.calls = 0

    def _background(self, dirs):
        n = dirs.shape[0]
        if self.alpha_bg:  # drawn on the CPU generator (the same colours on any device), then moved
            return torch.rand(n, 3, device="cpu").to(dirs.device)
        return self.model.background(dirs)

    def _step(self, loss, progress) -> dict:
        """Step the optimizers on ``loss`` (the colour error); the step's result for the trainer."""
        rates = []
        for opt in self.opt:  # dense Adam (MLPs, geometry) and SparseAdam (vertex features)
            rates.append(set_lr(opt, progress, self.extra.lr_final))
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.opt:
            opt.step()
        self.calls += 1
        return {"loss": loss.detach(), "mse": loss.detach(), "lr": rates[0]}


class GeometryStepper(_Base):
    """One random window of one training view per step, rasterized with gradients."""

    def __init__(self, model, opt, store, scene, extra, seed):
        super().__init__(model, opt, store, scene, extra, seed)
        self.ids = scene.split("train")
        self.offsets = frame_offsets(scene, self.ids)

    def __call__(self, i: int, progress: float) -> dict:
        j = int(self.rng.integers(len(self.ids)))
        f = self.scene.frames[self.ids[j]].camera
        w = min(int(self.extra.window), f.width)
        h = min(int(self.extra.window), f.height)
        x0, y0 = int(self.rng.integers(f.width - w + 1)), int(self.rng.integers(f.height - h + 1))
        cam = f.crop(x0, y0, w, h)
        layers, geometry = rasterize_window(self.model, cam)
        rows = np.arange(y0, y0 + h)[:, None] * f.width + np.arange(x0, x0 + w)[None]
        batch = self.store.take(self.offsets[j] + rows.reshape(-1)).to(self.device)
        bg = self._background(batch.dirs)
        rgb, _ = shade(self.model, layers, batch.dirs, bg, geometry=geometry, row_adam=self.opt[1])
        loss = torch.nn.functional.mse_loss(rgb, batch.target(bg))
        self.rays += w * h
        return {**self._step(loss, progress), "batch": w * h}


class FragmentCache:
    """Fragments of every training pixel that some primitive covers (geometry frozen); with the model's
    ``antialias`` also the four sub-samples of each outline pixel (dnmp_edges).

    Storage: face ids int32 and barycentrics float16 (10 bytes per layer; ``face`` [C,Kt], ``bary`` [C,Kt,3] of
    the C hit pixels, ``edge_face`` [E,4,Kt], ``edge_bary`` [E,4,Kt,3] of the outline pixels). The frames are
    rasterized on the model's device. On the CPU the cache is in host memory. On a GPU it stays on the GPU while
    it fits: its bytes are kept under ``share`` of the GPU memory that was free when the build started; when the
    next frame would pass that, what is cached so far moves to host memory and the rest of the frames are kept
    there too (``on_device`` False, logged); ``lookup`` then gathers a batch's rows on the host and moves only the
    batch (8192 pixels x 6 layers: about 0.6 MB) to the GPU. The pixel -> row tables (``row_of``, ``edge_of``) are
    numpy on the host either way: pixels are ids of the host-side ``PixelStore``. ``lookup`` returns its layers on
    the model's device.
    """

    def __init__(self, model, scene, ids: list[int], log=None, share: float = 0.25):
        self.device = model.device
        keep = self.device  # where the cached rows are kept
        limit = None
        if keep.type == "cuda":
            free, _ = torch.cuda.mem_get_info(keep)
            limit = share * free
        held = 0
        offsets = frame_offsets(scene, ids)
        pix, faces, barys, epix, efaces, ebarys = [], [], [], [], [], []
        for j, i in enumerate(ids):
            cam = scene.frames[i].camera
            layers = rasterize_levels(model, cam)
            hit = (layers.face >= 0).any(1)
            new = []
            if model.antialias:
                edges = edge_pixels(hit, cam.width, cam.height)
                sub = rasterize_subpixels(model, cam, edges)
                hit[edges] = False
                epix.append(edges.cpu().numpy() + offsets[j])
                kt = sub.face.shape[1]
                new += [(efaces, sub.face.int().reshape(edges.numel(), SUB, kt)),
                        (ebarys, sub.bary.half().reshape(edges.numel(), SUB, kt, 3))]
            hit = hit.nonzero().squeeze(-1)
            pix.append(hit.cpu().numpy() + offsets[j])
            new += [(faces, layers.face[hit].int()), (barys, layers.bary[hit].half())]
            size = sum(t.numel() * t.element_size() for _, t in new)
            if limit is not None and keep.type == "cuda" and held + size > limit:
                keep = torch.device("cpu")
                for parts in (faces, barys, efaces, ebarys):
                    parts[:] = [t.cpu() for t in parts]
                if log:
                    log(f"dnmp fragment cache: over {limit / 2**20:.0f} MB of GPU memory after {j} of {len(ids)} "
                        "frames; kept in host memory, batches are moved to the GPU")
            held += size
            for parts, t in new:
                parts.append(t.to(keep))
        self.on_device = keep == self.device
        self.face = torch.cat(faces)
        self.bary = torch.cat(barys)
        self.edge_pixels = np.concatenate(epix) if epix else np.zeros(0, np.int64)
        self.edge_face = torch.cat(efaces) if efaces else None
        self.edge_bary = torch.cat(ebarys) if ebarys else None
        self.pixels = np.concatenate(pix + [self.edge_pixels])  # every pixel with something cached
        self.total = int(offsets[-1])
        self.row_of = self.edge_of = None

    def lookup(self, pixels: np.ndarray) -> LayerBatch:
        """Layers of arbitrary training pixels (misses get empty layers; outline pixels their sub-samples), on the
        model's device; ``pixels`` [N] numpy ids of the training ``PixelStore``."""
        if self.row_of is None:
            self.row_of = np.full(self.total, -1, np.int64)
            self.row_of[self.pixels[:len(self.face)]] = np.arange(len(self.face))
            self.edge_of = np.full(self.total, -1, np.int64)
            self.edge_of[self.edge_pixels] = np.arange(len(self.edge_pixels))
        at, dev = self.face.device, self.device  # gathered where the rows are kept, then moved to the model
        rows = torch.from_numpy(self.row_of[pixels]).to(at)
        ok = rows >= 0
        face = torch.full((len(pixels), self.face.shape[1]), -1, dtype=torch.long, device=at)
        bary = torch.zeros(len(pixels), self.face.shape[1], 3, device=at)
        face[ok] = self.face[rows[ok]].long()
        bary[ok] = self.bary[rows[ok]].float()
        if self.edge_face is None:
            return LayerBatch(face.to(dev), bary.to(dev))
        e = torch.from_numpy(self.edge_of[pixels]).to(at)
        on = (e >= 0).nonzero().squeeze(-1)
        rest = (e < 0).nonzero().squeeze(-1)
        sub = self.edge_face.shape[1]
        owner = torch.cat([rest, on.repeat_interleave(sub)])
        face = torch.cat([face[rest], self.edge_face[e[on]].long().reshape(-1, face.shape[1])])
        bary = torch.cat([bary[rest], self.edge_bary[e[on]].float().reshape(-1, face.shape[1], 3)])
        return LayerBatch(face.to(dev), bary.to(dev), None, owner.to(dev), len(pixels))


class RadianceStepper(_Base):
    """Random cached pixels per step: hit pixels only for alpha scenes, all pixels otherwise."""

    def __init__(self, model, opt, store, scene, extra, seed, cache: FragmentCache):
        super().__init__(model, opt, store, scene, extra, seed)
        self.cache = cache

    def __call__(self, i: int, progress: float) -> dict:
        n = dist.share(int(self.extra.batch))
        if self.alpha_bg:
            pixels = self.cache.pixels[self.rng.integers(0, len(self.cache.pixels), n)]
        else:
            pixels = self.rng.integers(0, self.store.count, n)
        layers = self.cache.lookup(pixels)
        batch = self.store.take(pixels).to(self.device)
        bg = self._background(batch.dirs)
        rgb, _ = shade(self.model, layers, batch.dirs, bg, row_adam=self.opt[1])
        loss = torch.nn.functional.mse_loss(rgb, batch.target(bg))
        self.rays += n
        return {**self._step(loss, progress), "batch": n}


def camera_dirs(scene, camera, device="cpu") -> torch.Tensor:
    """[H*W,3] unit ray directions of a camera's pixels (row-major), computed on ``device``."""
    return camera_rays(scene, camera, device=device)[1]


__all__ = ["FragmentCache", "GeometryStepper", "RadianceStepper", "camera_dirs", "frame_offsets"]
