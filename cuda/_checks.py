"""Argument checks shared by the public ops: every message names the op and the argument."""

import operator

import torch

FLOATS = (torch.float32, torch.float64)


def tensor(op: str, name: str, t, shape: tuple, dtype=FLOATS, like=None) -> torch.Tensor:
    """Check one tensor argument.

    shape: one entry per dimension; an int must match, None matches anything; a str is a
    label (e.g. "N") that matches anything and only appears in the message.
    dtype: a dtype or a tuple of allowed dtypes.
    like: (name, tensor) whose device (and, for float tensors, dtype) ``t`` must share.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    have = t.shape
    if len(have) != len(shape):
        _bad_shape(op, name, shape, have)
    for h, s in zip(have, shape, strict=True):  # a loop, not any(): this runs per argument per call
        if type(s) is int and h != s:
            _bad_shape(op, name, shape, have)
    dt = t.dtype
    if dt is not dtype and (type(dtype) is not tuple or dt not in dtype):
        allowed = dtype if isinstance(dtype, tuple) else (dtype,)
        raise TypeError(f"{op}: argument '{name}' must have dtype in {[str(d) for d in allowed]}, got {dt}")
    if like is not None:
        other_name, other = like
        if t.device != other.device:
            raise ValueError(f"{op}: argument '{name}' is on {t.device} but '{other_name}' is on {other.device}")
        if dt != other.dtype and dt.is_floating_point and other.dtype.is_floating_point:
            raise TypeError(f"{op}: argument '{name}' has dtype {dt} but '{other_name}' has {other.dtype}")
    return t


def _bad_shape(op: str, name: str, shape: tuple, have) -> None:
    want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    raise ValueError(f"{op}: argument '{name}' must have shape {want}, got {list(have)}")


def int_arg(op: str, name: str, v, minimum: int) -> int:
    """``v`` as an int >= ``minimum``, or a TypeError / ValueError naming ``op`` and the argument."""
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: argument '{name}' must be an int, got {v!r}") from None
    if v < minimum:
        raise ValueError(f"{op}: argument '{name}' must be >= {minimum}, got {v}")
    return v


def dense_strides(t: torch.Tensor):
    """``t`` itself when its memory is dense and non-overlapping in any axis order, else a contiguous copy.

    Lets a grid stored channels-last (a permuted view) reach the kernel without a copy.
    """
    if t.is_contiguous():
        return t
    expected = 1
    for stride, size in sorted(zip(t.stride(), t.shape, strict=True)):  # innermost first; size-1 axes take any stride
        if size != 1 and stride != expected:
            return t.contiguous()
        expected *= size
    return t
