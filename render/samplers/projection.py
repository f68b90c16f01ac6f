"""ProNeRF's projection-aware sampler (METHODS.md 3.2): a few samples per ray, placed by two small networks.

Notation: R rays, N samples per ray, V source views, near/far [R] per ray in marching space (world, or the
NDC cube of forward-facing scenes). Per ray and in one batch:

    Pluecker(ray)  = [d^, o x d^]  (6-D, the same for every point of the ray; fed raw by default: a
                     frequency encoding fits the training rays better but generalises worse to new views)
    SamplerNet     : enc(Pluecker) -> u~ [N] (sigmoid), sigma_add [N], alpha_mul [N], c0 [3]
                     t~ = near + sort(u~) (far - near)
    bins           : edges e_0 = (near + t~_0)/2, e_i = (t~_{i-1} + t~_i)/2, e_N = (t~_{N-1} + far)/2
    projection     : the candidates o + t~ d, mapped to the world (``NDCParams.to_world`` for NDC scenes),
                     are projected into the ray's V source views only, where their colours are looked up
                     bilinearly (no gradient, METHODS.md 3.7.4): E [R,N,V,3]
    RefineNet      : [enc(Pluecker), (t~ - near)/(far - near), E] -> u [N], offsets [N,3], c1 [3]
                     t_i = e_i + u_i (e_{i+1} - e_i)   (sorted and inside bin i by construction)

The field is then queried only at those N points (``intervals``: [t_i, t_{i+1}), the last one ending at far)
and ``render.composite`` applies alpha_i = relu(alpha_mul_i) (1 - exp(-relu(sigma_i + sigma_add_i) delta_i));
sigma_add is the sampler's raw output (clamped to +-10) times the field's density unit.

Initialisation: the depth head starts at the quantiles (i + 1/2)/N of (near, far) (uniform samples), the
refiner at bin centres with zero offsets, and the modulation neutral (sigma_add = 0, alpha_mul = 1), so an
untrained sampler marches like a uniform one. ProNeRF's networks are 6 x 256 ELU; fieldfit's defaults are
4 x 64 (methods/pronerf says why). ``densify``, ``jitter_sorted`` and ``weight_quantiles`` are the
exploration samples and distillation targets of its training (METHODS.md 3.3).

Source views: the training cameras; their images come from a loader called on first use (never copied).
A rendered frame uses the V views nearest its camera; a training ray V views drawn from the ``pool``
views nearest its own (never itself), in rank order.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fieldfit.fields.components.encodings import frequency_encoding
from fieldfit.fields.components.mlp import mlp

from ..camera import Camera
from ..lens import DIST_SIZE, lens_model
from ..projection import fill_invalid, gather_colours, project
from ..rays import ray_aabb
from ..samples import RaySamples


def plucker(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[R,6] Pluecker coordinates (d^, o x d^) of rays [R,3]; invariant to moving o along the ray."""
    d = F.normalize(dirs, dim=-1)
    return torch.cat([d, torch.cross(origins, d, dim=-1)], dim=-1)


class SamplerNet(nn.Module):
    """Proposal of N depths per ray from its Pluecker encoding (ProNeRF's PAS, ``MinMaxRay_Net``)."""

    def __init__(self, in_dim: int, n_samples: int, hidden: int = 128, layers: int = 4):
        super().__init__()
        self.n = n_samples
        self.net = mlp([in_dim] + [hidden] * layers + [3 * n_samples + 3], "elu")
        head = self.net[-1]
        with torch.no_grad():
            head.weight[: 3 * n_samples].mul_(0.01)
            head.weight[n_samples: 3 * n_samples].zero_()
            q = (torch.arange(n_samples, dtype=torch.float32) + 0.5) / n_samples
            head.bias[:n_samples] = torch.log(q / (1 - q))
            head.bias[n_samples: 3 * n_samples] = 0.0

    def forward(self, enc: torch.Tensor):
        """enc [R,E] -> (u~ [R,N] in (0,1), unsorted; sigma_add raw [R,N]; alpha_mul [R,N]; c0 [R,3])."""
        raw = self.net(enc)
        n = self.n
        return (torch.sigmoid(raw[:, :n]), raw[:, n:2 * n].clamp(-10, 10), 1.0 + raw[:, 2 * n:3 * n].clamp(-10, 10),
                torch.sigmoid(raw[:, 3 * n:]))


class RefineNet(nn.Module):
    """Placement of the final samples inside the bins of the proposal, from re-projected colours."""

    def __init__(self, in_dim: int, n_samples: int, n_views: int, hidden: int = 128, layers: int = 4):
        super().__init__()
        self.n, self.v = n_samples, n_views
        self.net = mlp([in_dim + n_samples * (1 + 3 * n_views)] + [hidden] * layers + [4 * n_samples + 3], "elu")
        head = self.net[-1]
        with torch.no_grad():
            head.weight[: 4 * n_samples].zero_()
            head.bias[: 4 * n_samples].zero_()

    def forward(self, enc: torch.Tensor, s: torch.Tensor, feats: torch.Tensor):
        """enc [R,E], s [R,N] normalised proposal depths, feats [R,N,V,3] ->
        (u [R,N] in (0,1), offsets [R,N,3] in (-1,1), c1 [R,3])."""
        n = self.n
        raw = self.net(torch.cat([enc, s, feats.flatten(1)], dim=-1))
        return (torch.sigmoid(raw[:, :n]), torch.tanh(raw[:, n:4 * n]).view(-1, n, 3),
                torch.sigmoid(raw[:, 4 * n:]))


def bin_edges(t: torch.Tensor, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Sorted depths t [R,N] -> bin edges [R,N+1] (module doc); end bins reach halfway to near/far."""
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    return torch.cat([0.5 * (near[:, None] + t[:, :1]), mids, 0.5 * (t[:, -1:] + far[:, None])], dim=-1)


def refine_in_bins(t: torch.Tensor, u: torch.Tensor, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """[R,N] t_i = e_i + u_i (e_{i+1} - e_i): one sample inside each bin of sorted t, u in [0,1]."""
    e = bin_edges(t, near, far)
    return e[:, :-1] + u * (e[:, 1:] - e[:, :-1])


def lens_groups(cams: list[Camera], device) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """[(lens model, members [V] bool, coefficients [V,D] float32)] of the cameras, one per model; [] when no camera
    has a lens. Pinhole cameras join the OPENCV group (zero coefficients are no lens there; a fisheye's are not)."""
    keys = [lens_model(c.model) if c.distortion is not None else None for c in cams]
    models = sorted({k for k in keys if k is not None})
    if not models:
        return []
    if "OPENCV" not in models and None in keys:
        models = ["OPENCV", *models]
    keys = ["OPENCV" if k is None else k for k in keys]
    out = []
    for m in models:
        rows = [c.distortion if k == m and c.distortion is not None else np.zeros(DIST_SIZE[m])
                for c, k in zip(cams, keys, strict=True)]
        out.append((m, torch.tensor([k == m for k in keys], device=device),
                    torch.tensor(np.stack(rows), dtype=torch.float32, device=device)))
    return out


class SourceViews:
    """Cameras of the source views (always) and their images (loaded when first projected into).

    Args:
        cameras: the V source cameras.
        load_image: view index v -> float32 [H,W,3] image of ``cameras[v]`` (called once per view, on first use).
        device: where the cameras and images live.
    """

    def __init__(self, cameras: list[Camera], load_image, device="cpu"):
        if not cameras:
            raise ValueError("SourceViews: no source cameras to project into")
        self.cameras, self.load_image, self.device = list(cameras), load_image, torch.device(device)
        cams = self.cameras
        self.c2w = torch.tensor(np.stack([c.c2w for c in cams]), dtype=torch.float32, device=self.device)
        self.intr = torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in cams], dtype=torch.float32, device=self.device)
        self.sizes = torch.tensor([[c.width, c.height] for c in cams], dtype=torch.long, device=self.device)
        self.lenses = lens_groups(cams, self.device)
        self.positions = np.stack([c.c2w[:, 3] for c in cams])
        self.images = None  # [3,V,H,W] allocated on first use
        self.loaded = np.zeros(len(cams), bool)

    def __len__(self) -> int:
        return len(self.cameras)

    def _ensure(self, views: torch.Tensor) -> None:
        need = [int(v) for v in torch.unique(views).cpu() if not self.loaded[int(v)]]
        if not need:
            return
        if self.images is None:
            w, h = (int(x) for x in self.sizes.max(0).values)
            self.images = torch.zeros(3, len(self), h, w, device=self.device)
        for v in need:
            img = torch.from_numpy(np.asarray(self.load_image(v), np.float32))
            self.images[:, v, :img.shape[0], :img.shape[1]] = img.permute(2, 0, 1).to(self.device)
            self.loaded[v] = True

    def _project_lenses(self, pts: torch.Tensor, view: torch.Tensor):
        """(pixels [M,2], depth [M]) of points [M,3] in views [M] through their lenses (one group per model)."""
        if len(self.lenses) == 1:
            model, _, dist = self.lenses[0]
            fx, fy, cx, cy = self.intr[view].unbind(-1)
            return project(pts, self.c2w[view], fx, fy, cx, cy, dist[view], model)
        xy = pts.new_zeros(len(pts), 2)
        depth = pts.new_zeros(len(pts))
        for model, members, dist in self.lenses:
            sel = members[view].nonzero().squeeze(-1)
            vs = view[sel]
            fx, fy, cx, cy = self.intr[vs].unbind(-1)
            xy[sel], depth[sel] = project(pts[sel], self.c2w[vs], fx, fy, cx, cy, dist[vs], model)
        return xy, depth

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
        if views.dim() == 1 and not self.lenses:  # shared views (a frame): one GEMM for all of them
            c2w = self.c2w[views]  # [V,3,4]
            rot = c2w[:, :, :3]
            p = (x.reshape(-1, 3) @ rot.permute(1, 0, 2).reshape(3, 3 * v)).view(-1, v, 3)
            p = (p - torch.einsum("vi,vij->vj", c2w[:, :, 3], rot)).reshape(-1, 3)
            k = self.intr[views][None].expand(r * n, v, 4).reshape(-1, 4)
        elif not self.lenses:  # camera matrices gathered per ray, not per point (same as ``project``)
            c2w = self.c2w[views]  # [R,V,3,4]
            p = torch.einsum("rnvi,rvij->rnvj", x[:, :, None, :] - c2w[:, None, :, :, 3], c2w[..., :3]).reshape(-1, 3)
            k = self.intr[views][:, None].expand(r, n, v, 4).reshape(-1, 4)
        views = views.expand(r, v) if views.dim() == 1 else views
        view = views[:, None, :].expand(r, n, v).reshape(-1)
        if not self.lenses:
            depth = -p[:, 2]
            safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
            xy = torch.stack([p[:, 0] / safe * k[:, 0] + k[:, 2], -p[:, 1] / safe * k[:, 1] + k[:, 3]], -1)
        else:
            xy, depth = self._project_lenses(x[:, :, None, :].expand(r, n, v, 3).reshape(-1, 3), view)
        col, valid = gather_colours(self.images, view, xy, self.sizes, depth)
        return fill_invalid(col.view(r, n, v, 3), valid.view(r, n, v))


class ProjectionSampler(nn.Module):
    """SamplerNet + RefineNet and the ray bounds they work in (saved together); ``sources`` (not saved) supplies
    the colours of the source views.

    Args:
        proposal, refiner: the two networks.
        aabb: [2,3] box rays are clipped to; near, far: the scene's bounds along unit marching directions.
        ndc: ``render.rays.NDCParams`` of forward-facing scenes (candidates are mapped to the world), or None.
        pe_freqs: frequencies of the Pluecker encoding (0: raw).
        offset_scale: largest 3-D offset of a final sample (marching-space units).
        density_unit: the field's density scale (sigma_add is measured in it).
    """

    def __init__(self, proposal: SamplerNet, refiner: RefineNet, aabb, near: float, far: float, ndc=None,
                 pe_freqs: int = 0, offset_scale: float = 0.01, density_unit: float = 1.0):
        super().__init__()
        self.proposal, self.refiner = proposal, refiner
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3))
        self.near, self.far, self.ndc = float(near), float(min(far, 1e30)), ndc
        self.pe_freqs, self.offset_scale, self.density_unit = int(pe_freqs), float(offset_scale), float(density_unit)
        self.sources: SourceViews | None = None

    @property
    def n(self) -> int:
        """Samples per ray."""
        return self.proposal.n

    @property
    def views(self) -> int:
        """Source views per ray."""
        return self.refiner.v

    def bounds(self, o: torch.Tensor, d: torch.Tensor):
        """(near [R], far [R]) of rays inside the box and the scene's near/far (far > near)."""
        t0, t1, _ = ray_aabb(o, d, self.aabb)
        near = t0.clamp_min(self.near)
        far = torch.maximum(t1.clamp(max=self.far), near + 1e-4)
        return near, far

    def encode(self, o, d) -> torch.Tensor:
        return frequency_encoding(plucker(o, d), self.pe_freqs)

    def to_world(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.ndc is None else self.ndc.to_world(x)

    def propose(self, o, d) -> dict:
        """The proposal of rays [R,3]: near, far [R], enc, s = sorted u~ [R,N], t_cand [R,N], sigma_add, alpha_mul
        [R,N], c0 [R,3]."""
        near, far = self.bounds(o, d)
        enc = self.encode(o, d)
        u, add, mul, c0 = self.proposal(enc)
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

    def sample(self, o, d, views: torch.Tensor) -> dict:
        """``refine(propose(o, d), o, d, views)``: everything the renderer needs for rays [R,3]."""
        return self.refine(self.propose(o, d), o, d, views)


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


__all__ = ["ProjectionSampler", "RefineNet", "SamplerNet", "SourceViews", "bin_edges", "densify", "intervals",
           "jitter_sorted", "plucker", "refine_in_bins", "weight_quantiles"]
