"""The DNMP model and its rendering (METHODS.md 2.2): rasterize each voxel level, shade K layers, alpha-composite.

Per pixel and level L the rasterizer (render.raster, back faces culled: primitives are closed, so
each visible primitive gives one layer) returns the K_L nearest faces; the vertex features and
normals are interpolated there and the shader gives (alpha, rgb) per layer. The fine level's
layers and then the coarse level's form one front-to-back list per ray, composited by
``render.composite_alpha`` with empty layers left out (never duplicated, METHODS.md 2.7 pitfall 4):
that is exactly C_fine + (1 - A_fine) (C_coarse + (1 - A_coarse) background).

Devices: everything here runs on the model's device (``DNMPModel.device``): fragments, shading and compositing
create their tensors there, so a CUDA model rasterizes with the Triton K-buffer kernel (``render.raster``) and
shades on the GPU. Inputs (``dirs``, ``background``, layers) must be on that device.
"""

from dataclasses import dataclass, replace

import torch
from torch import nn

from fieldfit.fields.dnmp import Background, MeshDecoder, PrimitiveLevel, Shader, vertex_normals
from fieldfit.render import RaySamples, composite_alpha
from fieldfit.render.camera import Camera
from fieldfit.render.raster import interpolate_packed, rasterize


class DNMPModel(nn.Module):
    """Frozen decoder + primitive levels (fine first) + shader + background, saved together."""

    def __init__(self, decoder: MeshDecoder, levels: list[PrimitiveLevel], ks: list[int], feat_dim: int, hidden: int,
                 sh_degree: int | None = None, rim: bool = False):
        super().__init__()
        self.decoder = decoder
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        self.levels = nn.ModuleList(levels)
        self.ks = list(ks)
        self.shader = Shader(feat_dim, hidden, sh_degree, rim)
        self.background = Background()
        self.antialias = False  # 2x2 samples in the pixels along outlines (``edges``); set from the run config
        self._frozen = None

    @property
    def device(self) -> torch.device:
        """Where the model's parameters and buffers live (all on one device)."""
        return self.shader.trunk[0].weight.device

    def geometry(self):
        """Per level (vertices [V,3], normals [V,3]); cached once ``freeze`` was called."""
        if self._frozen is not None:
            return self._frozen
        out = []
        for lv in self.levels:
            v = lv.vertices(self.decoder)
            out.append((v, vertex_normals(v, lv.faces)))
        return out

    def freeze(self) -> None:
        """Fix the geometry (radiance stage, evaluation): vertices and normals computed once."""
        with torch.no_grad():
            self._frozen = None
            self._frozen = [(v.detach(), n.detach()) for v, n in self.geometry()]
        for lv in self.levels:
            lv.latents.requires_grad_(False)
            lv.offsets.requires_grad_(False)


@dataclass
class LayerBatch:
    """Fragments of N pixels, all levels side by side: face [N,Kt] (level-local ids, -1 empty), bary [N,Kt,3].

    With ``owner`` [S] the S rows are sub-samples of ``n_pixels`` pixels (row i belongs to pixel
    owner[i]; ``edges``) and shading averages each pixel's rows; without it row i is pixel i.
    """

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor | None = None
    owner: torch.Tensor | None = None
    n_pixels: int = 0


def rasterize_levels(model: DNMPModel, cam: Camera, geometry=None) -> LayerBatch:
    """Fragments of every pixel of ``cam`` for all levels (differentiable when the geometry is)."""
    geometry = geometry or model.geometry()
    faces, barys, depths = [], [], []
    for lv, k, (v, _) in zip(model.levels, model.ks, geometry, strict=True):
        if lv.count == 0:
            p = cam.width * cam.height
            faces.append(torch.full((p, k), -1, dtype=torch.long, device=v.device))
            barys.append(torch.zeros(p, k, 3, device=v.device))
            depths.append(torch.full((p, k), float("inf"), device=v.device))
            continue
        fr = rasterize(v, lv.faces, cam, k=k, cull_back=True)
        faces.append(fr.face)
        barys.append(fr.bary)
        depths.append(fr.depth)
    return LayerBatch(torch.cat(faces, 1), torch.cat(barys, 1), torch.cat(depths, 1))


def rasterize_window(model: DNMPModel, cam: Camera):
    """(LayerBatch, geometry for ``shade``) of a small camera, decoding only the primitives that can reach it.

    Same fragments as ``rasterize_levels`` (a primitive lies within its radius of its centre, and
    the ones left out project outside the window); gradients reach the decoded primitives' latents
    and offsets. A 48x48 window of a 200x200 lego view sees about 5% of the primitives.
    """
    faces, barys, depths, geometry = [], [], [], []
    dev = model.device
    c2w = torch.as_tensor(cam.c2w, device=dev).float()
    for lv, k in zip(model.levels, model.ks, strict=True):
        with torch.no_grad():
            c = lv.centres + lv.offsets
            local = (c - c2w[:, 3]) @ c2w[:, :3]
            z = -local[:, 2]
            zs = z.clamp_min(1e-6)
            x, y = cam.cx + cam.fx * local[:, 0] / zs, cam.cy - cam.fy * local[:, 1] / zs
            m = 1.0 + 1.5 * lv.radius * max(cam.fx, cam.fy) / zs  # radius in pixels, with room for decoded bulges
            idx = ((z + 1.5 * lv.radius > 0) & (x > -m) & (x < cam.width + m) & (y > -m) & (y < cam.height + m)
                   ).nonzero().squeeze(-1)
        shape = lv.template + model.decoder(lv.latents[idx])
        v = (lv.centres[idx, None] + lv.offsets[idx, None] + lv.radius * shape).reshape(-1, 3)
        tf = lv.faces[:80]
        f = (tf[None] + 42 * torch.arange(idx.numel(), device=dev)[:, None, None]).reshape(-1, 3)
        vid = (idx[:, None] * 42 + torch.arange(42, device=dev)).reshape(-1)
        v_full = torch.zeros(lv.count * 42, 3, dtype=v.dtype, device=dev)
        n_full = torch.zeros(lv.count * 42, 3, dtype=v.dtype, device=dev)
        if idx.numel():
            v_full, n_full = v_full.index_copy(0, vid, v), n_full.index_copy(0, vid, vertex_normals(v, f))
        geometry.append((v_full, n_full))
        p = cam.width * cam.height
        if idx.numel() == 0:
            faces.append(torch.full((p, k), -1, dtype=torch.long, device=dev))
            barys.append(torch.zeros(p, k, 3, device=dev))
            depths.append(torch.full((p, k), float("inf"), device=dev))
            continue
        fr = rasterize(v, f, cam, k=k, cull_back=True)
        local_f = fr.face.clamp_min(0)
        faces.append(torch.where(fr.face >= 0, idx[local_f // 80] * 80 + local_f % 80, fr.face))
        barys.append(fr.bary)
        depths.append(fr.depth)
    return LayerBatch(torch.cat(faces, 1), torch.cat(barys, 1), torch.cat(depths, 1)), geometry


def shade(model: DNMPModel, layers: LayerBatch, dirs: torch.Tensor, background: torch.Tensor, geometry=None,
          row_adam=None):
    """(rgb [N,3], opacity [N]) of N pixels from their layers; ``background`` [3] or [N,3]. ``layers``, ``dirs``
    and ``background`` are on the model's device.

    ``row_adam``: a ``rows.RowAdam`` over the levels' features, whose gather then carries their
    gradient (training); None: plain autograd (tests, evaluation).
    """
    geometry = geometry or model.geometry()
    dev = model.device
    mask = layers.face >= 0
    count = int(mask.sum())
    # per level: its layers' (ray, slot) positions, packed in the order of the final ray-major list
    feat = torch.zeros(count, model.shader.trunk[0].in_features, device=dev)
    nrm = torch.zeros(count, 3, device=dev)
    slot = torch.full(mask.shape, -1, dtype=torch.long, device=dev)
    slot[mask] = torch.arange(count, device=dev)
    start, parts_f, parts_n, parts_i = 0, [], [], []
    for j, (lv, k, (v, n)) in enumerate(zip(model.levels, model.ks, geometry, strict=True)):
        m = mask[:, start:start + k]
        fid = layers.face[:, start:start + k][m]
        bary = layers.bary[:, start:start + k][m].to(v.dtype)
        parts_i.append(slot[:, start:start + k][m])
        vid = lv.faces.index_select(0, fid).reshape(-1)
        table = lv.features.index_select if row_adam is None else (lambda _, r, j=j: row_adam.gather(j, r))
        vals = table(0, vid).reshape(fid.shape[0], 3, lv.features.shape[1])
        parts_f.append((vals * bary[..., None]).sum(-2))
        parts_n.append(interpolate_packed(n, lv.faces, fid, bary))
        start += k
    order = torch.cat(parts_i)
    feat = feat.index_put((order,), torch.cat(parts_f))
    nrm = nn.functional.normalize(nrm.index_put((order,), torch.cat(parts_n)), dim=-1)
    rows = mask.nonzero()[:, 0]
    owner = layers.owner
    if owner is not None:  # per-row directions and backgrounds, averaged back to pixels below
        dirs = dirs.index_select(0, owner)
        background = background.index_select(0, owner) if background.dim() == 2 else background
    d = dirs[rows]
    alpha, rgb = model.shader(feat, d, nrm)
    depth = layers.depth[mask] if layers.depth is not None else torch.zeros_like(alpha)
    samples = RaySamples(depth.detach(), depth.detach(), rows, dirs.shape[0])
    out = composite_alpha(alpha, rgb, samples, background=background)
    if owner is not None:
        n = layers.n_pixels
        ones = torch.ones(owner.shape[0], device=dev)
        share = (1.0 / torch.zeros(n, device=dev).index_add(0, owner, ones)).index_select(0, owner)
        out = replace(out, rgb=torch.zeros(n, 3, device=dev).index_add(0, owner, out.rgb * share[:, None]),
                      opacity=torch.zeros(n, device=dev).index_add(0, owner, out.opacity * share),
                      depth=torch.zeros(n, device=dev).index_add(0, owner, out.depth * share))
    return out.rgb, out.opacity


__all__ = ["DNMPModel", "LayerBatch", "rasterize_levels", "rasterize_window", "shade"]
