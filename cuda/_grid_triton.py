"""Triton kernels of ``dense_grid`` and ``hash_grid`` (imported lazily; importing this imports triton).

Both gather the 2^d corners of the cell holding each point and blend them d-linearly. Points are
tiled BN at a time, the features of a corner in one [BN, BF] gather (dense grids loop over chunks
of 8 features); unused axes (d < 3) are carried as a constant 0 coordinate with weight 1 so one
code path serves d = 1, 2, 3.

Backward: the feature-grad scatters into the grid/table with relaxed ``tl.atomic_add``
(non-deterministic summation order on GPU); the position-grad is accumulated in registers per
point (no atomics). Dense grids have a second backward kernel, one point per lane with a loop over
features; on a GPU the faster of the two is timed and kept per problem (``dense_backward``).
Dense grids are read through their strides, so a grid stored channels-last (a permuted view of a
[*R, F] tensor) is used without a copy and its gradient comes back in the same layout.
"""

import torch
import triton
import triton.language as tl

from ._choice import MIN_POINTS, Choice
from ._dispatch import cdiv, device_constant, device_guard, next_pow2
from ._torch_ref import HASH_PRIMES

# _hash_index spells the primes out as literals (Triton folds them as constants); keep them equal.
assert HASH_PRIMES == (1, 2654435761, 805459861), "update _hash_index with the new primes"

# Launch shapes. All 2^d corner gathers of a tile are in flight at once, so registers grow with
# (points x features) per thread; these keep the kernels spill-free in fp32 and fp64 (checked by
# AOT-compiling for sm_90), which 128 x 32 tiles are not.
DENSE_BF = 8  # feature chunk per gather (the kernel loops over chunks)


def _dense_launch(need_x: bool = False, forward: bool = False):
    if forward:
        return dict(BN=128, num_warps=8)
    return dict(BN=32 if need_x else 64, num_warps=4)


def _hash_bn(bf: int, need_x: bool = False) -> int:
    return max(16, (128 if need_x else 256) // max(bf, 2))


@triton.jit
def _pick(c: tl.constexpr, bit: tl.constexpr, lo, hi, frac):
    """Index and weight along one axis for corner ``c`` (its bit ``bit`` set = the upper vertex)."""
    if (c >> bit) & 1:
        idx = hi
        w = frac
    else:
        idx = lo
        w = 1.0 - frac
    return idx, w


@triton.jit
def _corner(c: tl.constexpr, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2):
    """Indices, weight and d(weight)/d(frac_i) of corner ``c`` (bit i set = upper corner along axis i)."""
    i0, w0 = _pick(c, 0, lo0, hi0, f0)
    i1, w1 = _pick(c, 1, lo1, hi1, f1)
    i2, w2 = _pick(c, 2, lo2, hi2, f2)
    s0: tl.constexpr = 2 * (c & 1) - 1
    s1: tl.constexpr = 2 * ((c >> 1) & 1) - 1
    s2: tl.constexpr = 2 * ((c >> 2) & 1) - 1
    return i0, i1, i2, w0 * w1 * w2, s0 * (w1 * w2), s1 * (w0 * w2), s2 * (w0 * w1)


# --------------------------------------------------------------------------- dense (grid_sample)


@triton.jit
def _gs_axis(xc, S):
    """grid_sample(align_corners=True, padding_mode='border') of coordinates xc in [-1, 1] along an axis of
    S vertices: (lower vertex, upper vertex, fraction, strictly inside: grid_sample zeroes the position-grad
    on the border)."""
    ix = (xc + 1.0) * 0.5 * (S - 1)
    inside = (ix > 0.0) & (ix < S - 1)
    ix = tl.where(ix == ix, ix, 0.0)  # NaN -> 0 keeps the gathers in bounds
    ix = tl.minimum(tl.maximum(ix, 0.0), S - 1)
    lo_f = tl.floor(ix)
    lo = lo_f.to(tl.int64)
    return lo, tl.minimum(lo + 1, S - 1), ix - lo_f, inside


@triton.jit
def _dense_axis(x_ptr, rn, mn, i: tl.constexpr, DIM: tl.constexpr, S):
    """grid_sample(align_corners=True, padding_mode='border') along axis i of the points' coordinates."""
    if i < DIM:
        lo, hi, frac, inside = _gs_axis(tl.load(x_ptr + rn * DIM + i, mask=mn, other=0.0), S)
    else:
        frac = tl.zeros(rn.shape, dtype=x_ptr.dtype.element_ty)
        lo = tl.zeros(rn.shape, dtype=tl.int64)
        hi = lo
        inside = frac == 0.0
    return lo, hi, frac, inside


@triton.jit
def _dense_setup(x_ptr, N, S0, S1, S2, DIM: tl.constexpr, BN: tl.constexpr):
    """This program's points (rn, mask) and per-axis corners (lo, hi, fraction, inside)."""
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    mn = rn < N
    lo0, hi0, f0, in0 = _dense_axis(x_ptr, rn, mn, 0, DIM, S0)
    lo1, hi1, f1, in1 = _dense_axis(x_ptr, rn, mn, 1, DIM, S1)
    lo2, hi2, f2, in2 = _dense_axis(x_ptr, rn, mn, 2, DIM, S2)
    return rn, mn, lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2


@triton.jit
def _dense_fwd_kernel(x_ptr, g_ptr, out_ptr, N, F, S0, S1, S2, st0, st1, st2, stf,
                      DIM: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr):
    rn, mn, lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2 = _dense_setup(x_ptr, N, S0, S1, S2, DIM, BN)
    for fb in range(0, F, BF):
        rf = fb + tl.arange(0, BF)
        m2 = mn[:, None] & (rf < F)[None, :]
        acc = tl.zeros((BN, BF), dtype=out_ptr.dtype.element_ty)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            off = i0 * st0 + i1 * st1 + i2 * st2
            v = tl.load(g_ptr + off[:, None] + rf[None, :] * stf, mask=m2, other=0.0)
            acc += w[:, None] * v
        tl.store(out_ptr + rn[:, None] * F + rf[None, :], acc, mask=m2)


@triton.jit
def _store_dx(dx_ptr, rn, mn, DIM: tl.constexpr, gx0, gx1, gx2, in0, in1, in2, S0, S1, S2):
    """dx of grid_sample(align_corners=True, border): the sums per axis times (S - 1) / 2, 0 on the border."""
    tl.store(dx_ptr + rn * DIM, tl.where(in0, gx0 * (0.5 * (S0 - 1)), 0.0), mask=mn)
    if DIM > 1:
        tl.store(dx_ptr + rn * DIM + 1, tl.where(in1, gx1 * (0.5 * (S1 - 1)), 0.0), mask=mn)
    if DIM > 2:
        tl.store(dx_ptr + rn * DIM + 2, tl.where(in2, gx2 * (0.5 * (S2 - 1)), 0.0), mask=mn)


@triton.jit
def _dense_bwd_kernel(x_ptr, g_ptr, go_ptr, dg_ptr, dx_ptr, N, F, S0, S1, S2, st0, st1, st2, stf,
                      NEED_G: tl.constexpr, NEED_X: tl.constexpr, DIM: tl.constexpr,
                      BN: tl.constexpr, BF: tl.constexpr):
    rn, mn, lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2 = _dense_setup(x_ptr, N, S0, S1, S2, DIM, BN)
    gx0 = tl.zeros((BN,), dtype=f0.dtype)
    gx1 = tl.zeros((BN,), dtype=f0.dtype)
    gx2 = tl.zeros((BN,), dtype=f0.dtype)
    for fb in range(0, F, BF):
        rf = fb + tl.arange(0, BF)
        m2 = mn[:, None] & (rf < F)[None, :]
        go = tl.load(go_ptr + rn[:, None] * F + rf[None, :], mask=m2, other=0.0)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            off = (i0 * st0 + i1 * st1 + i2 * st2)[:, None] + rf[None, :] * stf
            if NEED_G:
                tl.atomic_add(dg_ptr + off, w[:, None] * go, mask=m2, sem="relaxed")
            if NEED_X:
                s = tl.sum(go * tl.load(g_ptr + off, mask=m2, other=0.0), axis=1)
                gx0 += s * dw0
                gx1 += s * dw1
                gx2 += s * dw2
    if NEED_X:
        _store_dx(dx_ptr, rn, mn, DIM, gx0, gx1, gx2, in0, in1, in2, S0, S1, S2)


@triton.jit
def _dense_bwd_point_kernel(x_ptr, g_ptr, go_ptr, dg_ptr, dx_ptr, N, F, S0, S1, S2, st0, st1, st2, stf,
                            NEED_G: tl.constexpr, NEED_X: tl.constexpr, DIM: tl.constexpr, BN: tl.constexpr):
    """``_dense_bwd_kernel`` with one point per lane and a loop over features (grid_sample's structure): no
    [points, features] tiles, so no layout conversions through shared memory and no barriers around the
    atomics (the tile kernel's sm_90 SASS has four per feature chunk), and the x-grad sums stay in the
    lane. Lanes past N add 0 to a valid cell: unmasked atomics, no branch around each."""
    rn, mn, lo0, hi0, f0, in0, lo1, hi1, f1, in1, lo2, hi2, f2, in2 = _dense_setup(x_ptr, N, S0, S1, S2, DIM, BN)
    gx0 = tl.zeros((BN,), dtype=f0.dtype)
    gx1 = tl.zeros((BN,), dtype=f0.dtype)
    gx2 = tl.zeros((BN,), dtype=f0.dtype)
    for f in range(0, F):
        go = tl.load(go_ptr + rn * F + f, mask=mn, other=0.0)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            off = i0 * st0 + i1 * st1 + i2 * st2 + f * stf
            if NEED_G:
                tl.atomic_add(dg_ptr + off, w * go, sem="relaxed")
            if NEED_X:
                s = go * tl.load(g_ptr + off)
                gx0 += s * dw0
                gx1 += s * dw1
                gx2 += s * dw2
    if NEED_X:
        _store_dx(dx_ptr, rn, mn, DIM, gx0, gx1, gx2, in0, in1, in2, S0, S1, S2)


def _dense_geometry(grid: torch.Tensor):
    """Sizes and strides per x-coordinate (x[:,0] runs along the LAST grid axis), padded to 3."""
    dim = grid.dim() - 1
    sizes = [grid.shape[dim - i] for i in range(dim)] + [1] * (3 - dim)
    strides = [grid.stride(dim - i) for i in range(dim)] + [0] * (3 - dim)
    return dim, sizes, strides


def _feature_block(f: int) -> int:
    return min(next_pow2(max(f, 1)), DENSE_BF)


def dense_forward(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    n, f = x.shape[0], grid.shape[0]
    out = torch.empty((n, f), dtype=grid.dtype, device=x.device)
    if n == 0 or f == 0:
        return out
    dim, s, st = _dense_geometry(grid)
    cfg = _dense_launch(forward=True)
    with device_guard(x.device):
        _dense_fwd_kernel[(cdiv(n, cfg["BN"]),)](x, grid, out, n, f, *s, *st, grid.stride(0), DIM=dim,
                                                 BF=_feature_block(f), enable_fp_fusion=True, **cfg)
    return out


DENSE_BN_POINT, DENSE_WARPS_POINT = 128, 4
_dense_backward_choice = Choice()  # backward kernel per (device, d, F, layout, needs)


def dense_backward_tile(x, grid, grad_out, need_x: bool, need_grid: bool):
    return _dense_backward(x, grid, grad_out, need_x, need_grid, point=False)


def dense_backward_point(x, grid, grad_out, need_x: bool, need_grid: bool):
    return _dense_backward(x, grid, grad_out, need_x, need_grid, point=True)


def _dense_backward(x, grid, grad_out, need_x: bool, need_grid: bool, point: bool):
    n, f = x.shape[0], grid.shape[0]
    dgrid = torch.empty_strided(grid.shape, grid.stride(), dtype=grid.dtype, device=grid.device).zero_() \
        if need_grid else None
    dx = torch.zeros_like(x) if need_x else None
    if n == 0 or f == 0:
        return dx, dgrid
    dim, s, st = _dense_geometry(grid)
    args = (x, grid, grad_out, dgrid if need_grid else grid, dx if need_x else x, n, f, *s, *st, grid.stride(0))
    with device_guard(x.device):
        if point:
            _dense_bwd_point_kernel[(cdiv(n, DENSE_BN_POINT),)](
                *args, NEED_G=need_grid, NEED_X=need_x, DIM=dim, BN=DENSE_BN_POINT, num_warps=DENSE_WARPS_POINT,
                enable_fp_fusion=True)
        else:
            cfg = _dense_launch(need_x=need_x)
            _dense_bwd_kernel[(cdiv(n, cfg["BN"]),)](*args, NEED_G=need_grid, NEED_X=need_x, DIM=dim,
                                                     BF=_feature_block(f), enable_fp_fusion=True, **cfg)
    return dx, dgrid


def dense_backward(x, grid, grad_out, need_x: bool, need_grid: bool):
    """(dx, dgrid). On a GPU with at least 2^14 points, the faster of the tile and the per-point kernel, timed
    on the first such call of each (d, F, layout, needs) (cuda/_choice.py); otherwise the tile kernel."""
    args = (x, grid, grad_out, need_x, need_grid)
    if not (x.is_cuda and x.shape[0] >= MIN_POINTS):
        return dense_backward_tile(*args)
    key = (x.device.index, x.shape[1], grid.shape[0], tuple(grid.stride()), need_x, need_grid)
    return _dense_backward_choice.call(key, {"tile": dense_backward_tile, "point": dense_backward_point}, *args,
                                       device=x.device)


# --------------------------------------------------------------------------- hash grid (instant-ngp)


@triton.jit
def _hash_axis(u, i: tl.constexpr, DIM: tl.constexpr, res):
    """Lower corner, upper corner and fraction of one axis of one level (see hash_grid_ref)."""
    if i < DIM:
        pos = u * (res - 1)
        lo_f = tl.minimum(tl.floor(pos), tl.maximum(res - 2, 0))
        frac = pos - lo_f
        lo = lo_f.to(tl.int32)
        hi = tl.minimum(lo + 1, res - 1)
    else:
        frac = tl.zeros(u.shape, dtype=u.dtype)
        lo = tl.zeros(u.shape, dtype=tl.int32)
        hi = lo
    return lo, hi, frac


@triton.jit
def _hash_index(i0, i1, i2, res, T, hashed, POW2: tl.constexpr):
    """Row of the level's table: dense when res^d fits (``hashed`` == 0), else the spatial hash."""
    dense = i0 + (i1 + i2 * res) * res
    if POW2:  # int64 product mod 2^k == uint32 wrap-around product mod 2^k
        h = i0.to(tl.uint32) ^ (i1.to(tl.uint32) * 2654435761) ^ (i2.to(tl.uint32) * 805459861)
        h = (h & (T - 1)).to(tl.int64)
    else:
        h = i0.to(tl.int64) ^ (i1.to(tl.int64) * 2654435761) ^ (i2.to(tl.int64) * 805459861)
        h = h % T
    return tl.where(hashed != 0, h, dense.to(tl.int64))


@triton.jit
def _hash_u(x_ptr, rn, mn, i: tl.constexpr, DIM: tl.constexpr):
    """u = clamp((x+1)/2, 0, 1) and whether the clamp passes the gradient (torch: min <= x <= max)."""
    if i < DIM:
        raw = (tl.load(x_ptr + rn * DIM + i, mask=mn, other=0.0) + 1.0) * 0.5
        passes = (raw >= 0.0) & (raw <= 1.0)
        u = tl.minimum(tl.maximum(raw, 0.0), 1.0)
        u = tl.where(u == u, u, 0.0)  # NaN -> 0 keeps the gathers in bounds
    else:
        u = tl.zeros(rn.shape, dtype=x_ptr.dtype.element_ty)
        passes = u == 0.0
    return u, passes


@triton.jit
def _hash_fwd_kernel(x_ptr, t_ptr, res_ptr, hashed_ptr, out_ptr, N, L, T, F,
                     DIM: tl.constexpr, POW2: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    mn = rn < N
    rf = tl.arange(0, BF)
    m2 = mn[:, None] & (rf < F)[None, :]
    u0, p0 = _hash_u(x_ptr, rn, mn, 0, DIM)  # (Triton: no reused '_' names, loops carry them)
    u1, p1 = _hash_u(x_ptr, rn, mn, 1, DIM)
    u2, p2 = _hash_u(x_ptr, rn, mn, 2, DIM)
    base = tl.zeros((BN,), dtype=tl.int64)  # first row of the level in the flat [L*T, F] table
    for lvl in range(L):
        res = tl.load(res_ptr + lvl)
        hashed = tl.load(hashed_ptr + lvl)
        lo0, hi0, f0 = _hash_axis(u0, 0, DIM, res)
        lo1, hi1, f1 = _hash_axis(u1, 1, DIM, res)
        lo2, hi2, f2 = _hash_axis(u2, 2, DIM, res)
        acc = tl.zeros((BN, BF), dtype=out_ptr.dtype.element_ty)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            row = base + _hash_index(i0, i1, i2, res, T, hashed, POW2)
            acc += w[:, None] * tl.load(t_ptr + row[:, None] * F + rf[None, :], mask=m2, other=0.0)
        tl.store(out_ptr + rn[:, None] * (L * F) + lvl * F + rf[None, :], acc, mask=m2)
        base += T


@triton.jit
def _segment_sum(fa, va, fb, vb):
    """Combine of a segmented inclusive scan: f marks a segment's first element."""
    return fa | fb, tl.where(fb != 0, vb, va + vb)


@triton.jit
def _add_runs(ptr, row, v, m2, mn, BN: tl.constexpr):
    """Add v [BN, BF] at ``ptr`` [BN, BF] (the addresses of table rows ``row`` [BN]): one atomic add per run of
    equal consecutive rows, carrying the run's sum, instead of one per point."""
    lane = tl.arange(0, BN)
    key = tl.where(mn, row, -1)  # points past N: a run of their own, added nowhere (m2)
    start = (key != tl.gather(key, tl.maximum(lane - 1, 0), 0)) | (lane == 0)
    end = (key != tl.gather(key, tl.minimum(lane + 1, BN - 1), 0)) | (lane == BN - 1)
    _, total = tl.associative_scan((tl.broadcast_to(start.to(tl.int32)[:, None], v.shape), v), 0, _segment_sum)
    tl.atomic_add(ptr, total, mask=m2 & end[:, None], sem="relaxed")


@triton.jit
def _hash_bwd_kernel(x_ptr, t_ptr, res_ptr, hashed_ptr, go_ptr, dt_ptr, dx_ptr, N, L, T, F,
                     NEED_T: tl.constexpr, NEED_X: tl.constexpr, DIM: tl.constexpr, POW2: tl.constexpr,
                     BN: tl.constexpr, BF: tl.constexpr, MERGE: tl.constexpr):
    rn = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    mn = rn < N
    rf = tl.arange(0, BF)
    m2 = mn[:, None] & (rf < F)[None, :]
    u0, p0 = _hash_u(x_ptr, rn, mn, 0, DIM)
    u1, p1 = _hash_u(x_ptr, rn, mn, 1, DIM)
    u2, p2 = _hash_u(x_ptr, rn, mn, 2, DIM)
    gx0 = tl.zeros((BN,), dtype=u0.dtype)
    gx1 = tl.zeros((BN,), dtype=u0.dtype)
    gx2 = tl.zeros((BN,), dtype=u0.dtype)
    base = tl.zeros((BN,), dtype=tl.int64)  # first row of the level in the flat [L*T, F] table
    for lvl in range(L):
        res = tl.load(res_ptr + lvl)
        hashed = tl.load(hashed_ptr + lvl)
        lo0, hi0, f0 = _hash_axis(u0, 0, DIM, res)
        lo1, hi1, f1 = _hash_axis(u1, 1, DIM, res)
        lo2, hi2, f2 = _hash_axis(u2, 2, DIM, res)
        go = tl.load(go_ptr + rn[:, None] * (L * F) + lvl * F + rf[None, :], mask=m2, other=0.0)
        l0 = tl.zeros((BN,), dtype=u0.dtype)
        l1 = tl.zeros((BN,), dtype=u0.dtype)
        l2 = tl.zeros((BN,), dtype=u0.dtype)
        for c in tl.static_range(2**DIM):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            row = base + _hash_index(i0, i1, i2, res, T, hashed, POW2)
            ptr = row[:, None] * F + rf[None, :]
            if NEED_T:
                if MERGE:
                    if hashed == 0:  # a dense level: coarse, where consecutive points share corners
                        _add_runs(dt_ptr + ptr, row, w[:, None] * go, m2, mn, BN)
                    else:
                        tl.atomic_add(dt_ptr + ptr, w[:, None] * go, mask=m2, sem="relaxed")
                else:
                    tl.atomic_add(dt_ptr + ptr, w[:, None] * go, mask=m2, sem="relaxed")
            if NEED_X:
                s = tl.sum(go * tl.load(t_ptr + ptr, mask=m2, other=0.0), axis=1)
                l0 += s * dw0
                l1 += s * dw1
                l2 += s * dw2
        scale = (res - 1).to(u0.dtype)  # d pos / d u
        gx0 += l0 * scale
        gx1 += l1 * scale
        gx2 += l2 * scale
        base += T
    if NEED_X:
        tl.store(dx_ptr + rn * DIM, tl.where(p0, 0.5 * gx0, 0.0), mask=mn)
        if DIM > 1:
            tl.store(dx_ptr + rn * DIM + 1, tl.where(p1, 0.5 * gx1, 0.0), mask=mn)
        if DIM > 2:
            tl.store(dx_ptr + rn * DIM + 2, tl.where(p2, 0.5 * gx2, 0.0), mask=mn)


def hash_levels(resolutions, dim: int, table_size: int, device):
    """Per-level int32 resolutions and 'hashed' flags (res^d > T), as hash_index_ref decides (device constants)."""
    res = tuple(int(r) for r in resolutions)
    flags = tuple(int(r**dim > table_size) for r in res)
    return device_constant(res, torch.int32, device), device_constant(flags, torch.int32, device)


def _hash_launch_args(table):
    levels, tsize, f = table.shape
    return levels, tsize, f, (tsize & (tsize - 1)) == 0, next_pow2(max(f, 1))


def hash_forward(x, table, res_t, hashed_t):
    n, dim = x.shape
    levels, tsize, f, pow2, bf = _hash_launch_args(table)
    out = torch.empty((n, levels * f), dtype=table.dtype, device=x.device)
    if n == 0 or out.shape[1] == 0:
        return out
    bn = _hash_bn(bf)
    with device_guard(x.device):
        _hash_fwd_kernel[(cdiv(n, bn),)](x, table, res_t, hashed_t, out, n, levels, tsize, f,
                                         DIM=dim, POW2=pow2, BN=bn, BF=bf, num_warps=4, enable_fp_fusion=True)
    return out


# False: every point adds its corners' gradients to the table atomically. True: on the dense (coarse) levels,
# consecutive points that share a corner (the samples of one ray, in a training batch) add it once, their sum
# (a segmented scan per corner first). Off until a GPU times it: kernels_bench's hash rows run both.
MERGE_RUNS = False


def hash_backward(x, table, res_t, hashed_t, grad_out, need_x: bool, need_table: bool):
    n, dim = x.shape
    levels, tsize, f, pow2, bf = _hash_launch_args(table)
    dtable = torch.zeros_like(table) if need_table else None
    dx = torch.zeros_like(x) if need_x else None
    if n == 0 or levels * f == 0:
        return dx, dtable
    bn = _hash_bn(bf, need_x)
    with device_guard(x.device):
        _hash_bwd_kernel[(cdiv(n, bn),)](
            x, table, res_t, hashed_t, grad_out, dtable if need_table else table, dx if need_x else x,
            n, levels, tsize, f, NEED_T=need_table, NEED_X=need_x, DIM=dim, POW2=pow2, BN=bn, BF=bf,
            MERGE=bool(MERGE_RUNS), num_warps=4, enable_fp_fusion=True)
    return dx, dtable
