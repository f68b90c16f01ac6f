"""Experiment, not used by fieldfit: rbf_layer's forward as matrix products on tensor cores.

fieldfit's forward kernel (cuda/_rbf_triton.py) sums beta (x - mu)^2 over D in a loop: exact
(no cancellation, r >= 0) but at D = 32 barely faster than the torch reference on an H100/H200
(0.37 ms against 0.38-0.47 ms at 2^18 x 64). This kernel uses the expanded form, as the reference
does, r = (x*x) @ beta^T - 2 x @ (beta mu)^T + sum_d beta mu^2, clamped at 0, with tf32x3 products.
It can lose accuracy by cancellation where |x| and |mu| are large against |x - mu| (METHODS.md
1.9.4), which is why it is not the default. bench/kernels_bench.py times it and records its largest
difference from the reference on the bench's inputs (x, mu ~ N(0, 1): no cancellation to speak
of; the reference is the expanded form too); if it is much faster, the cancellation regime needs
its own accuracy check before it could replace the loop.
Imported only on CUDA (importing it imports triton).
"""

import torch
import triton
import triton.language as tl

from fieldfit.cuda._rbf_triton import _dot_precision

BN, BK, WARPS = 64, 64, 4


@triton.jit
def _fwd_dot_kernel(x_ptr, c_ptr, lp_ptr, out_ptr, N, K, D: tl.constexpr, DP: tl.constexpr, BN: tl.constexpr,
                    BK: tl.constexpr, PREC: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    rk = tl.program_id(1) * BK + tl.arange(0, BK)
    rd = tl.arange(0, DP)
    mn, mk, md = rn < N, rk < K, rd < D
    x = tl.load(x_ptr + rn[:, None] * D + rd[None, :], mask=mn[:, None] & md[None, :], other=0.0)
    mkd = mk[:, None] & md[None, :]
    mu = tl.load(c_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)
    beta = tl.where(mkd, tl.exp(tl.load(lp_ptr + rk[:, None] * D + rd[None, :], mask=mkd, other=0.0)), 0.0)
    beta_mu = beta * mu
    const = tl.sum(beta_mu * mu, axis=1)
    r = tl.dot(x * x, tl.trans(beta), input_precision=PREC) - 2.0 * tl.dot(x, tl.trans(beta_mu), input_precision=PREC)
    r = tl.maximum(r + const[None, :], 0.0)
    tl.store(out_ptr + rn[:, None] * K + rk[None, :], tl.exp(-0.5 * r), mask=mn[:, None] & mk[None, :])


def rbf_forward_dot(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor) -> torch.Tensor:
    """Gaussian phi [N,K] of float32 x [N,D], centers [K,D], log_prec [K,D] (forward only)."""
    n, d = x.shape
    k = centers.shape[0]
    out = torch.empty((n, k), dtype=x.dtype, device=x.device)
    prec = _dot_precision(x.device)
    grid = (triton.cdiv(n, BN), triton.cdiv(k, BK))
    _fwd_dot_kernel[grid](x, centers, log_prec, out, n, k, D=d, DP=max(16, triton.next_power_of_2(d)), BN=BN, BK=BK,
                          PREC=prec, num_warps=WARPS, enable_fp_fusion=True)
    return out
