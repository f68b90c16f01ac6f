"""A radiance field and its occupancy grid, wired to the shared renderer (render/).

Marching (TensoRF / instant-ngp style): each ray is clipped to the box of the occupied
cells (a tighter box than the scene's as soon as the grid has carved empty space) and
marched with a fixed step through the occupied cells only (``OccupancyGrid.sample``,
jittered in training). Then samples behind an opaque layer (transmittance < early_stop) and
nearly empty ones (alpha < alpha_thre) are dropped, from a gradient-free density pass done
in rounds front to back, so that rays which turn opaque early cost few evaluations. The field
is evaluated once, with gradient, on the survivors, and the packed samples are composited
(``render.composite``) on a background colour.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from fieldfit.render import OccupancyGrid, RaySamples, composite, ray_aabb


@dataclass
class MarchConfig:
    """How rays are marched. Lengths are in marching-space units (t along unit directions)."""

    step: float  # marching step
    near: float = 0.0
    far: float = float("inf")
    early_stop: float = 1e-4  # drop samples where the transmittance before them is below this
    alpha_thre: float = 0.0  # drop samples whose alpha is below this (0: keep all)


class RadianceModel(nn.Module):
    """A radiance field plus its occupancy grid (buffers), saved and loaded together."""

    def __init__(self, field: nn.Module, grid: OccupancyGrid):
        super().__init__()
        self.field = field
        self.grid = grid
        self._box = None

    def refresh(self) -> None:
        """Forget cached grid summaries (call after the grid changes or is loaded)."""
        self._box = None

    def occupied_box(self) -> torch.Tensor:
        """[2,3] box of the occupied cells (the grid's box when none is occupied)."""
        if self._box is None:
            g = self.grid
            occ = g.binary
            axes = [occ.any(dim=tuple(a for a in range(3) if a != i)).nonzero().squeeze(-1) for i in range(3)]
            if any(a.numel() == 0 for a in axes):
                self._box = g.aabb.clone()
            else:
                lo = torch.stack([a.min() for a in axes]).to(g.aabb.dtype)
                hi = torch.stack([a.max() for a in axes]).to(g.aabb.dtype) + 1
                self._box = torch.stack([g.aabb[0] + lo * g.cell_size, g.aabb[0] + hi * g.cell_size])
        return self._box

    @torch.no_grad()
    def update_grid(self, step: int, step_size: float, n_cells=None, threshold: float = 0.01,
                    decay: float = 0.95) -> None:
        """Refresh the occupancy grid: a cell is kept where one step's opacity sigma*step > threshold."""
        self.grid.update(lambda x: self.field.density(x) * step_size, step, decay=decay, threshold=threshold,
                         n_cells=n_cells)
        self.refresh()

    @torch.no_grad()
    def march(self, origins: torch.Tensor, dirs: torch.Tensor, cfg: MarchConfig, stratified: bool) -> RaySamples:
        """Packed samples of rays [R,3] (no gradient) through occupied cells, early-terminated."""
        t0, t1, hit = ray_aabb(origins, dirs, self.occupied_box())
        near = torch.clamp(t0, min=cfg.near)
        far = torch.where(hit, torch.clamp(t1, max=cfg.far), near)
        cand = self.grid.sample(origins, dirs, near, far, cfg.step, stratified=stratified)
        if cand.n_samples == 0 or (cfg.early_stop <= 0 and cfg.alpha_thre <= 0):
            return cand
        return self._terminate(origins, dirs, cand, cfg)

    def _terminate(self, origins, dirs, cand: RaySamples, cfg: MarchConfig, per_round: int | None = None,
                   grow: int | None = None) -> RaySamples:
        """Drop candidates behind opaque layers (T < early_stop) and with alpha < alpha_thre.

        The density is evaluated in rounds, front to back, and only for rays still transparent,
        so a ray that turns opaque early costs few evaluations. A round takes 16 samples per ray
        on a CPU; on a GPU, where a round's cost is its ~40 kernel launches and host syncs rather
        than its arithmetic, 32 and then twice as many each round (a few rounds in all).
        """
        on_gpu = cand.ray_indices.is_cuda
        per_round = per_round or (32 if on_gpu else 16)
        grow = grow or (2 if on_gpu else 1)
        ri = cand.ray_indices
        counts = cand.counts()
        rank = torch.arange(cand.n_samples, device=ri.device) - (torch.cumsum(counts, 0) - counts)[ri]
        tau_before = torch.zeros(cand.n_rays, dtype=torch.float64, device=ri.device)  # optical depth so far
        keep = torch.zeros(cand.n_samples, dtype=torch.bool, device=ri.device)
        stop_tau = -math.log(cfg.early_stop) if cfg.early_stop > 0 else math.inf
        pending = torch.arange(cand.n_samples, device=ri.device)  # not evaluated yet, ray still transparent
        r = 0
        while pending.numel() > 0:
            now = rank[pending] < r + per_round
            idx, pending = pending[now], pending[~now]
            sub = RaySamples(cand.t_starts[idx], cand.t_ends[idx], ri[idx], cand.n_rays)
            tau = self.field.density(sub.positions(origins, dirs)).double() * sub.deltas.double()
            inside = torch.cumsum(tau, 0) - tau  # exclusive scan, made per ray below
            counts_r = sub.counts()
            inside = inside - inside[(torch.cumsum(counts_r, 0) - counts_r)[sub.ray_indices]]
            trans = torch.exp(-(tau_before[sub.ray_indices] + inside))
            ok = trans >= cfg.early_stop
            if cfg.alpha_thre > 0:
                ok &= (1.0 - torch.exp(-tau)) >= cfg.alpha_thre
            keep[idx[ok]] = True
            tau_before.index_add_(0, sub.ray_indices, tau)
            pending = pending[tau_before[ri[pending]] < stop_tau]
            r += per_round
            per_round *= grow
        return RaySamples(cand.t_starts[keep], cand.t_ends[keep], ri[keep], cand.n_rays)

    def render(self, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor, cfg: MarchConfig,
               stratified: bool = False):
        """Composite rays [R,3] on ``background`` [3] or [R,3].

        Returns (RenderOutput with rgb [R,3], opacity [R], ...; RaySamples). Differentiable in
        the field's parameters (the sample positions are not).
        """
        samples = self.march(origins, dirs, cfg, stratified)
        ri = samples.ray_indices
        x = origins[ri] + dirs[ri] * samples.t_mids[:, None]
        out = self.field(x, dirs[ri])
        return composite(out.density, out.rgb, samples, background=background), samples


def _exclusive_segment_cumsum(x: torch.Tensor, samples: RaySamples) -> torch.Tensor:
    """[S] sum of x over the earlier samples of the same ray (float64 scan, as in compositing)."""
    x64 = x.double()
    exc = torch.cumsum(x64, 0) - x64
    counts = samples.counts()
    starts = torch.cumsum(counts, 0) - counts
    return exc - exc[starts[samples.ray_indices]]


def distortion_loss(weights: torch.Tensor, samples: RaySamples) -> torch.Tensor:
    """mip-NeRF 360's distortion loss on packed samples, averaged over rays.

    L = sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 delta_i per ray (m: interval midpoints),
    computed in O(S) as 2 sum_i w_i (m_i W_<i - (wm)_<i). It is small when each ray's weight
    sits in one short interval: it removes fog and floaters and makes surfaces opaque sooner.

    Args: weights [S] (differentiable), samples: their RaySamples. Returns a scalar.
    """
    if samples.n_samples == 0:
        return weights.sum() * 0.0
    m, w = samples.t_mids.double(), weights.double()
    inter = 2.0 * (w * (m * _exclusive_segment_cumsum(w, samples) - _exclusive_segment_cumsum(w * m, samples))).sum()
    intra = (w * w * samples.deltas.double()).sum() / 3.0
    return ((inter + intra) / max(samples.n_rays, 1)).to(weights.dtype)


def render_chunk(device) -> int:
    """Rays per render chunk: 2^13 on a CPU (measured best on 2 cores), 2^18 on a GPU, where
    each chunk costs a fixed few hundred kernel launches and host syncs."""
    return 1 << 18 if torch.device(device).type == "cuda" else 1 << 13


@torch.no_grad()
def render_rays(model: RadianceModel, origins: torch.Tensor, dirs: torch.Tensor, background, cfg: MarchConfig,
                device, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Render many rays [R,3] (any device) in chunks of ``chunk`` rays on ``device``
    (default ``render_chunk(device)``).

    The traversal costs every ray of a chunk as much as the chunk's longest span through the
    occupied box, so rays are rendered in order of that span (1.5-2x faster frames).

    Returns (rgb [R,3] on the CPU, clamped to [0,1]; opacity [R] on the CPU; number of field samples).
    """
    chunk = chunk or render_chunk(device)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    t0, t1, _ = ray_aabb(origins, dirs, model.occupied_box().to(origins.device))
    order = torch.argsort(t1 - t0)
    rgb, opacity, n = torch.zeros(origins.shape[0], 3), torch.zeros(origins.shape[0]), 0
    for s in range(0, origins.shape[0], chunk):
        idx = order[s:s + chunk]
        res, samples = model.render(origins[idx].to(device), dirs[idx].to(device), bg, cfg)
        rgb[idx.cpu()] = res.rgb.clamp(0, 1).float().cpu()
        opacity[idx.cpu()] = res.opacity.float().cpu()
        n += samples.n_samples
    return rgb, opacity, n


__all__ = ["MarchConfig", "RadianceModel", "distortion_loss", "render_chunk", "render_rays"]
