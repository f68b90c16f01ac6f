"""Triton kernel of ``terminate_round`` (imported lazily; importing this imports triton).

One program per ray scans that ray's samples of the round in chunks of BS, carrying its optical depth
from tau_before (as the composite kernel does): the transmittance in front of each sample, the keep
decision, and the ray's new optical depth. The reference's global float64 scan minus each ray's start
rounds differently from this per-ray scan (by about 1e-16 relative): a sample whose transmittance lies
within that of early_stop can be decided the other way.
"""

import triton
import triton.language as tl

from ._composite_triton import ray_offsets
from ._dispatch import device_constant, device_guard

BS = 64


@triton.jit
def _terminate_round_kernel(tau_ptr, offs_ptr, idx_ptr, before_ptr, keep_ptr, thr_ptr,
                            HAS_ALPHA: tl.constexpr, BS: tl.constexpr):
    ray = tl.program_id(0)
    early_stop = tl.load(thr_ptr)  # thresholds in tau's dtype (a float argument would be rounded to float32)
    alpha_thre = tl.load(thr_ptr + 1)
    start = tl.load(offs_ptr + ray)
    end = tl.load(offs_ptr + ray + 1)
    if end > start:
        carry = tl.load(before_ptr + ray)
        for s0 in range(start, end, BS):
            i = s0 + tl.arange(0, BS)
            m = i < end
            tau = tl.load(tau_ptr + i, mask=m, other=0.0)
            trans = tl.exp(-(tl.cumsum(tau, axis=0) - tau + carry))
            ok = trans >= early_stop
            if HAS_ALPHA:
                ok = ok & ((1.0 - tl.exp(-tau)) >= alpha_thre)
            j = tl.load(idx_ptr + i, mask=m, other=0)
            tl.store(keep_ptr + j, tl.full((BS,), 1, tl.uint8), mask=m & ok)
            carry += tl.sum(tau, axis=0)
        tl.store(before_ptr + ray, carry)


def terminate_round(tau, ray_indices, idx, tau_before, keep, early_stop: float, alpha_thre: float) -> None:
    """Launch ``_terminate_round_kernel`` (arguments as ``terminate_round``; contiguous; keep as uint8)."""
    n_rays = tau_before.shape[0]
    if tau.numel() == 0 or n_rays == 0:
        return
    offsets = ray_offsets(ray_indices, n_rays)
    thresholds = device_constant((early_stop, alpha_thre), tau.dtype, tau.device)  # a float argument: float32
    with device_guard(tau.device):
        _terminate_round_kernel[(n_rays,)](tau, offsets, idx, tau_before, keep, thresholds, HAS_ALPHA=alpha_thre > 0,
                                           BS=BS, num_warps=2, enable_fp_fusion=False)
