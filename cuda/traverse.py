"""Occupancy-grid ray marching that emits packed samples (no gradient).

Three layers: ``traverse_occupancy`` (checks, contiguity, dispatch) -> ``_traverse_triton``
(two-pass count/write kernel, imported on first CUDA/forced use); on the torch path (every CPU)
``_traverse_torch.traverse_blocks``, the reference's intervals with blocks of empty steps skipped.
``traverse_occupancy_next`` is the same march resumed at a step index, at most K kept intervals per
ray in a fixed [R, K] layout: what a renderer that marches in rounds (and stops opaque rays between
them) asks for. No autograd layer: the outputs are sample positions, not differentiable quantities
(as in the reference).
"""

import operator

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import traverse_next_ref
from ._traverse_torch import skips_empty, traverse_blocks

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
    step, m = _check_march(_OP, origins, dirs, t_min, t_max, binary, aabb, step_size, max_samples_per_ray,
                           "max_samples_per_ray")
    _check_jitter(_OP, jitter, origins)
    if backend_for(origins) == "torch":
        return traverse_blocks(origins, dirs, t_min, t_max, binary, aabb, step, m, jitter)
    from . import _traverse_triton  # noqa: PLC0415 - triton is imported lazily

    box, step_t = _box(aabb, step, origins)
    with torch.no_grad():
        return _traverse_triton.traverse(
            origins.contiguous(), dirs.contiguous(), t_min.contiguous(), t_max.contiguous(),
            binary.contiguous().view(torch.uint8), box, step_t, m, None if jitter is None else jitter.contiguous())


def traverse_occupancy_next(origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor,
                            binary: torch.Tensor, aabb: torch.Tensor, step_size: float, max_steps: int,
                            k_start: torch.Tensor, n_keep: int, jitter=None):
    """``traverse_occupancy`` resumed at step ``k_start[r]``, at most ``n_keep`` kept intervals per ray.

    Semantics of ``traverse_next_ref``: ray r looks at steps k >= k_start[r] with k < max_steps and
    t_k = t_min[r] + (k + jitter[r]) step < t_max[r], and keeps the first n_keep intervals that
    ``traverse_occupancy`` keeps. Calling again with k_start = k_next continues the march: the chained
    calls give exactly ``traverse_occupancy``'s intervals.

    Args:
        origins, dirs, t_min, t_max, binary, aabb, step_size: as ``traverse_occupancy``.
        max_steps: int >= 0, a cap on the step index.
        k_start: [R] int32, the first step each ray looks at (>= max_steps: the ray is done).
        n_keep: int >= 0, K.
        jitter: None or [R] float in [0, 1) (keep it fixed across the calls of one march).

    Returns:
        (t_starts [R,K], t_ends [R,K] (zeros past a ray's count), counts [R] int32,
        k_next [R] int32: one past the step of the K-th kept interval, or max_steps once the ray has
        no steps left). No gradient, no device sync.

    Examples:
        >>> occ = torch.ones(2, 2, 2, dtype=torch.bool)
        >>> box = torch.tensor([[-1.0] * 3, [1.0] * 3])
        >>> o, d = torch.tensor([[-2.0, 0, 0]]), torch.tensor([[1.0, 0, 0]])
        >>> ts, te, n, k = traverse_occupancy_next(o, d, torch.ones(1), torch.full((1,), 3.0), occ, box, 0.5, 16,
        ...                                        torch.tensor([1], dtype=torch.int32), 2)
        >>> ts.tolist(), n.tolist(), k.tolist()
        ([[1.5, 2.0]], [2], [3])
    """
    op = "traverse_occupancy_next"
    step, m = _check_march(op, origins, dirs, t_min, t_max, binary, aabb, step_size, max_steps, "max_steps")
    _checks.tensor(op, "k_start", k_start, (origins.shape[0],), dtype=torch.int32)
    if k_start.device != origins.device:
        raise ValueError(f"{op}: argument 'k_start' is on {k_start.device} but 'origins' is on {origins.device}")
    k = _checks.int_arg(op, "n_keep", n_keep, 0)
    _check_jitter(op, jitter, origins)
    if backend_for(origins) == "torch":
        return traverse_next_ref(origins, dirs, t_min, t_max, binary, aabb, step, m, k_start, k, jitter)
    from . import _traverse_triton  # noqa: PLC0415 - triton is imported lazily

    box, step_t = _box(aabb, step, origins)
    with torch.no_grad():
        return _traverse_triton.traverse_next(
            origins.contiguous(), dirs.contiguous(), t_min.contiguous(), t_max.contiguous(),
            binary.contiguous().view(torch.uint8), box, step_t, m, k_start.contiguous(), k,
            None if jitter is None else jitter.contiguous())


def _check_march(op, origins, dirs, t_min, t_max, binary, aabb, step_size, max_steps, max_name):
    """The checks both ops share; returns (step as float, max_steps as int)."""
    _checks.tensor(op, "origins", origins, ("R", 3))
    r = origins.shape[0]
    _checks.tensor(op, "dirs", dirs, (r, 3), like=("origins", origins))
    _checks.tensor(op, "t_min", t_min, (r,), like=("origins", origins))
    _checks.tensor(op, "t_max", t_max, (r,), like=("origins", origins))
    _checks.tensor(op, "binary", binary, ("G0", "G1", "G2"), dtype=torch.bool, like=("origins", origins))
    if binary.numel() == 0 or binary.numel() >= 2**31:
        raise ValueError(f"{op}: argument 'binary' must have 1 <= numel < 2^31, got shape {list(binary.shape)}")
    _checks.tensor(op, "aabb", aabb, (2, 3), dtype=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
    if aabb.device != origins.device:
        raise ValueError(f"{op}: argument 'aabb' is on {aabb.device} but 'origins' is on {origins.device}")
    step = float(step_size)
    if not step > 0.0:
        raise ValueError(f"{op}: argument 'step_size' must be > 0, got {step_size!r}")
    try:
        m = operator.index(max_steps)
    except TypeError:
        raise TypeError(f"{op}: argument '{max_name}' must be an int, got {max_steps!r}") from None
    if m < 0 or m >= 2**31:
        raise ValueError(f"{op}: argument '{max_name}' must be in [0, 2^31), got {m}")
    return step, m


def _check_jitter(op, jitter, origins):
    if jitter is not None:
        _checks.tensor(op, "jitter", jitter, (origins.shape[0],), dtype=(torch.float16, torch.bfloat16,
                                                                          torch.float32, torch.float64))
        if jitter.device != origins.device:
            raise ValueError(f"{op}: argument 'jitter' is on {jitter.device} but 'origins' is on {origins.device}")


def _box(aabb, step: float, origins):
    """[4,3] lo, 1 / extent, lo - tol, hi + tol in origins' dtype (the reference's arithmetic, op for op),
    and the step as a one-element tensor."""
    dt = origins.dtype
    lo, hi = aabb[0].to(dt), aabb[1].to(dt)
    extent = hi - lo
    tol = 1e-6 * extent
    box = torch.stack([lo, 1.0 / extent, lo - tol, hi + tol]).contiguous()
    return box, torch.full((1,), step, dtype=dt, device=origins.device)  # a fill: no host copy, no sync


def traversal_skips_empty(binary: torch.Tensor) -> bool:
    """Whether the torch path of ``traverse_occupancy`` skips blocks of empty steps in the occupancy grid
    ``binary`` [G0,G1,G2] bool (a sparse grid: an object's; not a forward-facing capture's, nearly all occupied)."""
    _checks.tensor("traversal_skips_empty", "binary", binary, ("G0", "G1", "G2"), dtype=torch.bool)
    return skips_empty(binary)
