"""The packed march a window at a time: a ray's next occupied intervals are found only while it is transparent.

``render.march.march`` finds every occupied interval of every ray, then evaluates densities front to back in
rounds until each ray turns opaque (``render.termination``). Where most cells are occupied (a contracted capture's
fog behind its surfaces, a forward-facing scene's NDC grid) a ray turns opaque within a few percent of its
intervals (the fox and fern: 8%), so most of that traversal is never looked at. ``march_windows`` finds each
round's intervals when the round comes: the next ``per_round`` occupied intervals of every ray still transparent
(``traverse_occupancy_next`` on a box grid, ``ContractedWindows`` on a contracted one), evaluates their density and
applies the rule. The rounds are ``terminate``'s (the same intervals, the same jitter draw, the same samples in
each round), so the kept samples are the same, in the same order. ``render.march.windowed`` says where it is used
(contracted grids on a CPU: there the schedule's every step costs a contraction; a box grid's traversal resumed
round by round cost fern as much as whole). ``ContractedWindows`` also feeds the rounds of contracted frames
(``render.march.render_rounds``).
"""

import torch

from fieldfit.cuda import terminate_round, traverse_occupancy_next

from .contraction import Spans
from .contraction import spans as contracted_spans
from .samples import RaySamples
from .termination import stop_depth

BLOCK = 64  # steps a contracted ray scans at a time for its next occupied intervals


class ContractedWindows:
    """The next k occupied intervals of rays on a contracted grid, resumable: what ``contracted_candidates``
    finds (the same steps, jitter and arithmetic), a few at a time.

    Args:
        grid: the occupancy grid (with its contraction).
        sp: the rays' schedule (``contraction.spans``).
        origins, dirs: [R,3] the rays.
        jitter: [R,1] the fraction of a step every step index is shifted by, or None.
    """

    def __init__(self, grid, sp: Spans, origins: torch.Tensor, dirs: torch.Tensor, jitter: torch.Tensor | None):
        self.grid, self.sp, self.origins, self.dirs, self.jitter = grid, sp, origins, dirs, jitter
        self.end = int(sp.counts.max()) if sp.counts.numel() else 0  # contracted_candidates' last step index

    def __call__(self, rows: torch.Tensor, k_start: torch.Tensor, k: int):
        """Rays ``rows`` [A] from step ``k_start`` [A] (int64): (t_starts [A,k], t_ends [A,k], counts [A],
        k_next [A]: the step after the k-th interval, or ``end`` when the ray has no steps left)."""
        dev, dt = self.origins.device, self.origins.dtype
        n = rows.numel()
        ts_out, te_out = torch.zeros(n, k, device=dev, dtype=dt), torch.zeros(n, k, device=dev, dtype=dt)
        counts = torch.zeros(n, dtype=torch.long, device=dev)
        k_next = k_start.clone()
        lanes = torch.arange(BLOCK + 1, device=dev)
        active = torch.arange(n, device=dev)[k_start < self.end]
        k_next[k_start >= self.end] = self.end
        while active.numel() > 0:
            r = rows[active]
            step_idx = k_next[active, None] + lanes  # [a, BLOCK+1]: interval j spans step_idx[j] .. step_idx[j+1]
            kf = step_idx.to(dt)
            if self.jitter is not None:
                kf = kf + self.jitter[r]
            t = self.sp.times(kf, r)
            t_s, t_e = t[:, :-1], t[:, 1:]
            valid = (t_e > t_s) & (step_idx[:, :-1] < self.end)
            occ = torch.zeros_like(valid)
            flat = valid.nonzero(as_tuple=True)
            mid = 0.5 * (t_s[flat] + t_e[flat])
            rr = r[flat[0]]
            occ[flat] = self.grid.occupied(self.origins[rr] + self.dirs[rr] * mid[:, None])
            slot = counts[active, None] + torch.cumsum(occ, 1) - 1  # where each occupied interval goes
            take = occ & (slot < k)
            a, j = take.nonzero(as_tuple=True)
            ts_out[active[a], slot[a, j]] = t_s[a, j]
            te_out[active[a], slot[a, j]] = t_e[a, j]
            got = take.sum(1)
            counts[active] += got
            full = counts[active] == k
            # the step after the k-th interval where the ray is full, else past this block
            last = torch.where(take, lanes[:-1], -1).amax(1)
            k_next[active] = torch.where(full, k_next[active] + last + 1, k_next[active] + BLOCK)
            active = active[~full & (k_next[active] < self.end)]
        k_next.clamp_(max=self.end)
        return ts_out, te_out, counts, k_next


def _box_windows(grid, origins, dirs, cfg, jitter):
    """The next-k function of a box grid (``traverse_occupancy_next``) and the rays that have a span."""
    t_min, t_max, max_steps, _ = grid.clip(origins, dirs, cfg.near, cfg.far, cfg.step)

    def windows(rows, k_start, k):
        ts, te, counts, kn = traverse_occupancy_next(
            origins[rows], dirs[rows], t_min[rows], t_max[rows], grid.binary, grid.aabb, cfg.step, max_steps,
            k_start.to(torch.int32), k, None if jitter is None else jitter[rows])
        return ts, te, counts.long(), kn.long()

    return windows, (t_max > t_min).nonzero().squeeze(1), max_steps


@torch.no_grad()
def march_windows(density_fn, grid, origins: torch.Tensor, dirs: torch.Tensor, cfg, stratified: bool = False,
                  per_round: int = 16) -> RaySamples:
    """``terminate(density_fn, ..., candidates(grid, ...))`` found a window at a time (module doc): the samples
    of rays [R,3] through ``grid`` that the early-termination rule keeps, packed.

    Args:
        density_fn: points [M,3] -> densities [M] (called without gradient).
        grid: an ``OccupancyGrid`` (with or without a contraction).
        cfg: a ``render.march.MarchConfig``.
        stratified: shift each ray's steps by a random fraction of a step (drawn as ``candidates`` draws it).
        per_round: intervals a ray takes each round (``terminate``'s first round on a CPU: 16).
    """
    n, dev, dt = origins.shape[0], origins.device, origins.dtype
    if n == 0:
        return RaySamples.empty(0, dev, dt)
    if grid.contraction is None:
        jitter = torch.rand(n, device=dev, dtype=dt) if stratified else None  # as OccupancyGrid.march_spans
        windows, alive, end = _box_windows(grid, origins, dirs, cfg, jitter)
    else:
        sp = contracted_spans(grid.contraction, origins, dirs, cfg.near, cfg.far, cfg.step)
        jitter = torch.rand(n, 1, device=dev, dtype=dt) if stratified else None  # as contracted_candidates
        windows = ContractedWindows(grid, sp, origins, dirs, jitter)
        alive, end = torch.arange(n, device=dev), windows.end
    k = int(per_round)
    k_next = torch.zeros(n, dtype=torch.long, device=dev)
    tau_before = torch.zeros(n, dtype=torch.float64, device=dev)  # optical depth so far
    stop_tau = stop_depth(cfg.early_stop)
    parts = []
    while alive.numel() > 0:
        ts, te, counts, kn = windows(alive, k_next[alive], k)
        rows, cols = (torch.arange(k, device=dev) < counts[:, None]).nonzero(as_tuple=True)
        if rows.numel() > 0:
            sub = RaySamples(ts[rows, cols], te[rows, cols], alive[rows], n)
            tau = density_fn(sub.positions(origins, dirs)).reshape(-1).double() * sub.deltas.double()
            keep = torch.zeros(rows.numel(), dtype=torch.bool, device=dev)
            terminate_round(tau, sub.ray_indices, torch.arange(rows.numel(), device=dev), tau_before, keep,
                            cfg.early_stop, cfg.alpha_thre)
            sel = keep.nonzero().squeeze(1)
            parts.append((sub.t_starts[sel], sub.t_ends[sel], sub.ray_indices[sel]))
        k_next[alive] = kn
        alive = alive[(counts == k) & (kn < end) & (tau_before[alive] < stop_tau)]
    if not parts:
        return RaySamples.empty(n, dev, dt)
    t_s, t_e, ri = (torch.cat(p) for p in zip(*parts, strict=True))
    order = torch.sort(ri, stable=True).indices  # rounds came in t order: a stable sort by ray packs them
    return RaySamples(t_s[order], t_e[order], ri[order], n)


__all__ = ["BLOCK", "ContractedWindows", "march_windows"]
