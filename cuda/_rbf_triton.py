"""Triton kernels of ``rbf_layer`` (imported lazily by cuda/rbf.py; importing this imports triton).

Forward: one program per (BN points x BK units) tile; a loop over D accumulates
r = sum_d exp(b_kd) (x_nd - mu_kd)^2 in registers (direct form: no cancellation, r >= 0), then
phi = kernel(r) is stored. Nothing of size N x K x D exists anywhere.

Backward (g = dL/dphi * phi'(r), recomputed per tile from x, centers, log_prec):
- dx kernel: one program per BN points, looping over all K in BK tiles; the program owns its rows
  of dx, so it accumulates them in place without atomics.
- param kernel: one program per (BK units, split of N); each loops over its slice of N and owns
  its [split, BK, D] slice of a float partial buffer; torch sums the splits. Deterministic.
"""

import torch
import triton
import triton.language as tl

from ._dispatch import device_guard, num_programs_hint

KERNEL_IDS = {"gaussian": 0, "inverse_quadratic": 1, "inverse_multiquadric": 2, "multiquadric": 3}

# Tiles and warps keep ~8-16 tile elements per thread: no register spills in fp32 or fp64 at
# D = 3..32 (checked by AOT-compiling for sm_90: 64-141 registers), which larger tiles hit.
BN_FWD, BK_FWD, WARPS_FWD = 64, 64, 8
BN_BWD, BK_BWD, WARPS_BWD = 64, 32, 8


@triton.jit
def _phi(r, KERNEL: tl.constexpr):
    if KERNEL == 0:
        out = tl.exp(-0.5 * r)
    elif KERNEL == 1:
        out = 1.0 / (1.0 + r)
    elif KERNEL == 2:
        out = 1.0 / tl.sqrt(1.0 + r)
    else:
        out = tl.sqrt(1.0 + r)
    return out


@triton.jit
def _dphi_dr(phi, KERNEL: tl.constexpr):
    """phi'(r) written in terms of phi itself."""
    if KERNEL == 0:
        out = -0.5 * phi
    elif KERNEL == 1:
        out = -phi * phi
    elif KERNEL == 2:
        out = -0.5 * phi * phi * phi
    else:
        out = 0.5 / phi
    return out


@triton.jit
def _sqdist_tile(x_ptr, c_ptr, lp_ptr, rn, rk, mn, mk, D: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    acc = tl.zeros((BN, BK), dtype=x_ptr.dtype.element_ty)
    for d in range(D):
        xd = tl.load(x_ptr + rn * D + d, mask=mn, other=0.0)
        cd = tl.load(c_ptr + rk * D + d, mask=mk, other=0.0)
        bd = tl.exp(tl.load(lp_ptr + rk * D + d, mask=mk, other=0.0))
        diff = xd[:, None] - cd[None, :]
        acc += bd[None, :] * (diff * diff)
    return acc


@triton.jit
def _rbf_fwd_kernel(x_ptr, c_ptr, lp_ptr, out_ptr, N, K, D: tl.constexpr, KERNEL: tl.constexpr,
                    BN: tl.constexpr, BK: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    rk = tl.program_id(1) * BK + tl.arange(0, BK)
    mn = rn < N
    mk = rk < K
    r = _sqdist_tile(x_ptr, c_ptr, lp_ptr, rn, rk, mn, mk, D, BN, BK)
    phi = _phi(r, KERNEL)
    tl.store(out_ptr + rn[:, None] * K + rk[None, :], phi, mask=mn[:, None] & mk[None, :])


@triton.jit
def _rbf_g_tile(x_ptr, c_ptr, lp_ptr, go_ptr, rn, rk, mn, mk, K, D: tl.constexpr, KERNEL: tl.constexpr,
                BN: tl.constexpr, BK: tl.constexpr):
    """dL/dr on one tile (0 outside the masks)."""
    r = _sqdist_tile(x_ptr, c_ptr, lp_ptr, rn, rk, mn, mk, D, BN, BK)
    phi = _phi(r, KERNEL)
    go = tl.load(go_ptr + rn[:, None] * K + rk[None, :], mask=mn[:, None] & mk[None, :], other=0.0)
    return go * _dphi_dr(phi, KERNEL)


@triton.jit
def _rbf_bwd_dx_kernel(x_ptr, c_ptr, lp_ptr, go_ptr, dx_ptr, N, K, D: tl.constexpr, KERNEL: tl.constexpr,
                       BN: tl.constexpr, BK: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    mn = rn < N
    for k0 in range(0, K, BK):
        rk = k0 + tl.arange(0, BK)
        mk = rk < K
        g = _rbf_g_tile(x_ptr, c_ptr, lp_ptr, go_ptr, rn, rk, mn, mk, K, D, KERNEL, BN, BK)
        for d in range(D):
            xd = tl.load(x_ptr + rn * D + d, mask=mn, other=0.0)
            cd = tl.load(c_ptr + rk * D + d, mask=mk, other=0.0)
            bd = tl.exp(tl.load(lp_ptr + rk * D + d, mask=mk, other=0.0))
            part = tl.sum(g * (2.0 * bd)[None, :] * (xd[:, None] - cd[None, :]), axis=1)
            cur = tl.load(dx_ptr + rn * D + d, mask=mn, other=0.0)
            tl.store(dx_ptr + rn * D + d, cur + part, mask=mn)


@triton.jit
def _rbf_bwd_param_kernel(x_ptr, c_ptr, lp_ptr, go_ptr, dc_ptr, dlp_ptr, N, K, n_per_split,
                          D: tl.constexpr, KERNEL: tl.constexpr, NEED_C: tl.constexpr, NEED_LP: tl.constexpr,
                          BN: tl.constexpr, BK: tl.constexpr):
    rk = tl.program_id(0) * BK + tl.arange(0, BK)
    mk = rk < K
    split = tl.program_id(1)
    n_lo = split.to(tl.int64) * n_per_split
    n_hi = tl.minimum(n_lo + n_per_split, N)
    part_off = split.to(tl.int64) * K * D  # this program's slice of the [splits, K, D] partials
    for n0 in range(n_lo, n_hi, BN):
        rn = n0 + tl.arange(0, BN)
        mn = rn < n_hi
        g = _rbf_g_tile(x_ptr, c_ptr, lp_ptr, go_ptr, rn, rk, mn, mk, K, D, KERNEL, BN, BK)
        for d in range(D):
            xd = tl.load(x_ptr + rn * D + d, mask=mn, other=0.0)
            cd = tl.load(c_ptr + rk * D + d, mask=mk, other=0.0)
            bd = tl.exp(tl.load(lp_ptr + rk * D + d, mask=mk, other=0.0))
            diff = xd[:, None] - cd[None, :]
            gb = g * bd[None, :] * diff
            if NEED_C:
                ptr = dc_ptr + part_off + rk * D + d
                tl.store(ptr, tl.load(ptr, mask=mk, other=0.0) - 2.0 * tl.sum(gb, axis=0), mask=mk)
            if NEED_LP:
                ptr = dlp_ptr + part_off + rk * D + d
                tl.store(ptr, tl.load(ptr, mask=mk, other=0.0) + tl.sum(gb * diff, axis=0), mask=mk)


def forward(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor, kernel: str) -> torch.Tensor:
    n, d = x.shape
    k = centers.shape[0]
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    grid = (triton.cdiv(n, BN_FWD), triton.cdiv(k, BK_FWD))
    with device_guard(x.device):
        _rbf_fwd_kernel[grid](x, centers, log_prec, out, n, k, D=d, KERNEL=KERNEL_IDS[kernel],
                              BN=BN_FWD, BK=BK_FWD, num_warps=WARPS_FWD, enable_fp_fusion=True)
    return out


def backward_x(x, centers, log_prec, grad_out, kernel: str) -> torch.Tensor:
    n, d = x.shape
    k = centers.shape[0]
    dx = torch.zeros_like(x)
    if n == 0 or k == 0 or d == 0:
        return dx
    with device_guard(x.device):
        _rbf_bwd_dx_kernel[(triton.cdiv(n, BN_BWD),)](x, centers, log_prec, grad_out, dx, n, k, D=d,
                                                      KERNEL=KERNEL_IDS[kernel], BN=BN_BWD, BK=BK_BWD, num_warps=WARPS_BWD,
                                                      enable_fp_fusion=True)
    return dx


def backward_params(x, centers, log_prec, grad_out, kernel: str, need_c: bool, need_lp: bool):
    n, d = x.shape
    k = centers.shape[0]
    if n == 0 or k == 0 or d == 0:
        return torch.zeros_like(centers), torch.zeros_like(log_prec)
    k_blocks = triton.cdiv(k, BK_BWD)
    n_blocks = triton.cdiv(n, BN_BWD)
    splits = max(1, min(n_blocks, triton.cdiv(num_programs_hint(x.device), k_blocks)))
    n_per_split = triton.cdiv(n_blocks, splits) * BN_BWD
    splits = triton.cdiv(n, n_per_split)
    dc = torch.zeros((splits, k, d), dtype=x.dtype, device=x.device) if need_c else None
    dlp = torch.zeros((splits, k, d), dtype=x.dtype, device=x.device) if need_lp else None
    dummy = dc if dc is not None else dlp
    with device_guard(x.device):
        _rbf_bwd_param_kernel[(k_blocks, splits)](
            x, centers, log_prec, grad_out, dc if need_c else dummy, dlp if need_lp else dummy, n, k, n_per_split,
            D=d, KERNEL=KERNEL_IDS[kernel], NEED_C=need_c, NEED_LP=need_lp, BN=BN_BWD, BK=BK_BWD, num_warps=WARPS_BWD,
            enable_fp_fusion=True)
    dc = dc.sum(0) if need_c else None
    dlp = dlp.sum(0) if need_lp else None
    return dc, dlp
