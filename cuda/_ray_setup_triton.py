"""Triton kernel of ``ray_setup`` (imported lazily; importing this imports triton).

One lane per ray, float32 (float64 rays take the reference). FP contraction is off and divisions are
``div_rn`` (Triton's x / y is not IEEE on CUDA), and min / max propagate NaN as torch's do, so t_min and
t_max are the reference's to the bit: they place every marching interval. The SH bases are the
reference's products in its order (written tensor first: a constexpr times a tensor is not a tensor in
the interpreter; the products are the same, IEEE products commute).
"""

import triton
import triton.language as tl

from ._dispatch import cdiv, device_guard
from ._torch_ref import SH_C0, SH_C1, SH_C2, SH_C3

BLOCK = 256
NAN = tl.constexpr(tl.PropagateNan.ALL)
INF = tl.constexpr(float("inf"))
# the SH constants, as constexprs a kernel can read
C0, C1 = tl.constexpr(SH_C0), tl.constexpr(SH_C1)
C20, C21, C22, C23, C24 = (tl.constexpr(c) for c in SH_C2)
C30, C31, C32, C33, C34, C35, C36 = (tl.constexpr(c) for c in SH_C3)


@triton.jit
def _slab(o, d, lo, hi):
    """(entry, exit) of one axis' slab: all t when d = 0 and o is inside it, none when outside."""
    par = d == 0.0
    safe = tl.where(par, 1.0, d)
    t0 = tl.math.div_rn(lo - o, safe)
    t1 = tl.math.div_rn(hi - o, safe)
    inside = (o >= lo) & (o <= hi)
    a = tl.where(par, tl.where(inside, -INF, INF), tl.minimum(t0, t1, propagate_nan=NAN))
    b = tl.where(par, tl.where(inside, INF, -INF), tl.maximum(t0, t1, propagate_nan=NAN))
    return a, b


@triton.jit
def _box(o0, o1, o2, d0, d1, d2, box_ptr):
    """(t_near, t_far, hit) of the box [2,3] at box_ptr (``ray_box_ref``)."""
    a0, b0 = _slab(o0, d0, tl.load(box_ptr), tl.load(box_ptr + 3))
    a1, b1 = _slab(o1, d1, tl.load(box_ptr + 1), tl.load(box_ptr + 4))
    a2, b2 = _slab(o2, d2, tl.load(box_ptr + 2), tl.load(box_ptr + 5))
    t_near = tl.maximum(tl.maximum(tl.maximum(a0, a1, propagate_nan=NAN), a2, propagate_nan=NAN), 0.0,
                        propagate_nan=NAN)
    t_far = tl.minimum(tl.minimum(b0, b1, propagate_nan=NAN), b2, propagate_nan=NAN)
    hit = t_far > t_near
    return tl.where(hit, t_near, 0.0), tl.where(hit, t_far, 0.0), hit


@triton.jit
def _store_sh(sh_ptr, ray, m, x, y, z, DEGREE: tl.constexpr):
    """The (DEGREE + 1)^2 SH bases of directions (x, y, z) as rows of sh_ptr, in the reference's products."""
    B: tl.constexpr = (DEGREE + 1) * (DEGREE + 1)
    row = sh_ptr + ray * B
    tl.store(row, tl.full(x.shape, C0, x.dtype), mask=m)
    if DEGREE >= 1:
        tl.store(row + 1, y * -C1, mask=m)
        tl.store(row + 2, z * C1, mask=m)
        tl.store(row + 3, x * -C1, mask=m)
    if DEGREE >= 2:
        xx = x * x
        yy = y * y
        zz = z * z
        tl.store(row + 4, x * C20 * y, mask=m)
        tl.store(row + 5, y * C21 * z, mask=m)
        tl.store(row + 6, (2.0 * zz - xx - yy) * C22, mask=m)
        tl.store(row + 7, x * C23 * z, mask=m)
        tl.store(row + 8, (xx - yy) * C24, mask=m)
        if DEGREE >= 3:
            tl.store(row + 9, y * C30 * (3.0 * xx - yy), mask=m)
            tl.store(row + 10, x * C31 * y * z, mask=m)
            tl.store(row + 11, y * C32 * (4.0 * zz - xx - yy), mask=m)
            tl.store(row + 12, z * C33 * (2.0 * zz - 3.0 * xx - 3.0 * yy), mask=m)
            tl.store(row + 13, x * C34 * (4.0 * zz - xx - yy), mask=m)
            tl.store(row + 14, z * C35 * (xx - yy), mask=m)
            tl.store(row + 15, x * C36 * (xx - 3.0 * yy), mask=m)


@triton.jit(do_not_specialize=["R"])  # R changes with every frame size: one compile
def _ray_setup_kernel(o_ptr, d_ptr, box_ptr, aabb_ptr, near, far, tmin_ptr, tmax_ptr, sh_ptr, R,
                      DEGREE: tl.constexpr, BLOCK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = ray < R
    o0 = tl.load(o_ptr + ray * 3, mask=m, other=0.0)
    o1 = tl.load(o_ptr + ray * 3 + 1, mask=m, other=0.0)
    o2 = tl.load(o_ptr + ray * 3 + 2, mask=m, other=0.0)
    x = tl.load(d_ptr + ray * 3, mask=m, other=0.0)
    y = tl.load(d_ptr + ray * 3 + 1, mask=m, other=0.0)
    z = tl.load(d_ptr + ray * 3 + 2, mask=m, other=0.0)
    t0, t1, hit = _box(o0, o1, o2, x, y, z, box_ptr)
    lo = tl.maximum(t0, near, propagate_nan=NAN)  # near, far: float32 arguments, rounded as torch rounds them
    hi = tl.where(hit, tl.minimum(t1, far, propagate_nan=NAN), lo)
    t_near, t_far, hit = _box(o0, o1, o2, x, y, z, aabb_ptr)
    t_min = tl.maximum(t_near, lo, propagate_nan=NAN)
    t_max = tl.minimum(t_far, hi, propagate_nan=NAN)
    tl.store(tmin_ptr + ray, t_min, mask=m)
    tl.store(tmax_ptr + ray, tl.where(hit & (t_max > t_min), t_max, t_min), mask=m)
    if DEGREE >= 0:
        _store_sh(sh_ptr, ray, m, x, y, z, DEGREE)


@triton.jit(do_not_specialize=["R"])
def _sh_kernel(d_ptr, sh_ptr, R, DEGREE: tl.constexpr, BLOCK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = ray < R
    x = tl.load(d_ptr + ray * 3, mask=m, other=0.0)
    y = tl.load(d_ptr + ray * 3 + 1, mask=m, other=0.0)
    z = tl.load(d_ptr + ray * 3 + 2, mask=m, other=0.0)
    _store_sh(sh_ptr, ray, m, x, y, z, DEGREE)


@triton.jit(do_not_specialize=["S"])  # S changes with every call
def _positions_kernel(o_ptr, d_ptr, ri_ptr, ts_ptr, te_ptr, x_ptr, S, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < S
    r = tl.load(ri_ptr + i, mask=m, other=0)
    mid = (tl.load(ts_ptr + i, mask=m, other=0.0) + tl.load(te_ptr + i, mask=m, other=0.0)) * 0.5
    for c in tl.static_range(3):  # o + d * t_mid, rounded twice as torch rounds it (no contraction)
        o = tl.load(o_ptr + r * 3 + c, mask=m, other=0.0)
        d = tl.load(d_ptr + r * 3 + c, mask=m, other=0.0)
        tl.store(x_ptr + i * 3 + c, o + d * mid, mask=m)


def ray_setup(origins, dirs, box, aabb, near: float, far: float, sh_degree):
    """Launch ``_ray_setup_kernel`` (arguments as ``ray_setup``, contiguous)."""
    n, dev = origins.shape[0], origins.device
    t_min = origins.new_empty(n)
    t_max = origins.new_empty(n)
    sh = None if sh_degree is None else origins.new_empty(n, (sh_degree + 1) ** 2)
    if n:
        with device_guard(dev):
            _ray_setup_kernel[(cdiv(n, BLOCK),)](
                origins, dirs, box, aabb, near, far, t_min, t_max, t_min if sh is None else sh, n,
                DEGREE=-1 if sh_degree is None else sh_degree, BLOCK=BLOCK, enable_fp_fusion=False)
    return t_min, t_max, sh


def sh_bases(dirs, degree: int):
    """Launch ``_sh_kernel``: [N, (degree + 1)^2] SH bases of contiguous float32 dirs [N,3]."""
    n = dirs.shape[0]
    sh = dirs.new_empty(n, (degree + 1) ** 2)
    if n:
        with device_guard(dirs.device):
            _sh_kernel[(cdiv(n, BLOCK),)](dirs, sh, n, DEGREE=degree, BLOCK=BLOCK, enable_fp_fusion=False)
    return sh


def sample_positions(origins, dirs, ray_indices, t_starts, t_ends):
    """Launch ``_positions_kernel``: [S,3] interval midpoints (contiguous float32 inputs)."""
    n = ray_indices.shape[0]
    x = origins.new_empty(n, 3)
    if n:
        with device_guard(origins.device):
            _positions_kernel[(cdiv(n, BLOCK),)](origins, dirs, ray_indices, t_starts, t_ends, x, n,
                                                 BLOCK=BLOCK, enable_fp_fusion=False)
    return x
