"""Triton kernels of ``triplane_grid``: every plane (or volume) of a tri-plane encoding in one launch.

The grids live in one flat buffer; an entry table ``meta`` [E,4] int64 holds per grid (element
offset, resolution R, axis of x read along the grid's last axis, axis read along the one before).
Program (i, e) blends the 2^DIM corners of grid e for points [i*BN, (i+1)*BN) and writes its F
columns of the output. Planes use DIM=2, volumes DIM=3 (axes 0, 1, 2): two launches per call
instead of one per grid plus the index copies of ``x[:, [a, b]]``. Sampling is grid_sample's
(align_corners=True, border), as ``_grid_triton``'s dense kernel; backward scatters grid-grads
with relaxed atomics and adds position-grads atomically (several grids read each coordinate). Two
backward kernels, [points, features] tiles or one point per lane; on a GPU the faster is timed and kept.
The buffer is channels-first (grid e at [F, *R]) or, CL, channels-last ([*R, F]: a corner's features
side by side, one memory sector per corner).
"""

import torch
import triton
import triton.language as tl

from ._choice import MIN_POINTS, Choice
from ._dispatch import cdiv, device_guard
from ._grid_triton import _corner, _dense_launch, _feature_block, _gs_axis


@triton.jit
def _axis(x_ptr, rn, mn, ax, S):
    return _gs_axis(tl.load(x_ptr + rn * 3 + ax, mask=mn, other=0.0), S)


@triton.jit
def _strides(S, F, DIM: tl.constexpr, CL: tl.constexpr):
    """(cell stride, feature stride) of a grid of R = S per axis in the flat buffer, channels-last or not."""
    if CL:
        stc = F
        stf = 1
    else:
        stc = 1
        stf = S * S
        if DIM == 3:
            stf = stf * S
    return stc, stf


@triton.jit
def _setup(x_ptr, meta_ptr, N, F, COL0, DIM: tl.constexpr, CL: tl.constexpr, BN: tl.constexpr):
    """This program's points (rn, mask), grid (offset, R, cell stride, feature stride, first output column,
    axes) and per-axis corners (lo, hi, fraction, inside). CL: the buffer is channels-last."""
    e = tl.program_id(1)
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    mn = rn < N
    off = tl.load(meta_ptr + e * 4)
    S = tl.load(meta_ptr + e * 4 + 1)
    a0 = tl.load(meta_ptr + e * 4 + 2)
    a1 = tl.load(meta_ptr + e * 4 + 3)
    lo0, hi0, f0, in0 = _axis(x_ptr, rn, mn, a0, S)
    lo1, hi1, f1, in1 = _axis(x_ptr, rn, mn, a1, S)
    if DIM == 3:
        lo2, hi2, f2, in2 = _axis(x_ptr, rn, mn, 2, S)
    else:
        f2 = tl.zeros(f0.shape, dtype=f0.dtype)
        lo2 = tl.zeros(lo0.shape, dtype=tl.int64)
        hi2 = lo2
        in2 = f2 == 0.0
    stc, stf = _strides(S, F, DIM, CL)
    return (rn, mn, off, S, stc, stf, COL0 + e * F, a0, a1,
            lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2)


@triton.jit
def _fwd_kernel(x_ptr, g_ptr, meta_ptr, out_ptr, N, F, OUT_W, COL0, DIM: tl.constexpr, CL: tl.constexpr,
                BN: tl.constexpr, BF: tl.constexpr):
    (rn, mn, off, S, stc, stf, col, a0, a1,
     lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2) = _setup(x_ptr, meta_ptr, N, F, COL0, DIM, CL, BN)
    for fb in range(0, F, BF):
        rf = fb + tl.arange(0, BF)
        m2 = mn[:, None] & (rf < F)[None, :]
        acc = tl.zeros((BN, BF), dtype=out_ptr.dtype.element_ty)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            o = off + (i0 + (i1 + i2 * S) * S) * stc
            acc += w[:, None] * tl.load(g_ptr + o[:, None] + rf[None, :] * stf, mask=m2, other=0.0)
        tl.store(out_ptr + rn[:, None] * OUT_W + col + rf[None, :], acc, mask=m2)


@triton.jit
def _add_dx(dx_ptr, rn, mn, DIM: tl.constexpr, a0, a1, gx0, gx1, gx2, in0, in1, in2, S):
    """Add one grid's dx to the points' x-grads (atomically: several grids read each coordinate)."""
    half = 0.5 * (S - 1)
    tl.atomic_add(dx_ptr + rn * 3 + a0, tl.where(in0, gx0 * half, 0.0), mask=mn, sem="relaxed")
    tl.atomic_add(dx_ptr + rn * 3 + a1, tl.where(in1, gx1 * half, 0.0), mask=mn, sem="relaxed")
    if DIM == 3:
        tl.atomic_add(dx_ptr + rn * 3 + 2, tl.where(in2, gx2 * half, 0.0), mask=mn, sem="relaxed")


@triton.jit
def _bwd_kernel(x_ptr, g_ptr, meta_ptr, go_ptr, dg_ptr, dx_ptr, N, F, OUT_W, COL0, NEED_G: tl.constexpr,
                NEED_X: tl.constexpr, DIM: tl.constexpr, CL: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr):
    (rn, mn, off, S, stc, stf, col, a0, a1,
     lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2) = _setup(x_ptr, meta_ptr, N, F, COL0, DIM, CL, BN)
    gx0 = tl.zeros((BN,), dtype=f0.dtype)
    gx1 = tl.zeros((BN,), dtype=f0.dtype)
    gx2 = tl.zeros((BN,), dtype=f0.dtype)
    for fb in range(0, F, BF):
        rf = fb + tl.arange(0, BF)
        m2 = mn[:, None] & (rf < F)[None, :]
        go = tl.load(go_ptr + rn[:, None] * OUT_W + col + rf[None, :], mask=m2, other=0.0)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            o = (off + (i0 + (i1 + i2 * S) * S) * stc)[:, None] + rf[None, :] * stf
            if NEED_G:
                tl.atomic_add(dg_ptr + o, w[:, None] * go, mask=m2, sem="relaxed")
            if NEED_X:
                s = tl.sum(go * tl.load(g_ptr + o, mask=m2, other=0.0), axis=1)
                gx0 += s * dw0
                gx1 += s * dw1
                gx2 += s * dw2
    if NEED_X:
        _add_dx(dx_ptr, rn, mn, DIM, a0, a1, gx0, gx1, gx2, in0, in1, in2, S)


@triton.jit
def _bwd_point_kernel(x_ptr, g_ptr, meta_ptr, go_ptr, dg_ptr, dx_ptr, N, F, OUT_W, COL0, NEED_G: tl.constexpr,
                      NEED_X: tl.constexpr, DIM: tl.constexpr, CL: tl.constexpr, BN: tl.constexpr):
    """``_bwd_kernel`` with one point per lane and a loop over features (as ``_grid_triton``'s per-point dense
    backward): no cross-lane feature sums, unmasked atomics (lanes past N add 0 to a valid cell)."""
    (rn, mn, off, S, stc, stf, col, a0, a1,
     lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2) = _setup(x_ptr, meta_ptr, N, F, COL0, DIM, CL, BN)
    gx0 = tl.zeros((BN,), dtype=f0.dtype)
    gx1 = tl.zeros((BN,), dtype=f0.dtype)
    gx2 = tl.zeros((BN,), dtype=f0.dtype)
    for f in range(0, F):
        go = tl.load(go_ptr + rn * OUT_W + col + f, mask=mn, other=0.0)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            o = off + (i0 + (i1 + i2 * S) * S) * stc + f * stf
            if NEED_G:
                tl.atomic_add(dg_ptr + o, w * go, sem="relaxed")
            if NEED_X:
                s = go * tl.load(g_ptr + o)
                gx0 += s * dw0
                gx1 += s * dw1
                gx2 += s * dw2
    if NEED_X:
        _add_dx(dx_ptr, rn, mn, DIM, a0, a1, gx0, gx1, gx2, in0, in1, in2, S)


def _launches(meta_p, meta_v):
    """(meta, DIM, first output column in grids) of the plane and volume launches that have entries."""
    out = []
    if meta_p.shape[0]:
        out.append((meta_p, 2, 0))
    if meta_v.shape[0]:
        out.append((meta_v, 3, meta_p.shape[0]))
    return out


def forward(x, flat, meta_p, meta_v, f: int, cl: bool = False) -> torch.Tensor:
    n, e = x.shape[0], meta_p.shape[0] + meta_v.shape[0]
    out = torch.empty((n, e * f), dtype=flat.dtype, device=x.device)
    if n == 0 or e == 0 or f == 0:
        return out
    cfg = _dense_launch(forward=True)
    with device_guard(x.device):
        for meta, dim, first in _launches(meta_p, meta_v):
            grid = (cdiv(n, cfg["BN"]), meta.shape[0])
            _fwd_kernel[grid](x, flat, meta, out, n, f, e * f, first * f, DIM=dim, CL=cl, BF=_feature_block(f),
                              enable_fp_fusion=True, **cfg)
    return out


BN_POINT, WARPS_POINT = 128, 4
_backward_choice = Choice()  # backward kernel per (device, planes, volumes, F, needs)


def backward_tile(x, flat, meta_p, meta_v, f: int, grad_out, need_x: bool, need_grid: bool, cl: bool = False):
    return _backward(x, flat, meta_p, meta_v, f, grad_out, need_x, need_grid, cl, point=False)


def backward_point(x, flat, meta_p, meta_v, f: int, grad_out, need_x: bool, need_grid: bool, cl: bool = False):
    return _backward(x, flat, meta_p, meta_v, f, grad_out, need_x, need_grid, cl, point=True)


def _backward(x, flat, meta_p, meta_v, f: int, grad_out, need_x: bool, need_grid: bool, cl: bool, point: bool):
    n, e = x.shape[0], meta_p.shape[0] + meta_v.shape[0]
    dflat = torch.zeros_like(flat) if need_grid else None
    dx = torch.zeros_like(x) if need_x else None
    if n == 0 or e == 0 or f == 0 or not (need_x or need_grid):
        return dx, dflat
    if point:
        cfg = dict(BN=BN_POINT, num_warps=WARPS_POINT)
    else:
        cfg = dict(_dense_launch(need_x=need_x), BF=_feature_block(f))
    kernel = _bwd_point_kernel if point else _bwd_kernel
    with device_guard(x.device):
        for meta, dim, first in _launches(meta_p, meta_v):
            grid = (cdiv(n, cfg["BN"]), meta.shape[0])
            kernel[grid](x, flat, meta, grad_out, dflat if need_grid else flat, dx if need_x else x, n, f, e * f,
                         first * f, NEED_G=need_grid, NEED_X=need_x, DIM=dim, CL=cl, enable_fp_fusion=True, **cfg)
    return dx, dflat


def backward(x, flat, meta_p, meta_v, f: int, grad_out, need_x: bool, need_grid: bool, cl: bool = False):
    """(dx, dflat). On a GPU with at least 2^14 points, the faster of the tile and the per-point kernel, timed
    on the first such call of each encoding shape (cuda/_choice.py); otherwise the tile kernel."""
    args = (x, flat, meta_p, meta_v, f, grad_out, need_x, need_grid, cl)
    if not (x.is_cuda and x.shape[0] >= MIN_POINTS):
        return backward_tile(*args)
    key = (x.device.index, meta_p.shape[0], meta_v.shape[0], f, flat.numel(), need_x, need_grid, cl)
    return _backward_choice.call(key, {"tile": backward_tile, "point": backward_point}, *args, device=x.device)
