"""Occupancy-grid ray marching that emits packed samples (no gradient).

Three layers: ``traverse_occupancy`` (checks, contiguity, dispatch) -> ``_traverse_triton``
(two-pass count/write kernel, imported on first CUDA/forced use). No autograd layer: the outputs
are sample positions, not differentiable quantities (as in the reference).
"""

import operator

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import traverse_occupancy_ref

_OP = "traverse_occupancy"


def traverse_occupancy(origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor,
                       binary: torch.Tensor, aabb: torch.Tensor, step_size: float, max_samples_per_ray: int,
                       jitter=None):
    """March rays with a fixed step; keep intervals whose midpoint is in an occupied cell.

    Semantics of ``traverse_occupancy_ref``: ray r takes [t_k, min(t_k + step, t_max)) with
    t_k = t_min[r] + (k + jitter[r]) step, k < max_samples_per_ray, while t_k < t_max[r]; kept
    when the midpoint is inside ``aabb`` (1e-6 of the extent tolerance) and its cell is True.

    Args:
        origins, dirs: [R, 3] float32/float64 (dirs any length; t is in units of |d|).
        t_min, t_max: [R], same dtype and device as ``origins``.
        binary: [G0, G1, G2] bool occupancy, cell (i, j, k) axis 0 along x.
        aabb: [2, 3] float (min row, max row), same device.
        step_size: float > 0.
        max_samples_per_ray: int >= 0, a cap on the steps taken per ray.
        jitter: None or [R] float in [0, 1), same device.

    Returns:
        (t_starts [S], t_ends [S], ray_indices [S] int64 sorted), S = total kept intervals; no
        gradient. The CUDA path syncs once (to size the output).

    Examples:
        >>> occ = torch.ones(2, 2, 2, dtype=torch.bool)
        >>> box = torch.tensor([[-1.0] * 3, [1.0] * 3])
        >>> o, d = torch.tensor([[-2.0, 0, 0]]), torch.tensor([[1.0, 0, 0]])
        >>> ts, te, ri = traverse_occupancy(o, d, torch.ones(1), torch.full((1,), 3.0), occ, box, 0.5, 16)
        >>> ts.tolist()
        [1.0, 1.5, 2.0, 2.5]
    """
    _checks.tensor(_OP, "origins", origins, ("R", 3))
    r = origins.shape[0]
    _checks.tensor(_OP, "dirs", dirs, (r, 3), like=("origins", origins))
    _checks.tensor(_OP, "t_min", t_min, (r,), like=("origins", origins))
    _checks.tensor(_OP, "t_max", t_max, (r,), like=("origins", origins))
    _checks.tensor(_OP, "binary", binary, ("G0", "G1", "G2"), dtype=torch.bool, like=("origins", origins))
    if binary.numel() == 0 or binary.numel() >= 2**31:
        raise ValueError(f"{_OP}: argument 'binary' must have 1 <= numel < 2^31, got shape {list(binary.shape)}")
    _checks.tensor(_OP, "aabb", aabb, (2, 3), dtype=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
    if aabb.device != origins.device:
        raise ValueError(f"{_OP}: argument 'aabb' is on {aabb.device} but 'origins' is on {origins.device}")
    if jitter is not None:
        _checks.tensor(_OP, "jitter", jitter, (r,), dtype=(torch.float16, torch.bfloat16, torch.float32,
                                                         torch.float64))
        if jitter.device != origins.device:
            raise ValueError(f"{_OP}: argument 'jitter' is on {jitter.device} but 'origins' is on {origins.device}")
    step = float(step_size)
    if not step > 0.0:
        raise ValueError(f"{_OP}: argument 'step_size' must be > 0, got {step_size!r}")
    try:
        m = operator.index(max_samples_per_ray)
    except TypeError:
        raise TypeError(f"{_OP}: argument 'max_samples_per_ray' must be an int, got {max_samples_per_ray!r}") from None
    if m < 0 or m >= 2**31:
        raise ValueError(f"{_OP}: argument 'max_samples_per_ray' must be in [0, 2^31), got {m}")
    if backend_for(origins) == "torch":
        return traverse_occupancy_ref(origins, dirs, t_min, t_max, binary, aabb, step, m, jitter)
    from . import _traverse_triton  # noqa: PLC0415 - triton is imported lazily

    dt = origins.dtype
    lo, hi = aabb[0].to(dt), aabb[1].to(dt)  # the reference's arithmetic, op for op
    extent = hi - lo
    tol = 1e-6 * extent
    box = torch.stack([lo, extent, lo - tol, hi + tol]).contiguous()
    step_t = torch.tensor([step], dtype=dt, device=origins.device)
    with torch.no_grad():
        return _traverse_triton.traverse(
            origins.contiguous(), dirs.contiguous(), t_min.contiguous(), t_max.contiguous(),
            binary.contiguous().view(torch.uint8), box, step_t, m, None if jitter is None else jitter.contiguous())
