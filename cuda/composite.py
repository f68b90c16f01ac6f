"""Volume-rendering weights of packed samples (segmented transmittance scan).

Three layers: ``composite_packed`` (checks, contiguity, dispatch) -> ``_CompositePacked``
(autograd) -> ``_composite_triton`` (per-ray scan kernels, imported on first CUDA/forced use).
"""

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import composite_packed_ref

_OP = "composite_packed"


class _CompositePacked(torch.autograd.Function):
    """Saves sigmas, t_starts, t_ends, the ray offsets and the transmittance output."""

    @staticmethod
    def forward(ctx, sigmas, t_starts, t_ends, ray_indices, n_rays):
        from . import _composite_triton as k  # noqa: PLC0415 - triton is imported lazily

        offsets = k.ray_offsets(ray_indices, n_rays)
        weights, trans = k.forward(sigmas, t_starts, t_ends, offsets)
        ctx.n_rays = n_rays
        ctx.set_materialize_grads(False)  # an unused output's cotangent stays None: no zeros filled for it
        ctx.save_for_backward(sigmas, t_starts, t_ends, ray_indices, offsets, trans)
        return weights, trans

    @staticmethod
    def backward(ctx, grad_w, grad_t):
        from . import _composite_triton as k  # noqa: PLC0415 - triton is imported lazily

        sigmas, t_starts, t_ends, ray_indices, offsets, trans = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            grad_w = torch.zeros_like(sigmas) if grad_w is None else grad_w
            grad_t = torch.zeros_like(sigmas) if grad_t is None else grad_t
            wanted = [t for t, n in zip((sigmas, t_starts, t_ends), need, strict=True) if n]
            outs = composite_packed_ref(sigmas, t_starts, t_ends, ray_indices, ctx.n_rays)
            grads = iter(torch.autograd.grad(outs, wanted, (grad_w, grad_t), create_graph=True, allow_unused=True))
            return (*(next(grads) if n else None for n in need), None, None)
        dsig, dts, dte = k.backward(sigmas, t_starts, t_ends, offsets, trans,
                                    None if grad_w is None else grad_w.contiguous(),
                                    None if grad_t is None else grad_t.contiguous(), need[0], need[1] or need[2])
        return dsig, dts if need[1] else None, dte if need[2] else None, None, None


def composite_packed(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                     ray_indices: torch.Tensor, n_rays: int):
    """Weights and transmittance of packed samples; semantics of ``composite_packed_ref``.

    tau_i = min(sigma_i (t_end_i - t_start_i), COMPOSITE_MAX_OPTICAL_DEPTH), T_i = exp(-sum of tau
    over the earlier samples of the same ray), w_i = T_i (1 - exp(-tau_i)).

    Args:
        sigmas: [S] float32/float64 densities >= 0.
        t_starts, t_ends: [S], same dtype and device.
        ray_indices: [S] int64, sorted non-decreasing, values in [0, n_rays) (not checked: that
            would cost a device sync; with the kernels, samples out of range get weight and
            transmittance 0 and zero gradients).
        n_rays: number of rays (rays without samples are allowed).

    Returns:
        (weights [S], transmittance [S]) in the dtype of ``sigmas``. Differentiable in sigmas,
        t_starts and t_ends; double backward goes through the torch reference.

    Examples:
        >>> w, t = composite_packed(torch.ones(3), torch.zeros(3), torch.ones(3), torch.tensor([0, 0, 1]), 2)
        >>> [round(v, 4) for v in t.tolist()]
        [1.0, 0.3679, 1.0]
    """
    _checks.tensor(_OP, "sigmas", sigmas, ("S",))
    s = sigmas.shape[0]
    _checks.tensor(_OP, "t_starts", t_starts, (s,), like=("sigmas", sigmas))
    _checks.tensor(_OP, "t_ends", t_ends, (s,), like=("sigmas", sigmas))
    _checks.tensor(_OP, "ray_indices", ray_indices, (s,), dtype=torch.int64, like=("sigmas", sigmas))
    n_rays = _checks.int_arg(_OP, "n_rays", n_rays, 0)
    if backend_for(sigmas) == "torch":
        return composite_packed_ref(sigmas, t_starts, t_ends, ray_indices, n_rays)
    return _CompositePacked.apply(sigmas.contiguous(), t_starts.contiguous(), t_ends.contiguous(),
                                  ray_indices.contiguous(), n_rays)
