"""Losses on packed ray samples (functional): regularisers of the weights a compositing pass produced."""

import torch

from .samples import RaySamples


def exclusive_segment_sum(x: torch.Tensor, samples: RaySamples) -> torch.Tensor:
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
    inter = 2.0 * (w * (m * exclusive_segment_sum(w, samples) - exclusive_segment_sum(w * m, samples))).sum()
    intra = (w * w * samples.deltas.double()).sum() / 3.0
    return ((inter + intra) / max(samples.n_rays, 1)).to(weights.dtype)


__all__ = ["distortion_loss", "exclusive_segment_sum"]
