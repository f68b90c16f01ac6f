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
    if t.dim() != len(shape) or any(isinstance(s, int) and t.shape[i] != s for i, s in enumerate(shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"  # built for the message only
        raise ValueError(f"{op}: argument '{name}' must have shape {want}, got {list(t.shape)}")
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if t.dtype not in allowed:
        raise TypeError(f"{op}: argument '{name}' must have dtype in {[str(d) for d in allowed]}, got {t.dtype}")
    if like is not None:
        other_name, other = like
        if t.device != other.device:
            raise ValueError(f"{op}: argument '{name}' is on {t.device} but '{other_name}' is on {other.device}")
        if t.is_floating_point() and other.is_floating_point() and t.dtype != other.dtype:
            raise TypeError(f"{op}: argument '{name}' has dtype {t.dtype} but '{other_name}' has {other.dtype}")
    return t


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
    order = sorted(range(t.dim()), key=lambda i: (t.stride(i), -t.shape[i]))
    expected = 1
    for i in order:
        if t.shape[i] != 1 and t.stride(i) != expected:
            return t.contiguous()
        expected *= t.shape[i]
    return t
