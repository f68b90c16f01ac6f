"""Experiment, not used by fieldfit: the training march's early termination in one density pass.

``fieldfit.render.termination.terminate`` evaluates the candidates' density in rounds, front to back, only
for rays still transparent: on a CPU that saves evaluations. On a GPU each round costs its launches and
host syncs (4 boolean selections a round); the H200 profile of 2026-11-26 had the march at 33 of
54 ms per training step, bound by the host. This version evaluates every candidate once (no grad)
and keeps the same samples (transmittance before them >= early_stop, alpha >= alpha_thre; float64
scan as in the rounds); bench/gpu_profile.py times both on the same rays. Not a default: it has
not been timed on a GPU.
"""

import torch

from fieldfit.render import RaySamples
from fieldfit.render.losses import exclusive_segment_sum


@torch.no_grad()
def terminate_single_pass(density_fn, origins, dirs, cand: RaySamples, early_stop: float,
                          alpha_thre: float = 0.0) -> RaySamples:
    """The samples ``render.termination.terminate(density_fn, origins, dirs, cand, early_stop, alpha_thre)``
    keeps, from one density pass."""
    tau = density_fn(cand.positions(origins, dirs)).reshape(-1).double() * cand.deltas.double()
    ok = torch.exp(-exclusive_segment_sum(tau, cand)) >= early_stop
    if alpha_thre > 0:
        ok &= (1.0 - torch.exp(-tau)) >= alpha_thre
    return RaySamples(cand.t_starts[ok], cand.t_ends[ok], cand.ray_indices[ok], cand.n_rays)
