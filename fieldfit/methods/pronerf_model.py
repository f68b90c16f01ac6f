"""ProNeRF's forward pass (METHODS.md 3.2) on the shared renderer, and its source views.

Rays are those of the radiance pipeline (radiance_data): unit directions in the marching space
(world, or the NDC cube for LLFF). Each ray is clipped to the field's box and the scene's
near/far, giving near/far [R]. Then, per ray and in one batch:

1. SamplerNet on the Pluecker encoding -> N sorted candidate depths t~, density modulation
   (sigma_add, alpha_mul) and an auxiliary colour c0.
2. The candidates o + t~ d are mapped to the world (``ndc_to_world`` for NDC scenes: ProNeRF's
   z = 1 / (1 - t) for near plane 1) and projected into the ray's V source views only, where
   their colours are looked up bilinearly (no gradient, METHODS.md 3.7.4): E [R,N,V,3].
3. RefineNet -> one depth inside each bin of t~ (sorted by construction), a small 3-D offset
   (``offset_scale`` x tanh) and an auxiliary colour c1.
4. The field is queried only at those N points; intervals are [t_i, t_{i+1}) and the last one
   ends at far (ProNeRF's delta_N = 1e10); ``render.composite`` applies
   alpha_i = relu(alpha_mul_i) (1 - exp(-relu(sigma_i + sigma_add_i) delta_i)).

sigma_add is the sampler's raw output (clamped to +-10, as ProNeRF) times the field's density
scale, so that it is measured in the field's density units.

Source views: training cameras, images loaded from the scene on first use (never copied into
the run). A rendered frame uses the V training views nearest its camera; a training ray uses V
views drawn at random from the ``pool`` views nearest its own (never itself), in rank order.
"""

import numpy as np
import torch
from torch import nn

from fieldfit.fields.pronerf import bin_edges, frequency_encoding, plucker, refine_in_bins
from fieldfit.render import RaySamples, composite, ray_aabb
from fieldfit.render.projection import fill_invalid, gather_colours, ndc_to_world, project


class SourceViews:
    """Cameras of the training views (always) and their images (loaded when first projected into)."""

    def __init__(self, scene, ids: list[int], device="cpu"):
        if not ids:
            from fieldfit.errors import InputError

            raise InputError(scene.source, "no training views to project into", "check the scene's train split")
        self.scene, self.ids, self.device = scene, list(ids), torch.device(device)
        frames = [scene.frames[i] for i in self.ids]
        self.c2w = torch.tensor(np.stack([f.c2w for f in frames]), dtype=torch.float32, device=self.device)
        self.intr = torch.tensor([[f.fx, f.fy, f.cx, f.cy] for f in frames], dtype=torch.float32, device=self.device)
        self.sizes = torch.tensor([[f.width, f.height] for f in frames], dtype=torch.long, device=self.device)
        has_dist = any(f.distortion is not None and np.any(f.distortion) for f in frames)
        self.dist = torch.tensor(np.stack([np.zeros(6) if f.distortion is None else f.distortion for f in frames]),
                                 dtype=torch.float32, device=self.device) if has_dist else None
        self.positions = np.stack([f.c2w[:, 3] for f in frames])
        self.images = None  # [3,V,H,W] allocated on first use
        self.loaded = np.zeros(len(frames), bool)

    def __len__(self) -> int:
        return len(self.ids)

    def _ensure(self, views: torch.Tensor) -> None:
        need = [int(v) for v in torch.unique(views).cpu() if not self.loaded[int(v)]]
        if not need:
            return
        if self.images is None:
            w, h = (int(x) for x in self.sizes.max(0).values)
            self.images = torch.zeros(3, len(self), h, w, device=self.device)
        for v in need:
            img = torch.from_numpy(self.scene.image(self.ids[v]))
            self.images[:, v, :img.shape[0], :img.shape[1]] = img.permute(2, 0, 1).to(self.device)
            self.loaded[v] = True

    def nearest(self, position, k: int, exclude: int | None = None) -> list[int]:
        """Indices of the k views nearest ``position`` [3] (world), nearest first."""
        dist = np.linalg.norm(self.positions - np.asarray(position, np.float64)[None], axis=1)
        if exclude is not None:
            dist[exclude] = np.inf
        order = np.argsort(dist, kind="stable")
        return [int(i) for i in order[:min(k, len(self) - (exclude is not None))]]

    def neighbour_pools(self, pool: int) -> torch.Tensor:
        """[V,P] the P = min(pool, V-1) views nearest each view, itself excluded, nearest first."""
        return torch.tensor([self.nearest(p, pool, exclude=i) for i, p in enumerate(self.positions)],
                            dtype=torch.long, device=self.device)

    @torch.no_grad()
    def colours(self, x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """x [R,N,3] world points, views [R,V] (per ray) or [V] (every ray) -> [R,N,V,3] colours
        (invalid ones filled, ProNeRF)."""
        r, n, _ = x.shape
        v = views.shape[-1]
        self._ensure(views)
        if views.dim() == 1 and self.dist is None:  # shared views (a frame): one GEMM for all of them
            c2w = self.c2w[views]  # [V,3,4]
            rot = c2w[:, :, :3]
            p = (x.reshape(-1, 3) @ rot.permute(1, 0, 2).reshape(3, 3 * v)).view(-1, v, 3)
            p = (p - torch.einsum("vi,vij->vj", c2w[:, :, 3], rot)).reshape(-1, 3)
            k = self.intr[views][None].expand(r * n, v, 4).reshape(-1, 4)
        elif self.dist is None:  # camera matrices gathered per ray, not per point (same as ``project``)
            c2w = self.c2w[views]  # [R,V,3,4]
            p = torch.einsum("rnvi,rvij->rnvj", x[:, :, None, :] - c2w[:, None, :, :, 3], c2w[..., :3]).reshape(-1, 3)
            k = self.intr[views][:, None].expand(r, n, v, 4).reshape(-1, 4)
        views = views.expand(r, v) if views.dim() == 1 else views
        view = views[:, None, :].expand(r, n, v).reshape(-1)
        if self.dist is None:
            depth = -p[:, 2]
            safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
            xy = torch.stack([p[:, 0] / safe * k[:, 0] + k[:, 2], -p[:, 1] / safe * k[:, 1] + k[:, 3]], -1)
        else:
            pts = x[:, :, None, :].expand(r, n, v, 3).reshape(-1, 3)
            fx, fy, cx, cy = self.intr[view].unbind(-1)
            xy, depth = project(pts, self.c2w[view], fx, fy, cx, cy, self.dist[view])
        col, valid = gather_colours(self.images, view, xy, self.sizes, depth)
        return fill_invalid(col.view(r, n, v, 3), valid.view(r, n, v))


class ProNeRFModel(nn.Module):
    """Field + sampler + refiner (saved together); ``sources`` (not saved) supplies the colours."""

    def __init__(self, field: nn.Module, sampler: nn.Module, refiner: nn.Module, aabb, near: float, far: float,
                 ndc=None, pe_freqs: int = 0, offset_scale: float = 0.01, density_unit: float = 1.0):
        super().__init__()
        self.field, self.sampler, self.refiner = field, sampler, refiner
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3))
        self.near, self.far, self.ndc = float(near), float(min(far, 1e30)), ndc
        self.pe_freqs, self.offset_scale, self.density_unit = int(pe_freqs), float(offset_scale), float(density_unit)
        self.n = sampler.n
        self.sources: SourceViews | None = None

    def bounds(self, o: torch.Tensor, d: torch.Tensor):
        """(near [R], far [R]) of rays inside the box and the scene's near/far (far > near)."""
        t0, t1, _ = ray_aabb(o, d, self.aabb)
        near = t0.clamp_min(self.near)
        far = torch.maximum(t1.clamp(max=self.far), near + 1e-4)
        return near, far

    def encode(self, o, d) -> torch.Tensor:
        return frequency_encoding(plucker(o, d), self.pe_freqs)

    def to_world(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndc is None:
            return x
        p = self.ndc
        return ndc_to_world(x, p.fx, p.fy, p.width, p.height, p.near_plane)

    def propose(self, o, d) -> dict:
        near, far = self.bounds(o, d)
        enc = self.encode(o, d)
        u, add, mul, c0 = self.sampler(enc)
        u = torch.sort(u, dim=-1).values
        t = near[:, None] + u * (far - near)[:, None]
        return {"near": near, "far": far, "enc": enc, "s": u, "t_cand": t, "sigma_add": add * self.density_unit,
                "alpha_mul": mul, "c0": c0}

    def refine(self, prop: dict, o, d, views: torch.Tensor) -> dict:
        """Adds t [R,N] (final depths), offsets [R,N,3] and c1 [R,3] to ``prop``; views [R,V] or [V]."""
        with torch.no_grad():
            x = o[:, None] + prop["t_cand"].detach()[..., None] * d[:, None]
            feats = self.sources.colours(self.to_world(x), views)
        u, off, c1 = self.refiner(prop["enc"], prop["s"], feats)
        prop.update(t=refine_in_bins(prop["t_cand"], u, prop["near"], prop["far"]),
                    offsets=off * self.offset_scale, c1=c1)
        return prop

    def composite_at(self, o, d, t, far, background, offsets=None, sigma_add=None, alpha_mul=None):
        """Query the field at o + t d (+ offsets), t [R,K] sorted, and composite; intervals [t_k, t_k+1)."""
        r, k = t.shape
        samples = intervals(t, far)
        x = o[:, None] + t[..., None] * d[:, None]
        if offsets is not None:
            x = x + offsets
        out = self.field(x.reshape(-1, 3), d[:, None].expand(r, k, 3).reshape(-1, 3))
        flat = (lambda a: None if a is None else a.reshape(-1))
        return composite(out.density, out.rgb, samples, background=background, sigma_add=flat(sigma_add),
                         alpha_mul=flat(alpha_mul))

    def render(self, o, d, background, views: torch.Tensor, jitter: float = 0.0):
        """The full pipeline on rays [R,3] with source views [R,V] (or [V] for all rays).

        jitter > 0 moves each final depth by |N(0,1)| jitter (at most 0.99) of the gap to a
        random neighbour (ProNeRF's stage 2). Returns (RenderOutput, the proposal dict).
        """
        prop = self.refine(self.propose(o, d), o, d, views)
        t = prop["t"]
        if jitter > 0:
            t = jitter_sorted(t, prop["near"], prop["far"], jitter)
        out = self.composite_at(o, d, t, prop["far"], background, prop["offsets"], prop["sigma_add"],
                                prop["alpha_mul"])
        return out, prop

    def render_uniform(self, o, d, background, n: int):
        """The field alone, marched with n uniform samples between near and far (the baseline)."""
        near, far = self.bounds(o, d)
        s = (torch.arange(n, device=o.device, dtype=o.dtype) + 0.5) / n
        return self.composite_at(o, d, near[:, None] + s * (far - near)[:, None], far, background)


def intervals(t: torch.Tensor, far: torch.Tensor) -> RaySamples:
    """Packed samples [t_k, t_k+1) of sorted depths t [R,K], the last interval ending at far [R]."""
    t_end = torch.cat([t[:, 1:], far[:, None]], dim=-1)
    return RaySamples.from_batched(t, torch.maximum(t_end, t))


def jitter_sorted(t: torch.Tensor, near, far, scale: float) -> torch.Tensor:
    """Move each of the sorted t [R,K] by min(|N(0,1)| scale, 0.99) of the gap to its next or
    previous neighbour (near/far at the ends), direction at random; returned sorted."""
    nxt = torch.cat([t[:, 1:], far[:, None]], -1) - t
    prv = t - torch.cat([near[:, None], t[:, :-1]], -1)
    j = (torch.randn_like(t).abs() * scale).clamp(max=0.99)
    fwd = torch.rand_like(t) < 0.5
    return torch.sort(t + torch.where(fwd, j * nxt, -j * prv), dim=-1).values


def densify(t: torch.Tensor, near, far, n_rep: int, n_uniform: int, jitter: float) -> torch.Tensor:
    """Exploration samples (METHODS.md 3.3): each of the sorted t [R,N] replicated n_rep times
    evenly over the gap to its successor, plus n_uniform stratified samples over (near, far),
    then jittered (``jitter_sorted``). Returns sorted [R, N n_rep + n_uniform]."""
    gap = torch.cat([t[:, 1:], far[:, None]], -1) - t
    k = torch.arange(n_rep, device=t.device, dtype=t.dtype) / n_rep
    parts = [(t[..., None] + gap[..., None] * k).flatten(1)]
    if n_uniform > 0:
        s = (torch.arange(n_uniform, device=t.device, dtype=t.dtype) + torch.rand(t.shape[0], n_uniform,
                                                                                 device=t.device)) / n_uniform
        parts.append(near[:, None] + s * (far - near)[:, None])
    dense = torch.sort(torch.cat(parts, -1), dim=-1).values
    return jitter_sorted(dense, near, far, jitter) if jitter > 0 else dense


def weight_quantiles(t: torch.Tensor, w: torch.Tensor, near, far, n: int, floor: float) -> torch.Tensor:
    """Depths [R,n] at the quantiles (i + 1/2)/n of the weights w [R,K] spread evenly over the
    intervals [t_k, t_k+1) (the last ending at far), plus ``floor`` of a uniform density over
    (near, far) (so samples keep watching all of the ray; a ray that is transparent in the
    field, whose weights sum to ~0, gets evenly spread targets). No gradient."""
    edges = torch.cat([near[:, None], t, far[:, None]], -1)
    length = (far - near).clamp_min(1e-12)[:, None]
    mass = floor * (edges[:, 1:] - edges[:, :-1]).clamp_min(0) / length
    mass[:, 1:] += (1.0 - floor) * w.clamp_min(0)  # not renormalised: a transparent ray gets uniform targets
    cdf = torch.cumsum(mass, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf / cdf[:, -1:].clamp_min(1e-12)], -1)
    q = ((torch.arange(n, device=t.device, dtype=t.dtype) + 0.5) / n).expand(t.shape[0], n).contiguous()
    i = torch.searchsorted(cdf, q, right=True).clamp(1, edges.shape[1] - 1)
    c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
    e0, e1 = edges.gather(1, i - 1), edges.gather(1, i)
    return e0 + (q - c0) / (c1 - c0).clamp_min(1e-12) * (e1 - e0)


__all__ = ["ProNeRFModel", "SourceViews", "bin_edges", "densify", "intervals", "jitter_sorted", "weight_quantiles"]
