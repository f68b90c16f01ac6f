"""``triplane_grid``: all planes and volumes of a tri-plane encoding in one call (two kernel launches).

Three layers as in ``grid``: public function (checks, dispatch) -> ``_TriPlane`` (autograd) ->
``_triplane_triton`` (kernels, imported on first CUDA/forced use). The kernels read the grids from one
flat buffer: when the grids already sit back to back in one storage (``pack`` puts them there), that
buffer is a view and nothing is copied; otherwise they are concatenated once per call. A packed buffer
is channels-first or channels-last (each corner's features side by side: on CUDA one memory sector per
corner instead of one per feature, and the layout ``TriPlane`` keeps on a GPU).
"""

import functools

import torch

from . import _checks
from ._dispatch import backend_for, device_constant
from ._torch_ref import triplane_ref

PLANES = ((0, 1), (0, 2), (1, 2))  # (axis along the grid's last axis, axis along the one before), per plane


def _layout(g: torch.Tensor) -> str | None:
    """'cf' when ``g`` [F, *R] is contiguous, 'cl' when its features are the fastest axis (a permuted view of a
    contiguous [*R, F] tensor, as ``pack(..., channels_last=True)`` leaves it), else None. From the strides
    alone: this runs per grid per lookup."""
    if g.is_contiguous():
        return "cf"
    shape, stride = g.shape, g.stride()
    if stride == _channels_last_strides(shape):
        return "cl"
    expected = shape[0]
    if stride[0] != 1 and shape[0] != 1:
        return None
    for size, st in zip(reversed(shape[1:]), reversed(stride[1:]), strict=True):
        if st != expected and size != 1:
            return None
        expected *= size
    return "cl"


@functools.lru_cache(maxsize=256)
def _channels_last_strides(shape: torch.Size) -> tuple:
    """The strides of a [F, *R] view of a contiguous [*R, F] tensor."""
    out, at = [1], shape[0]
    for size in reversed(shape[1:]):
        out.insert(1, at)
        at *= size
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _contiguous_strides(shape: torch.Size) -> tuple:
    out, at = [], 1
    for size in reversed(shape):
        out.insert(0, at)
        at *= max(size, 1)
    return tuple(out)


def _flat_view(grids) -> tuple[torch.Tensor, bool] | None:
    """(one 1-D view over ``grids``, channels-last) when they share a layout (``_layout``) and lie back to back
    in one storage, else None."""
    first, last = grids[0], grids[-1]
    layout = _layout(first)
    if layout is None or last.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
        return None
    at, base, item = first.storage_offset(), first.data_ptr(), first.element_size()
    for g in grids:  # back to back by address: the view reads each grid's own memory (first and last: one storage)
        if g.data_ptr() != base + (at - first.storage_offset()) * item or _layout(g) != layout:
            return None
        at += g.numel()
    flat = first.detach().as_strided((at - first.storage_offset(),), (1,), first.storage_offset())
    return flat, layout == "cl"


def _flat(grids) -> tuple[torch.Tensor, bool]:
    """(``grids`` as one 1-D buffer back to back, channels-last): a view when they are packed (``pack``), else a
    channels-first copy."""
    view = _flat_view(grids)
    return view if view is not None else (torch.cat([g.reshape(-1) for g in grids]), False)


def _unflatten(flat: torch.Tensor, shape: torch.Size, channels_last: bool, at: int = 0) -> torch.Tensor:
    """The grid of ``shape`` [F, *R] whose memory is the 1-D ``flat`` from element ``at`` on, in the given layout."""
    strides = _channels_last_strides(shape) if channels_last else _contiguous_strides(shape)
    return flat.as_strided(shape, strides, flat.storage_offset() + at)


def pack(grids, channels_last: bool = False) -> None:
    """Move ``grids`` (tensors or Parameters of one device and dtype) into one storage, back to back, each
    channels-first ([F, *R] contiguous) or channels-last (features fastest: what the CUDA kernels read best)."""
    grids = list(grids)
    if not grids:
        return
    view = _flat_view(grids)
    if view is not None and (view[1] or grids[0].shape[0] == 1) == channels_last:
        return
    with torch.no_grad():
        parts = [(g.detach().movedim(0, -1) if channels_last else g.detach()).reshape(-1) for g in grids]
        flat = torch.cat(parts)
        at = 0
        for g in grids:
            g.data = _unflatten(flat, g.shape, channels_last, at)
            at += g.numel()


def _meta(planes, volumes, device):
    """Entry tables [E,4] int64 of the planes and of the volumes: (offset in the flat buffer, R, axis of x along
    the grid's last axis, axis along the one before), device constants."""
    rows, at = [], 0
    for i, p in enumerate(planes):
        rows.append((at, p.shape[-1], *PLANES[i % 3]))
        at += p.numel()
    vrows = []
    for v in volumes:
        vrows.append((at, v.shape[-1], 0, 1))
        at += v.numel()
    return tuple(device_constant(tuple(r), torch.int64, device).view(-1, 4) for r in (rows, vrows))


class _TriPlane(torch.autograd.Function):
    """Saves x, the flat grid buffer (a view when packed), the entry tables and the grids (for double
    backward only). Grid-grads come back as views of one buffer."""

    @staticmethod
    def forward(ctx, x, meta_p, meta_v, n_planes, *grids):
        from . import _triplane_triton  # noqa: PLC0415 - triton is imported lazily

        flat, ctx.cl = _flat(grids)
        ctx.shapes = [g.shape for g in grids]
        ctx.f = grids[0].shape[0]
        ctx.save_for_backward(x, flat, meta_p, meta_v, *grids)
        return _triplane_triton.forward(x, flat, meta_p, meta_v, ctx.f, ctx.cl)

    @staticmethod
    def backward(ctx, grad_out):
        from . import _triplane_triton  # noqa: PLC0415 - triton is imported lazily

        x, flat, meta_p, meta_v, *grids = ctx.saved_tensors
        need_x, need_grid = ctx.needs_input_grad[0], any(ctx.needs_input_grad[4:])
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            from .grid import _reference_vjp  # noqa: PLC0415 - only the create_graph path needs it

            n_p = meta_p.shape[0]
            fn = lambda a, *g: triplane_ref(a, g[:n_p], g[n_p:])  # noqa: E731 - the reference on flat inputs
            res = _reference_vjp(fn, (x, *grids), grad_out, (need_x, *[need_grid] * len(grids)))
            return (res[0], None, None, None, *res[1:])
        dx, dflat = _triplane_triton.backward(x, flat, meta_p, meta_v, ctx.f, grad_out.contiguous(), need_x,
                                              need_grid, ctx.cl)
        dgrids, at = [], 0
        for shape in ctx.shapes:  # in the buffer's layout: a packed grid's grad is laid out as the grid
            dgrids.append(None if dflat is None else _unflatten(dflat, shape, ctx.cl, at))
            at += shape.numel()
        return (dx, None, None, None, *dgrids)


def check_grids(op: str, planes, volumes, like: tuple, prefix: str = "") -> int:
    """Check tri-plane grids: 3 planes [F, R, R] per level, volumes [F, R, R, R], one F, on ``like``'s device
    and dtype; errors name ``op`` and ``prefix`` + the argument. Returns F."""
    if not planes or len(planes) % 3:
        raise ValueError(f"{op}: argument '{prefix}planes' must hold 3 grids per level, got {len(planes)}")
    f = planes[0].shape[0]
    for name, grids, dims in (("planes", planes, 2), ("volumes", volumes, 3)):
        for i, g in enumerate(grids):
            _checks.tensor(op, f"{prefix}{name}[{i}]", g, ("F",) + ("R",) * dims, like=like)
            if g.shape[0] != f or len(set(g.shape[1:])) != 1:
                raise ValueError(f"{op}: argument '{prefix}{name}[{i}]' must have shape "
                                 f"[{f}, R{', R' * (dims - 1)}], got {list(g.shape)}")
    return f


def triplane_grid(x: torch.Tensor, planes, volumes=()) -> torch.Tensor:
    """Tri-plane features: bilinear lookups of ``planes`` and trilinear of ``volumes``, concatenated.

    Args:
        x: [N, 3] float32/float64 positions in [-1, 1] (outside reads the border).
        planes: 3L grids [F, R, R] (level-major; within a level xy, xz, yz: plane i reads
            x[:, PLANES[i % 3]], the first of the pair along the grid's last axis, as grid_sample).
        volumes: grids [F, R, R, R] read at x (x[:, 0] along the last axis).

    Returns:
        [N, (3L + V) F]: ``torch.cat([dense_grid(x[:, [a, b]], p) ...] + [dense_grid(x, v) ...], 1)``.
        Differentiable in x and every grid.

    Examples:
        >>> triplane_grid(torch.zeros(4, 3), [torch.ones(2, 8, 8)] * 3).shape
        torch.Size([4, 6])
    """
    op = "triplane_grid"
    _checks.tensor(op, "x", x, ("N", "d"))
    if x.shape[1] != 3:
        raise ValueError(f"{op}: argument 'x' must have shape [N, 3], got {list(x.shape)}")
    planes, volumes = list(planes), list(volumes)
    check_grids(op, planes, volumes, ("x", x))
    if backend_for(x) == "torch":
        return triplane_ref(x, planes, volumes)
    meta_p, meta_v = _meta(planes, volumes, x.device)
    return _TriPlane.apply(x.contiguous(), meta_p, meta_v, len(planes), *planes, *volumes)


__all__ = ["PLANES", "check_grids", "pack", "triplane_grid"]
