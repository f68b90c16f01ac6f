"""Early ray termination: which samples a ray still sees, decided front to back (the one implementation).

The rule (every marcher uses it, through ``fieldfit.cuda.terminate_round``; the fused frame kernel holds
the same rule in registers, see ``fieldfit.cuda.fused``): sample i of a ray, with optical depth
tau_i = sigma_i delta_i, is kept when the transmittance in front of it, exp(-sum_{j<i} tau_j) over every
earlier sample of the ray (kept or not), is >= ``early_stop`` and, when ``alpha_thre`` > 0, its alpha
1 - exp(-tau_i) is >= ``alpha_thre``. A ray whose optical depth reaches -log(early_stop) is done.

``terminate`` applies it to packed candidates, evaluating the density in rounds so that a ray that turns
opaque early costs few evaluations; ``keep_batched`` applies it to a round of [rays, k] samples.
"""

import math

import torch

from fieldfit.cuda import terminate_round

from .samples import RaySamples


def stop_depth(early_stop: float) -> float:
    """Optical depth at which a ray is done: -log(early_stop) (inf when early_stop <= 0)."""
    return -math.log(early_stop) if early_stop > 0 else math.inf


@torch.no_grad()
def terminate(density_fn, origins: torch.Tensor, dirs: torch.Tensor, candidates: RaySamples, early_stop: float,
              alpha_thre: float = 0.0, per_round: int | None = None, grow: int | None = None) -> RaySamples:
    """The candidates the rule keeps (module doc), from density evaluations done in rounds, front to back.

    Args:
        density_fn: points [M,3] -> densities [M] (called without gradient, only for rays still transparent).
        origins, dirs: [R,3] the rays of ``candidates``.
        candidates: packed samples, each ray's in increasing t.
        early_stop, alpha_thre: the rule's thresholds (both <= 0: everything is kept).
        per_round, grow: samples per ray in the first round and the factor of the next ones; default 16 and 1
            on a CPU, 32 and 2 on a GPU (where a round costs its launches and host syncs, not arithmetic).

    Returns:
        RaySamples, a subset of ``candidates`` in the same order.
    """
    if candidates.n_samples == 0 or (early_stop <= 0 and alpha_thre <= 0):
        return candidates
    ri = candidates.ray_indices
    on_gpu = ri.is_cuda
    per_round = per_round or (32 if on_gpu else 16)
    grow = grow or (2 if on_gpu else 1)
    counts = candidates.counts()
    rank = torch.arange(candidates.n_samples, device=ri.device) - (torch.cumsum(counts, 0) - counts)[ri]
    tau_before = torch.zeros(candidates.n_rays, dtype=torch.float64, device=ri.device)  # optical depth so far
    keep = torch.zeros(candidates.n_samples, dtype=torch.bool, device=ri.device)
    stop_tau = stop_depth(early_stop)
    pending = torch.arange(candidates.n_samples, device=ri.device)  # not evaluated yet, ray still transparent
    r = 0
    while pending.numel() > 0:
        now = rank[pending] < r + per_round
        idx = pending[now]
        sub = RaySamples(candidates.t_starts[idx], candidates.t_ends[idx], ri[idx], candidates.n_rays)
        tau = density_fn(sub.positions(origins, dirs)).reshape(-1).double() * sub.deltas.double()
        terminate_round(tau, sub.ray_indices, idx, tau_before, keep, early_stop, alpha_thre)
        pending = pending[~now & (tau_before[ri[pending]] < stop_tau)]  # one mask (a sync) for both
        r += per_round
        per_round *= grow
    sel = keep.nonzero().squeeze(1)  # one sync for the three selections (a boolean mask syncs each)
    return RaySamples(candidates.t_starts[sel], candidates.t_ends[sel], ri[sel], candidates.n_rays)


def keep_batched(tau: torch.Tensor, valid: torch.Tensor, tau_before: torch.Tensor, early_stop: float,
                 alpha_thre: float) -> torch.Tensor:
    """[A,k] bool: the rule on a round of k samples of A rays (tau [A,k], valid [A,k] bool, tau_before [A] the
    rays' optical depth before the round; not changed). Invalid samples are not kept and add no depth."""
    rows, cols = valid.nonzero(as_tuple=True)
    kept = torch.zeros(rows.numel(), dtype=torch.bool, device=tau.device)
    tau_v = tau[rows, cols].double()  # float64 scan, as ``terminate``
    before = tau_before.double().clone()  # terminate_round adds the round to it
    terminate_round(tau_v, rows, torch.arange(rows.numel(), device=tau.device), before, kept, early_stop, alpha_thre)
    out = torch.zeros_like(valid)
    out[rows, cols] = kept
    return out


__all__ = ["keep_batched", "stop_depth", "terminate"]
