"""Triton kernel of ``traverse_occupancy`` (imported lazily; importing this imports triton).

One program per ray marches its steps BS at a time (a while loop that stops at t_max or at
max_samples_per_ray) and tests each interval's midpoint against the aabb and the occupancy grid.
The kernel runs twice with identical arithmetic (``write`` is a runtime flag, not a constexpr, so
both passes share one compiled binary): pass 1 counts the kept intervals per ray, torch turns the
counts into offsets, pass 2 writes them. Writes are also capped at each ray's count, so no pass
can write outside its slice. ``_next_kernel`` resumes a ray at a step index and stops after K kept
intervals, written to the ray's row of a fixed [R, K] layout (one pass, no sync). FP contraction
is disabled and cells are found with the box's reciprocal extent (a product: Triton's fp32 x / y is
div.full.f32 on CUDA, within 2 ulp, not IEEE), so the arithmetic is torch's separately rounded
elementwise ops (the reference), op for op.
"""

import torch
import triton
import triton.language as tl

from ._dispatch import device_guard

BS = 64


@triton.jit
def _axis_cell(o_ptr, d_ptr, box_ptr, ray, mid, i: tl.constexpr, G):
    """Midpoint coordinate along axis i: (inside the tolerant aabb, clamped cell index)."""
    return _cell(tl.load(o_ptr + ray * 3 + i) + tl.load(d_ptr + ray * 3 + i) * mid, i, box_ptr, G)


@triton.jit
def _cell(x, i: tl.constexpr, box_ptr, G):
    """(inside the tolerant aabb, clamped cell index) of coordinate x along axis i; box as ``traverse``."""
    lo = tl.load(box_ptr + i)
    inv_extent = tl.load(box_ptr + 3 + i)
    inside = (x >= tl.load(box_ptr + 6 + i)) & (x <= tl.load(box_ptr + 9 + i))
    cell = tl.floor((x - lo) * inv_extent * G)  # a product: Triton's x / y compiles to div.full.f32 (not IEEE)
    cell = tl.minimum(tl.maximum(cell, 0.0), G - 1)
    return inside, cell.to(tl.int32)


@triton.jit
def _ray(tmin_ptr, tmax_ptr, jit_ptr, step_ptr, ray, HAS_JITTER: tl.constexpr):
    """(t_min, t_max, step, jitter) of one ray (jitter 0 without a jitter buffer)."""
    tmin = tl.load(tmin_ptr + ray)
    if HAS_JITTER:
        jit = tl.load(jit_ptr + ray).to(tmin.dtype)
    else:
        jit = 0.0
    return tmin, tl.load(tmax_ptr + ray), tl.load(step_ptr), jit


@triton.jit
def _block(o_ptr, d_ptr, box_ptr, bin_ptr, ray, k, tmin, tmax, jit, step, M, G0, G1, G2):
    """Intervals of steps k [BS] (t_starts, t_ends) and which are kept: k < M, t_k < t_max, midpoint in
    the aabb and in an occupied cell."""
    ts = tmin + (k.to(tmin.dtype) + jit) * step
    te = tl.minimum(ts + step, tmax)
    mid = 0.5 * (ts + te)
    in0, c0 = _axis_cell(o_ptr, d_ptr, box_ptr, ray, mid, 0, G0)
    in1, c1 = _axis_cell(o_ptr, d_ptr, box_ptr, ray, mid, 1, G1)
    in2, c2 = _axis_cell(o_ptr, d_ptr, box_ptr, ray, mid, 2, G2)
    cand = (k < M) & (ts < tmax) & in0 & in1 & in2
    occ = tl.load(bin_ptr + (c0 * G1 + c1) * G2 + c2, mask=cand, other=0)
    return ts, te, cand & (occ != 0)


@triton.jit
def _traverse_kernel(o_ptr, d_ptr, tmin_ptr, tmax_ptr, jit_ptr, bin_ptr, box_ptr, step_ptr, count_ptr, offs_ptr,
                     ts_ptr, te_ptr, ri_ptr, M, G0, G1, G2, write,
                     HAS_JITTER: tl.constexpr, BS: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64)
    tmin, tmax, step, jit = _ray(tmin_ptr, tmax_ptr, jit_ptr, step_ptr, ray, HAS_JITTER)
    # pass 1 gets zero-filled count/offset buffers; pass 2 never writes past pass 1's count
    limit = tl.where(write != 0, tl.load(count_ptr + ray), M)
    base = tl.load(offs_ptr + ray)
    count = tl.sum(tl.zeros((BS,), dtype=tl.int32), axis=0)
    k0 = count
    t_first = tmin + jit * step
    while (k0 < M) & (t_first < tmax) & (count < limit):
        k = k0 + tl.arange(0, BS)
        ts, te, keep = _block(o_ptr, d_ptr, box_ptr, bin_ptr, ray, k, tmin, tmax, jit, step, M, G0, G1, G2)
        if write != 0:
            slot = count + tl.cumsum(keep.to(tl.int32), axis=0) - 1
            ok = keep & (slot < limit)
            tl.store(ts_ptr + base + slot, ts, mask=ok)
            tl.store(te_ptr + base + slot, te, mask=ok)
            tl.store(ri_ptr + base + slot, ray + tl.zeros((BS,), dtype=tl.int64), mask=ok)
        count += tl.sum(keep.to(tl.int32), axis=0)
        k0 += BS
        t_first = tmin + (k0.to(tmin.dtype) + jit) * step
    if write == 0:
        tl.store(count_ptr + ray, count)


def traverse(origins, dirs, t_min, t_max, binary_u8, box, step_t, max_samples, jitter):
    """Returns (t_starts, t_ends, ray_indices); box is [4,3]: lo, 1 / extent, lo - tol, hi + tol."""
    n_rays = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    counts = torch.zeros(n_rays, dtype=torch.int32, device=dev)
    if n_rays == 0 or max_samples == 0:
        empty = torch.zeros(0, dtype=dt, device=dev)
        return empty, empty.clone(), torch.zeros(0, dtype=torch.int64, device=dev)
    g0, g1, g2 = binary_u8.shape
    jit = jitter if jitter is not None else t_min
    offs = torch.zeros(n_rays, dtype=torch.int64, device=dev)
    args = dict(HAS_JITTER=jitter is not None, BS=BS, num_warps=2, enable_fp_fusion=False)
    with device_guard(dev):
        _traverse_kernel[(n_rays,)](origins, dirs, t_min, t_max, jit, binary_u8, box, step_t, counts, offs,
                                    t_min, t_min, offs, max_samples, g0, g1, g2, 0, **args)
        ends = torch.cumsum(counts, 0)
        total = int(ends[-1])  # device sync: the packed size decides the output allocation
        offs = ends - counts
        t_starts = torch.empty(total, dtype=dt, device=dev)
        t_ends = torch.empty(total, dtype=dt, device=dev)
        ray_indices = torch.empty(total, dtype=torch.int64, device=dev)
        if total:
            _traverse_kernel[(n_rays,)](origins, dirs, t_min, t_max, jit, binary_u8, box, step_t, counts, offs,
                                        t_starts, t_ends, ray_indices, max_samples, g0, g1, g2, 1, **args)
    return t_starts, t_ends, ray_indices


@triton.jit
def _next_kernel(o_ptr, d_ptr, tmin_ptr, tmax_ptr, jit_ptr, kstart_ptr, bin_ptr, box_ptr, step_ptr, ts_ptr, te_ptr,
                 count_ptr, knext_ptr, M, K, G0, G1, G2, HAS_JITTER: tl.constexpr, BS: tl.constexpr):
    """One program per ray: from step k_start, the first K kept intervals into row ``ray`` of [R, K]."""
    ray = tl.program_id(0).to(tl.int64)
    tmin, tmax, step, jit = _ray(tmin_ptr, tmax_ptr, jit_ptr, step_ptr, ray, HAS_JITTER)
    k0 = tl.load(kstart_ptr + ray)
    count = tl.sum(tl.zeros((BS,), dtype=tl.int32), axis=0)
    k_next = count + M
    t_first = tmin + (k0.to(tmin.dtype) + jit) * step
    while (k0 < M) & (t_first < tmax) & (count < K):
        k = k0 + tl.arange(0, BS)
        ts, te, keep = _block(o_ptr, d_ptr, box_ptr, bin_ptr, ray, k, tmin, tmax, jit, step, M, G0, G1, G2)
        slot = count + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        ok = keep & (slot < K)
        tl.store(ts_ptr + ray * K + slot, ts, mask=ok)
        tl.store(te_ptr + ray * K + slot, te, mask=ok)
        last = tl.max(tl.where(ok & (slot == K - 1), k + 1, 0), axis=0)
        k_next = tl.where(last > 0, last, k_next)
        count = tl.minimum(count + tl.sum(keep.to(tl.int32), axis=0), K)
        k0 += BS
        t_first = tmin + (k0.to(tmin.dtype) + jit) * step
    tl.store(count_ptr + ray, count)
    tl.store(knext_ptr + ray, k_next)


def traverse_next(origins, dirs, t_min, t_max, binary_u8, box, step_t, max_steps, k_start, n_keep, jitter):
    """Returns (t_starts [R,K], t_ends [R,K], counts [R] int32, k_next [R] int32); box as ``traverse``."""
    n_rays = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    ts = torch.zeros(n_rays, n_keep, dtype=dt, device=dev)
    te = torch.zeros(n_rays, n_keep, dtype=dt, device=dev)
    counts = torch.zeros(n_rays, dtype=torch.int32, device=dev)
    k_next = torch.full((n_rays,), max_steps, dtype=torch.int32, device=dev)
    if n_rays == 0 or n_keep == 0:
        return ts, te, counts, k_next
    g0, g1, g2 = binary_u8.shape
    with device_guard(dev):
        _next_kernel[(n_rays,)](origins, dirs, t_min, t_max, t_min if jitter is None else jitter, k_start, binary_u8,
                                box, step_t, ts, te, counts, k_next, max_steps, n_keep, g0, g1, g2,
                                HAS_JITTER=jitter is not None, BS=BS, num_warps=2, enable_fp_fusion=False)
    return ts, te, counts, k_next
