"""Feature-grid lookups: ``dense_grid`` (one dense 2D/3D level) and ``hash_grid`` (all hash levels).

Three layers: public function (checks, layout, dispatch) -> ``_DenseGrid`` / ``_HashGrid``
(autograd) -> ``_grid_triton`` (kernels, imported on first CUDA/forced use).
"""

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import HASH_PRIMES, dense_grid_ref, hash_grid_ref, hash_grid_vectorized


def _needs(ctx):
    return ctx.needs_input_grad[0], ctx.needs_input_grad[1]


class _DenseGrid(torch.autograd.Function):
    """Saves x and grid (inputs only). Grid-grad by atomics, x-grad per point."""

    @staticmethod
    def forward(ctx, x, grid):
        from . import _grid_triton  # noqa: PLC0415 - triton is imported lazily

        ctx.save_for_backward(x, grid)
        return _grid_triton.dense_forward(x, grid)

    @staticmethod
    def backward(ctx, grad_out):
        from . import _grid_triton  # noqa: PLC0415 - triton is imported lazily

        x, grid = ctx.saved_tensors
        need_x, need_grid = _needs(ctx)
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            return _reference_vjp(lambda a, b: dense_grid_ref(a, b), (x, grid), grad_out, (need_x, need_grid))
        return _grid_triton.dense_backward(x, grid, grad_out.contiguous(), need_x, need_grid)


class _HashGrid(torch.autograd.Function):
    """Saves x, table and the per-level int tensors. Table-grad by atomics, x-grad per point."""

    @staticmethod
    def forward(ctx, x, table, resolutions, res_t, hashed_t):
        from . import _grid_triton  # noqa: PLC0415 - triton is imported lazily

        ctx.resolutions = resolutions
        ctx.save_for_backward(x, table, res_t, hashed_t)
        return _grid_triton.hash_forward(x, table, res_t, hashed_t)

    @staticmethod
    def backward(ctx, grad_out):
        from . import _grid_triton  # noqa: PLC0415 - triton is imported lazily

        x, table, res_t, hashed_t = ctx.saved_tensors
        need_x, need_table = _needs(ctx)
        if torch.is_grad_enabled():
            fn = lambda a, b: hash_grid_ref(a, b, ctx.resolutions)  # noqa: E731 - the reference on (x, table)
            dx, dtable = _reference_vjp(fn, (x, table), grad_out, (need_x, need_table))
        else:
            dx, dtable = _grid_triton.hash_backward(x, table, res_t, hashed_t, grad_out.contiguous(), need_x,
                                                    need_table)
        return dx, dtable, None, None, None


def _reference_vjp(fn, inputs, grad_out, needs):
    """Differentiable VJP through the reference (used only for double backward)."""
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    grads = iter(torch.autograd.grad(fn(*inputs), wanted, grad_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None for need in needs)


def dense_grid(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bi/trilinear lookup of one dense grid level; exactly ``grid_sample(align_corners=True, border)``.

    Args:
        x: [N, d] float32/float64 positions in [-1, 1] (outside is clamped to the border);
            x[:, 0] runs along the LAST grid axis, as in grid_sample. d = 2 or 3.
        grid: [F, H, W] (d = 2) or [F, D, H, W] (d = 3), same dtype and device as ``x``. Any dense
            memory layout; channels-last (``g.permute(3, 0, 1, 2)`` of a [D, H, W, F] tensor) is
            fastest on CUDA and is used without a copy.

    Returns:
        [N, F]. Differentiable in x and grid (the x-grad is zero on the border, as in
        grid_sample); double backward goes through the torch reference.

    Examples:
        >>> dense_grid(torch.zeros(4, 2), torch.ones(3, 8, 8)).shape
        torch.Size([4, 3])
    """
    op = "dense_grid"
    _checks.tensor(op, "x", x, ("N", "d"))
    if x.shape[1] not in (2, 3):
        raise ValueError(f"{op}: argument 'x' must have shape [N, 2] or [N, 3], got {list(x.shape)}")
    d = x.shape[1]
    _checks.tensor(op, "grid", grid, ("F",) + ("R",) * d, like=("x", x))
    if backend_for(x) == "torch":
        return dense_grid_ref(x, grid)
    return _DenseGrid.apply(x.contiguous(), _checks.dense_strides(grid))


def hash_grid(x: torch.Tensor, table: torch.Tensor, resolutions) -> torch.Tensor:
    """Multi-resolution hash encoding (instant-ngp), all levels at once; semantics of ``hash_grid_ref``.

    Args:
        x: [N, d] float32/float64 positions in [-1, 1] (clamped), d = 1, 2 or 3.
        table: [L, T, F], same dtype and device as ``x``.
        resolutions: L ints >= 1 (grid vertices per axis); level l is a dense array when
            resolutions[l]^d <= T, else hashed with the primes of HASH_PRIMES, mod T.

    Returns:
        [N, L*F], level-major. Differentiable in table (atomic scatter on CUDA) and in x (the x-grad
        is computed too, zero where x is clamped); double backward goes through the reference.

    Examples:
        >>> hash_grid(torch.zeros(4, 3), torch.zeros(2, 64, 2), [4, 16]).shape
        torch.Size([4, 4])
    """
    op = "hash_grid"
    _checks.tensor(op, "x", x, ("N", "d"))
    d = x.shape[1]
    if not 1 <= d <= len(HASH_PRIMES):
        raise ValueError(f"{op}: argument 'x' must have shape [N, d] with 1 <= d <= 3, got {list(x.shape)}")
    _checks.tensor(op, "table", table, ("L", "T", "F"), like=("x", x))
    res = [int(r) for r in (resolutions.tolist() if isinstance(resolutions, torch.Tensor) else resolutions)]
    if len(res) != table.shape[0] or any(r < 1 for r in res):
        raise ValueError(f"{op}: argument 'resolutions' must hold L={table.shape[0]} ints >= 1, got {res}")
    if table.shape[1] < 1 or table.shape[1] >= 2**31:
        raise ValueError(f"{op}: argument 'table' must have 1 <= T < 2^31 rows per level, got {table.shape[1]}")
    if backend_for(x) == "torch":
        return hash_grid_vectorized(x, table, res)
    from . import _grid_triton  # noqa: PLC0415 - triton is imported lazily

    res_t, hashed_t = _grid_triton.hash_levels(res, d, table.shape[1], x.device)
    return _HashGrid.apply(x.contiguous(), table.contiguous(), res, res_t, hashed_t)
