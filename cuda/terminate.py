"""Early termination of packed samples, one round at a time (``RadianceModel._terminate``), in one kernel.

A round of the training march and of packed frames evaluates the density of each still-transparent
ray's next samples, then decides which of them to keep and how opaque each ray has become: about
sixteen torch ops and a host sync (``keep[idx[ok]]``) per round in the reference, two launches here.
"""

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import terminate_round_ref

_OP = "terminate_round"


def terminate_round(tau: torch.Tensor, ray_indices: torch.Tensor, idx: torch.Tensor, tau_before: torch.Tensor,
                    keep: torch.Tensor, early_stop: float, alpha_thre: float) -> None:
    """One round of early termination, in place on ``tau_before`` and ``keep`` (``terminate_round_ref``).

    Args:
        tau: [S'] float32/float64 optical depths of this round's samples, sigma * delta.
        ray_indices: [S'] int64, sorted non-decreasing, in [0, R) (not checked: a device sync).
        idx: [S'] int64, distinct places of these samples in ``keep`` (not checked).
        tau_before: [R] each ray's optical depth before the round, the dtype of tau; updated.
        keep: [S] bool, True where a sample is kept; set here for this round's samples that pass.
        early_stop, alpha_thre: the march's thresholds (alpha_thre <= 0: no alpha test).
    """
    _checks.tensor(_OP, "tau", tau, ("S'",))
    like = ("tau", tau)
    _checks.tensor(_OP, "ray_indices", ray_indices, (tau.shape[0],), dtype=torch.int64, like=like)
    _checks.tensor(_OP, "idx", idx, (tau.shape[0],), dtype=torch.int64, like=like)
    _checks.tensor(_OP, "tau_before", tau_before, ("R",), like=like)
    _checks.tensor(_OP, "keep", keep, ("S",), dtype=torch.bool, like=like)
    early_stop, alpha_thre = float(early_stop), float(alpha_thre)
    if backend_for(tau) == "torch" or not (tau_before.is_contiguous() and keep.is_contiguous()):
        terminate_round_ref(tau, ray_indices, idx, tau_before, keep, early_stop, alpha_thre)
        return
    from . import _terminate_triton  # noqa: PLC0415 - triton is imported lazily

    _terminate_triton.terminate_round(tau.contiguous(), ray_indices.contiguous(), idx.contiguous(), tau_before,
                                      keep.view(torch.uint8), early_stop, alpha_thre)
