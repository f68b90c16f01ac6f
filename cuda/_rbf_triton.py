"""Triton kernels of ``rbf_layer`` (imported lazily by cuda/rbf.py; importing this imports triton).

Forward, two kernels, one program per (BN points x BK units) tile; nothing of size N x K x D exists:
- loop: a loop over D accumulates r = sum_d exp(b_kd) (x_nd - mu_kd)^2 in registers (direct form: no
  cancellation, r >= 0). Any dtype and D.
- dot (float32, D <= 64): the expanded form the torch reference computes, r = (x*x) beta^T - 2 x (beta mu)^T
  + sum_d beta mu^2 clamped at 0, as two tensor-core products (tf32x3 where the GPU has tf32: about float32
  accuracy; the reference's cancellation where |x|, |mu| >> |x - mu|, METHODS.md 1.9.4, and no more). About a
  seventh of the loop's instructions per 64 x 64 tile at D = 32 (sm_90 SASS, Triton 3.9: 4 warps x 1384
  against 8 warps x ~5000, a 147-instruction loop body run 32 times).
On a GPU ``forward`` times both on the first call of each (D, K, kernel) with 16 <= D <= 64 and at least 2^14
points and keeps the faster for the process (``cuda/_choice.py``). Everything else takes the loop: CPUs, float64,
small calls, and D < 16, where the inputs are coordinates (2D images, 3D shapes) whose narrow units (large
beta) the expanded form would blur (float32 reference, |x|, |mu| ~ 30, beta ~ e^3: phi off by 0.010; the
dot kernel by 0.006; the loop by 4e-6; tests/test_kernels_rbf.py) and where the loop is already 8-11x the
reference on an H100/H200.

Backward (float32): one pass over the saved phi and the incoming dL/dphi. A program owns BK units
and a strided set of BN-point tiles; per tile it forms dr = dL/dphi * phi'(r) in registers and
feeds it to two small matrix products (tl.dot; tf32x3 on tensor cores, about float32 accuracy, where
the GPU has tf32 (`_dot_precision`), else plain float32), each with two right-hand sides side by side:
    dr @ [beta | beta mu]  ->  dx = 2 (x * (dr @ beta) - dr @ (beta mu))   stored per tile (per unit tile when K > BK)
    dr^T @ [x | x^2]       ->  A += dr^T x,  B += dr^T x^2                 kept in registers over the program's tiles
and s += sum_n dr. Paired, the left side dr is laid out for the tensor cores once per product instead of
twice: at D = 32 the sm_90 cubin (Triton 3.9) needs 224 registers and no spills, against 255 registers and
spills as four products, with two thirds of the instructions and a quarter of the shared-memory loads (SASS
counts; tests/_kernel_aot.py reports registers, spills and residency). Each program writes its A, B, s once
as a row of a [programs, 2KD + K] partial buffer; torch sums the rows (deterministic, no atomics) and a small
kernel forms
    dmu = 2 beta (mu s - A),   dlog_prec = beta (B - 2 mu A + mu^2 s).
dr, phi' and the products never reach memory: the GEMM backward it replaces wrote dr [N,K] and
read it back four times.
"""

import torch
import triton
import triton.language as tl

from ._choice import MIN_POINTS, Choice
from ._dispatch import cdiv, device_guard, next_pow2, num_programs_hint

KERNEL_IDS = {"gaussian": 0, "inverse_quadratic": 1, "inverse_multiquadric": 2, "multiquadric": 3}

# Tiles and warps keep ~8-16 tile elements per thread: no register spills in fp32 or fp64 at
# D = 3..32 (checked by AOT-compiling for sm_90: 64-141 registers), which larger tiles hit.
BN_FWD, BK_FWD, WARPS_FWD = 64, 64, 8
# Backward: BN points x BK units per tile, D padded to DP (tl.dot needs every side >= 16).
BN_BWD, WARPS_BWD, STAGES_BWD, MAX_DP_BWD = 32, 8, 1, 64
# None: ptxas takes the registers it wants (224 per thread at D = 32 on sm_90: one program of 8 warps per SM);
# a number caps them and spills the rest; kernels_bench also times 128 (two programs per SM, 216 bytes spilled).
MAX_REGISTERS_BWD = None
# Units per backward tile, at most (K = 64 at 32: two unit tiles, 128 registers without spills, two programs per SM,
# and dx summed over the two; kernels_bench times it).
MAX_BK_BWD = 64


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
def _dphi(phi, KERNEL: tl.constexpr):
    """phi'(r) in terms of phi (the backward needs no r)."""
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
def _rbf_fwd_dot_kernel(x_ptr, c_ptr, lp_ptr, out_ptr, N, K, D: tl.constexpr, DP: tl.constexpr,
                        KERNEL: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    rk = tl.program_id(1) * BK + tl.arange(0, BK)
    rd = tl.arange(0, DP)
    mn, mk, md = rn < N, rk < K, rd < D
    x = tl.load(x_ptr + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
    mkd = mk[:, None] & md[None, :]
    mu = tl.load(c_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)
    beta = tl.where(mkd, tl.exp(tl.load(lp_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)), 0.0)
    beta_mu = beta * mu
    r = tl.dot(x * x, tl.trans(beta), input_precision=PREC) - 2.0 * tl.dot(x, tl.trans(beta_mu), input_precision=PREC)
    r = tl.maximum(r + tl.sum(beta_mu * mu, axis=1)[None, :], 0.0)
    tl.store(out_ptr + rn[:, None] * K + rk[None, :], _phi(r, KERNEL), mask=mn[:, None] & mk[None, :])


MIN_D_DOT, MAX_D_DOT, BN_DOT, BK_DOT, WARPS_DOT = 16, 64, 64, 64, 4


def forward_loop(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor, kernel: str) -> torch.Tensor:
    n, d = x.shape
    k = centers.shape[0]
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    grid = (cdiv(n, BN_FWD), cdiv(k, BK_FWD))
    with device_guard(x.device):
        _rbf_fwd_kernel[grid](x, centers, log_prec, out, n, k, D=d, KERNEL=KERNEL_IDS[kernel],
                              BN=BN_FWD, BK=BK_FWD, num_warps=WARPS_FWD, enable_fp_fusion=True)
    return out


def forward_dot(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor, kernel: str) -> torch.Tensor:
    """The expanded form on tensor cores: float32, D <= MAX_D_DOT."""
    n, d = x.shape
    k = centers.shape[0]
    if x.dtype != torch.float32 or d > MAX_D_DOT:
        raise ValueError(f"forward_dot takes float32 x with D <= {MAX_D_DOT}, got {x.dtype} with D = {d}")
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    if n == 0 or k == 0:
        return out
    grid = (cdiv(n, BN_DOT), cdiv(k, BK_DOT))
    with device_guard(x.device):
        _rbf_fwd_dot_kernel[grid](x, centers, log_prec, out, n, k, D=d, DP=max(16, next_pow2(d)),
                                  KERNEL=KERNEL_IDS[kernel], BN=BN_DOT, BK=BK_DOT, PREC=_dot_precision(x.device),
                                  num_warps=WARPS_DOT, enable_fp_fusion=True)
    return out


_forward_choice = Choice()  # forward kernel per (device, D, K, kernel)


def forward(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor, kernel: str) -> torch.Tensor:
    """phi [N,K]: on a GPU, float32 with 16 <= D <= 64 and N >= 2^14, by the faster of the two kernels (timed on
    the first such call of each shape); otherwise by the loop."""
    n, d = x.shape
    if not (x.is_cuda and x.dtype == torch.float32 and MIN_D_DOT <= d <= MAX_D_DOT and n >= MIN_POINTS):
        return forward_loop(x, centers, log_prec, kernel)
    return _forward_choice.call((x.device.index, d, centers.shape[0], kernel),
                                {"loop": forward_loop, "dot": forward_dot}, x, centers, log_prec, kernel,
                                device=x.device)


@triton.jit
def _rbf_bwd_kernel(x_ptr, c_ptr, lp_ptr, phi_ptr, g_ptr, dx_ptr, part_ptr, N, K,
                    D: tl.constexpr, DP: tl.constexpr, KERNEL: tl.constexpr, NEED_X: tl.constexpr,
                    NEED_P: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    kt = tl.program_id(1)
    rk = kt * BK + tl.arange(0, BK)
    rd = tl.arange(0, DP)
    mk = rk < K
    md = rd < D
    mkd = mk[:, None] & md[None, :]
    centers = tl.load(c_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)
    beta = tl.where(mkd, tl.exp(tl.load(lp_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)), 0.0)
    beta_mu = beta * centers
    # [beta | beta mu] interleaved as [BK, 2 DP]: dx's two products share their left side dr (one product)
    beta2 = tl.reshape(tl.join(beta, beta_mu), (BK, 2 * DP))
    acc_ab = tl.zeros((BK, 2 * DP), dtype=tl.float32)  # [A | B] interleaved: A = dr^T x, B = dr^T x^2
    acc_s = tl.zeros((BK,), dtype=tl.float32)
    for t in range(pid, tl.cdiv(N, BN), nprog):
        rn = t * BN + tl.arange(0, BN).to(tl.int64)
        mn = rn < N
        mnd = mn[:, None] & md[None, :]
        mnk = mn[:, None] & mk[None, :]
        x = tl.load(x_ptr + rn[:, None] * D + rd[None, :], mask=mnd, other=0.0)
        phi = tl.load(phi_ptr + rn[:, None] * K + rk[None, :], mask=mnk, other=1.0)
        g = tl.load(g_ptr + rn[:, None] * K + rk[None, :], mask=mnk, other=0.0)
        dr = tl.where(mnk, g * _dphi(phi, KERNEL), 0.0)
        if NEED_X:
            both = tl.reshape(tl.dot(dr, beta2, input_precision=PREC), (BN, DP, 2))
            p_beta, p_beta_mu = tl.split(both)
            dx = 2.0 * (x * p_beta - p_beta_mu)
            tl.store(dx_ptr + kt.to(tl.int64) * N * D + rn[:, None] * D + rd[None, :], dx, mask=mnd)
        if NEED_P:
            acc_ab += tl.dot(tl.trans(dr), tl.reshape(tl.join(x, x * x), (BN, 2 * DP)), input_precision=PREC)
            acc_s += tl.sum(dr, axis=0)
    if NEED_P:  # this program's row of the partials: [A (K*D), B (K*D), s (K)]
        row = part_ptr + pid.to(tl.int64) * (2 * K * D + K)
        off = rk[:, None] * D + rd[None, :]
        acc_a, acc_b = tl.split(tl.reshape(acc_ab, (BK, DP, 2)))
        tl.store(row + off, acc_a, mask=mkd)
        tl.store(row + K * D + off, acc_b, mask=mkd)
        tl.store(row + 2 * K * D + rk, acc_s, mask=mk)


@triton.jit
def _rbf_param_kernel(c_ptr, lp_ptr, tot_ptr, dc_ptr, dlp_ptr, K, D: tl.constexpr, DP: tl.constexpr,
                      NEED_C: tl.constexpr, NEED_LP: tl.constexpr, BK: tl.constexpr):
    """dcenters and dlog_prec from the summed partials ``tot`` = [A, B, s]."""
    rk = tl.program_id(0) * BK + tl.arange(0, BK)
    rd = tl.arange(0, DP)
    mk = rk < K
    mkd = mk[:, None] & (rd < D)[None, :]
    off = rk[:, None] * D + rd[None, :]
    a = tl.load(tot_ptr + off, mask=mkd, other=0.0)
    b = tl.load(tot_ptr + K * D + off, mask=mkd, other=0.0)
    s = tl.load(tot_ptr + 2 * K * D + rk, mask=mk, other=0.0)
    mu = tl.load(c_ptr + off, mask=mkd, other=0.0)
    beta = tl.exp(tl.load(lp_ptr + off, mask=mkd, other=0.0))
    if NEED_C:
        tl.store(dc_ptr + off, 2.0 * beta * (mu * s[:, None] - a), mask=mkd)
    if NEED_LP:
        tl.store(dlp_ptr + off, beta * (b - 2.0 * mu * a + mu * mu * s[:, None]), mask=mkd)


def _dot_precision(device: torch.device) -> str:
    """tf32x3 (three tf32 tensor-core products, about float32 accuracy) on NVIDIA GPUs with tf32
    (compute capability 8.0+); plain float32 products elsewhere (the CPU interpreter, older or
    non-NVIDIA GPUs)."""
    if device.type != "cuda" or torch.version.hip is not None:
        return "ieee"
    return "tf32x3" if torch.cuda.get_device_capability(device)[0] >= 8 else "ieee"


def _register_cap() -> dict:
    return {} if MAX_REGISTERS_BWD is None else {"maxnreg": int(MAX_REGISTERS_BWD)}


def fused_backward_ok(x: torch.Tensor) -> bool:
    """The fused backward runs float32 with D <= MAX_DP_BWD; other inputs take the GEMM backward."""
    return x.dtype == torch.float32 and x.shape[1] <= MAX_DP_BWD


def backward(x, centers, log_prec, phi, grad_phi, kernel: str, needs):
    """(dx, dcenters, dlog_prec) of rbf_layer, None where ``needs`` is False (float32 only)."""
    n, d = x.shape
    k = centers.shape[0]
    need_x, need_c, need_lp = needs
    need_p = need_c or need_lp
    bk = max(16, min(MAX_BK_BWD, next_pow2(k)))
    dp = max(16, next_pow2(d))
    kt = cdiv(k, bk)
    tiles = cdiv(n, BN_BWD)
    progs = max(1, min(tiles, num_programs_hint(x.device) // kt))
    dx_parts = torch.empty((kt, n, d), dtype=x.dtype, device=x.device) if need_x else x
    part = torch.empty((progs, 2 * k * d + k), dtype=x.dtype, device=x.device) if need_p else x
    prec = _dot_precision(x.device)
    with device_guard(x.device):
        _rbf_bwd_kernel[(progs, kt)](x, centers, log_prec, phi, grad_phi.contiguous(), dx_parts, part, n, k,
                                     D=d, DP=dp, KERNEL=KERNEL_IDS[kernel], NEED_X=need_x, NEED_P=need_p,
                                     BN=BN_BWD, BK=bk, PREC=prec, num_warps=WARPS_BWD, num_stages=STAGES_BWD,
                                     enable_fp_fusion=True, **_register_cap())
        dc = torch.empty_like(centers) if need_c else None
        dlp = torch.empty_like(log_prec) if need_lp else None
        if need_p:  # torch's reduction over the programs: parallel and deterministic
            tot = part.sum(0)
            _rbf_param_kernel[(kt,)](centers, log_prec, tot, dc if need_c else tot, dlp if need_lp else tot, k,
                                     D=d, DP=dp, NEED_C=need_c, NEED_LP=need_lp, BK=bk, num_warps=4,
                                     enable_fp_fusion=True)
    dx = None
    if need_x:
        dx = dx_parts[0] if kt == 1 else dx_parts.sum(0)
    return dx, dc, dlp
