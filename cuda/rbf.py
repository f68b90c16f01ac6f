"""Fused anisotropic RBF layer: x [N,D], centers [K,D], log_prec [K,D] -> phi [N,K].

Three layers: ``rbf_layer`` (checks, contiguity, dispatch) -> ``_RBFLayer`` (autograd) ->
``_rbf_triton`` (kernels, imported on first CUDA/forced use). On the torch path (every CPU) the Gaussian kernel
goes through ``gaussian_torch`` (``_GaussianTorch``: matrix products and a hand-written backward).
"""

import math

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import RBF_KERNELS, rbf_layer_ref

_OP = "rbf_layer"

# On the torch path (every CPU; a GPU without Triton) Gaussian units end at r = 92, where phi = e^-46 (about
# 1e-20): farther, exp(-r/2) and the gradients made from it fall under 2^-126, and a CPU spends about a hundred
# cycles on each such denormal float. Late in a radiance fit (sharp units, most of them far from any one sample)
# they made the layer's matrix products 3.5x slower (lego 200x200, 2 cores). GPUs do not slow down on them: the
# kernels compute the exact layer (they differ from the torch path by less than 1e-20 per unit).
GAUSSIAN_R_MAX_CPU = 92.0


def gaussian_torch(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor) -> torch.Tensor:
    """The Gaussian layer on the torch path: ``rbf_layer_ref`` with r clamped to [0, GAUSSIAN_R_MAX_CPU], in
    fewer passes over [N,K]: z = -r/2 = (x*x) (-beta/2)^T + x (beta mu)^T - sum(beta mu^2)/2 in two addmm, then
    phi = exp(clamp(z, -46, 0)). Backward (``_GaussianTorch``) takes dL/dz = dL/dphi * phi, the gradient of exp
    at the clamped z: past the end it is e^-46 dL/dphi instead of 0 (no pass over [N,K] for the clamp's mask).
    Double backward differentiates ``rbf_layer_ref`` with the same end."""
    return _GaussianTorch.apply(x, centers, log_prec)


class _GaussianTorch(torch.autograd.Function):
    """The torch path's Gaussian layer with a hand-written backward. Forward, with W = [beta mu, -beta/2] [K,2D]
    (beta = exp(log_prec)): z = x^2 W_2^T + x W_1^T - sum(beta mu^2)/2 in two addmm. Backward, with
    dz = dL/dphi * phi, s = sum_n dz, A = dz^T x, Q = dz^T x^2 and [U, V] = dz W:
        dx = U + 2 x V,  dmu = beta (A - mu s),  dlog_prec = -beta (Q - 2 mu A + mu^2 s) / 2.
    One elementwise pass over [N,K] instead of autograd's four (exp, and the clamp's two compares and select).
    [x, x^2] is never concatenated: with many samples (radiance fits) that copy cost more than the products."""

    @staticmethod
    def forward(ctx, x, centers, log_prec):
        beta = log_prec.exp()
        beta_mu, half_beta = beta * centers, -0.5 * beta
        xx = x * x
        z = torch.addmm((beta_mu * centers).sum(-1).mul_(-0.5), xx, half_beta.t())
        phi = z.addmm_(x, beta_mu.t()).clamp_(-0.5 * GAUSSIAN_R_MAX_CPU, 0.0).exp_()
        w = torch.cat([beta_mu, half_beta], 1)
        ctx.save_for_backward(x, xx, w, centers, log_prec, phi)
        return phi

    @staticmethod
    def backward(ctx, grad_phi):
        x, xx, w, centers, log_prec, phi = ctx.saved_tensors
        need_x, need_c, need_lp = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference with the same end instead
            return _reference_vjp(x, centers, log_prec, "gaussian", grad_phi, ctx.needs_input_grad,
                                  GAUSSIAN_R_MAX_CPU)
        d = x.shape[1]
        dz = grad_phi * phi
        dx = dc = dlp = None
        if need_x:
            uv = dz @ w
            dx = torch.addcmul(uv[:, :d], x, uv[:, d:], value=2.0)
        if need_c or need_lp:
            beta = log_prec.exp()
            s = dz.sum(0).unsqueeze(1)
            dzt = dz.t()
            a = dzt @ x
            if need_c:
                dc = beta * torch.addcmul(a, centers, s, value=-1.0)
            if need_lp:
                dlp = (-0.5 * beta) * (dzt @ xx - 2.0 * centers * a + centers * centers * s)
        return dx, dc, dlp


class _RBFLayer(torch.autograd.Function):
    """Forward: the fused kernel (no N x K x D tensor); phi is saved for backward.

    Backward, float32: the fused backward kernel (one pass over phi and dL/dphi; see _rbf_triton).
    float64 (and D > 64): dr = dphi * phi'(r) in one elementwise pass, then matrix products
        dx  = 2 (x * (dr @ beta) - dr @ (beta mu))
        dmu = 2 beta (mu * sum_n dr - dr^T x)
        db  = beta (dr^T x^2 - 2 mu * dr^T x + mu^2 * sum_n dr)
    (beta = exp(log_prec)). create_graph=True differentiates the reference instead."""

    @staticmethod
    def forward(ctx, x, centers, log_prec, kernel):
        from . import _rbf_triton  # noqa: PLC0415 - triton is imported lazily

        phi = _rbf_triton.forward(x, centers, log_prec, kernel)
        ctx.kernel = kernel
        ctx.save_for_backward(x, centers, log_prec, phi)
        return phi

    @staticmethod
    def backward(ctx, grad_phi):
        from . import _rbf_triton  # noqa: PLC0415 - triton is imported lazily

        x, centers, log_prec, phi = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            return (*_reference_vjp(x, centers, log_prec, ctx.kernel, grad_phi, needs), None)
        if min(phi.shape) == 0 or x.shape[1] == 0:
            return tuple(torch.zeros_like(t) if need else None
                         for t, need in zip((x, centers, log_prec), needs, strict=True)) + (None,)
        if _rbf_triton.fused_backward_ok(x):
            return (*_rbf_triton.backward(x, centers, log_prec, phi, grad_phi, ctx.kernel, needs), None)
        return (*_gemm_backward(x, centers, log_prec, phi, grad_phi, ctx.kernel, needs), None)


def _gemm_backward(x, centers, log_prec, phi, grad_phi, kernel, needs):
    need_x, need_c, need_lp = needs
    dr = grad_phi * _dphi_dr(phi, kernel)
    beta = log_prec.exp()
    dx = dc = dlp = None
    if need_x:
        dx = 2.0 * (x * (dr @ beta) - dr @ (beta * centers))
    if need_c or need_lp:
        s = dr.sum(0).unsqueeze(1)
        a = dr.t() @ x
        if need_c:
            dc = 2.0 * beta * (centers * s - a)
        if need_lp:
            dlp = beta * (dr.t() @ (x * x) - 2.0 * centers * a + centers * centers * s)
    return dx, dc, dlp


def _dphi_dr(phi: torch.Tensor, kernel: str) -> torch.Tensor:
    """phi'(r) written in terms of phi itself (so backward needs no r)."""
    if kernel == "gaussian":
        return -0.5 * phi
    if kernel == "inverse_quadratic":
        return -phi * phi
    if kernel == "inverse_multiquadric":
        return -0.5 * phi * phi * phi
    return 0.5 / phi  # multiquadric: phi >= 1


def _reference_vjp(x, centers, log_prec, kernel, grad_phi, needs, r_max=math.inf):
    """Differentiable VJP through the reference (used only for double backward)."""
    inputs = [t for t, need in zip((x, centers, log_prec), needs, strict=True) if need]
    phi = rbf_layer_ref(x, centers, log_prec, kernel, r_max)
    grads = iter(torch.autograd.grad(phi, inputs, grad_phi, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None for need in needs)


def rbf_layer(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor, kernel: str = "gaussian"):
    """One layer of K anisotropic RBF units, fused on CUDA.

    phi[n,k] = kernel(r[n,k]), r[n,k] = sum_d exp(log_prec[k,d]) (x[n,d] - centers[k,d])^2, with
    kernel one of ``RBF_KERNELS`` (gaussian exp(-r/2), inverse_quadratic 1/(1+r),
    inverse_multiquadric (1+r)^-1/2, multiquadric (1+r)^1/2).

    Args:
        x: [N, D] float32/float64.
        centers: [K, D], same dtype and device as ``x``.
        log_prec: [K, D], same dtype and device as ``x``.
        kernel: name of the radial kernel.

    Returns:
        phi [N, K], dtype of ``x``. Differentiable in x, centers and log_prec; double backward
        (create_graph=True) is supported through the torch reference. On the torch path (every CPU) Gaussian
        units end at r = ``GAUSSIAN_R_MAX_CPU`` (phi no smaller than e^-46, zero gradient beyond).

    Examples:
        >>> phi = rbf_layer(torch.randn(5, 3), torch.randn(4, 3), torch.zeros(4, 3))
        >>> phi.shape
        torch.Size([5, 4])
    """
    _checks.tensor(_OP, "x", x, ("N", "D"))
    d = x.shape[1]
    _checks.tensor(_OP, "centers", centers, ("K", d), like=("x", x))
    _checks.tensor(_OP, "log_prec", log_prec, (centers.shape[0], d), like=("x", x))
    if kernel not in RBF_KERNELS:
        raise ValueError(f"{_OP}: argument 'kernel' must be one of {RBF_KERNELS}, got {kernel!r}")
    if backend_for(x) == "torch":
        if kernel == "gaussian":
            return gaussian_torch(x, centers, log_prec)
        return rbf_layer_ref(x, centers, log_prec, kernel)
    return _RBFLayer.apply(x.contiguous(), centers.contiguous(), log_prec.contiguous(), kernel)
