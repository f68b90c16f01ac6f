"""Triton kernels of ``composite_packed`` (imported lazily; importing this imports triton).

One program per ray scans that ray's contiguous samples in chunks of BS: within a chunk
``tl.cumsum`` gives the exclusive optical depth, a scalar carries it to the next chunk. The scan
runs per ray in the input dtype, so it needs none of the reference's float64 global-scan care.

Backward, with tau_k = min(sigma_k delta_k, MAX), w_i = T_i (1 - e^-tau_i):
    dL/dtau_k = gw_k T_k e^-tau_k - sum_{i>k, same ray} (gw_i w_i + gT_i T_i)
(0 where the clamp is active), a reverse scan per ray (chunks visited last to first).
"""

import torch
import triton
import triton.language as tl

from ._dispatch import device_guard
from ._torch_ref import COMPOSITE_MAX_OPTICAL_DEPTH

BS = 64


@triton.jit
def _tau(sig_ptr, ts_ptr, te_ptr, idx, m, MAX_TAU: tl.constexpr):
    sigma = tl.load(sig_ptr + idx, mask=m, other=0.0)
    delta = tl.load(te_ptr + idx, mask=m, other=0.0) - tl.load(ts_ptr + idx, mask=m, other=0.0)
    raw = sigma * delta
    return sigma, delta, tl.minimum(raw, MAX_TAU), raw <= MAX_TAU


@triton.jit
def _composite_fwd_kernel(sig_ptr, ts_ptr, te_ptr, offs_ptr, w_ptr, trans_ptr,
                          MAX_TAU: tl.constexpr, BS: tl.constexpr):
    ray = tl.program_id(0)
    start = tl.load(offs_ptr + ray)
    end = tl.load(offs_ptr + ray + 1)
    carry = tl.sum(tl.zeros((BS,), dtype=w_ptr.dtype.element_ty), axis=0)
    for s0 in range(start, end, BS):
        idx = s0 + tl.arange(0, BS)
        m = idx < end
        sigma, delta, tau, unclamped = _tau(sig_ptr, ts_ptr, te_ptr, idx, m, MAX_TAU)
        exclusive = tl.cumsum(tau, axis=0) - tau + carry
        trans = tl.exp(-exclusive)
        tl.store(trans_ptr + idx, trans, mask=m)
        tl.store(w_ptr + idx, trans * (1.0 - tl.exp(-tau)), mask=m)
        carry += tl.sum(tau, axis=0)


@triton.jit
def _composite_bwd_kernel(sig_ptr, ts_ptr, te_ptr, offs_ptr, trans_ptr, gw_ptr, gt_ptr,
                          dsig_ptr, dts_ptr, dte_ptr, NEED_SIG: tl.constexpr, NEED_T: tl.constexpr,
                          MAX_TAU: tl.constexpr, BS: tl.constexpr):
    ray = tl.program_id(0)
    start = tl.load(offs_ptr + ray)
    end = tl.load(offs_ptr + ray + 1)
    n_chunks = (end - start + BS - 1) // BS
    later = tl.sum(tl.zeros((BS,), dtype=trans_ptr.dtype.element_ty), axis=0)  # sum over samples after the chunk
    for j in range(0, n_chunks):
        idx = start + (n_chunks - 1 - j) * BS + tl.arange(0, BS)
        m = idx < end
        sigma, delta, tau, unclamped = _tau(sig_ptr, ts_ptr, te_ptr, idx, m, MAX_TAU)
        trans = tl.load(trans_ptr + idx, mask=m, other=0.0)
        gw = tl.load(gw_ptr + idx, mask=m, other=0.0)
        gt = tl.load(gt_ptr + idx, mask=m, other=0.0)
        decay = tl.exp(-tau)
        v = gw * trans * (1.0 - decay) + gt * trans
        after = tl.cumsum(v, axis=0, reverse=True) - v + later
        dtau = tl.where(unclamped, gw * trans * decay - after, 0.0)
        if NEED_SIG:
            tl.store(dsig_ptr + idx, dtau * delta, mask=m)
        if NEED_T:
            tl.store(dte_ptr + idx, dtau * sigma, mask=m)
            tl.store(dts_ptr + idx, -dtau * sigma, mask=m)
        later += tl.sum(v, axis=0)


def ray_offsets(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """[n_rays + 1] int64: samples of ray r are offsets[r] .. offsets[r+1] (ray_indices sorted)."""
    return torch.searchsorted(ray_indices, torch.arange(n_rays + 1, device=ray_indices.device, dtype=torch.int64))


def forward(sigmas, t_starts, t_ends, offsets):
    n_rays = offsets.numel() - 1
    weights = torch.zeros_like(sigmas)
    trans = torch.zeros_like(sigmas)
    if sigmas.numel() == 0 or n_rays == 0:
        return weights, trans
    with device_guard(sigmas.device):
        _composite_fwd_kernel[(n_rays,)](sigmas, t_starts, t_ends, offsets, weights, trans,
                                         MAX_TAU=COMPOSITE_MAX_OPTICAL_DEPTH, BS=BS, num_warps=2, enable_fp_fusion=True)
    return weights, trans


def backward(sigmas, t_starts, t_ends, offsets, trans, grad_w, grad_t, need_sigma: bool, need_t: bool):
    n_rays = offsets.numel() - 1
    dsig = torch.zeros_like(sigmas) if need_sigma else None
    dts = torch.zeros_like(sigmas) if need_t else None
    dte = torch.zeros_like(sigmas) if need_t else None
    if sigmas.numel() == 0 or n_rays == 0:
        return dsig, dts, dte
    dummy = sigmas
    with device_guard(sigmas.device):
        _composite_bwd_kernel[(n_rays,)](
            sigmas, t_starts, t_ends, offsets, trans, grad_w, grad_t,
            dsig if need_sigma else dummy, dts if need_t else dummy, dte if need_t else dummy,
            NEED_SIG=need_sigma, NEED_T=need_t, MAX_TAU=COMPOSITE_MAX_OPTICAL_DEPTH, BS=BS, num_warps=2, enable_fp_fusion=True)
    return dsig, dts, dte
