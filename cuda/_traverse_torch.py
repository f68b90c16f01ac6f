"""The torch path of ``traverse_occupancy`` (every CPU): the reference's intervals, found in blocks of steps.

The reference (``traverse_occupancy_ref``) tests every step of every ray, [R, max_steps] points, most of them in
empty cells: on a 2-core CPU that was half of a radiance fit's step (lego 200x200). Here a ray's steps are first
taken S at a time. A block whose first point lies in a coarse cell (B x B x B fine cells; B from 4 up, so that a
block holds 6 steps or more) with no occupied cell in it or its 26 neighbours holds no occupied interval: its S
steps span less than one coarse cell along every axis (S is chosen so), so every midpoint of the block lies in
that neighbourhood. Only the remaining blocks are tested step by step, with the reference's arithmetic, so the
kept intervals are the reference's, bit for bit and in the same order (by ray, then step).
"""

import math
import weakref

import torch
import torch.nn.functional as F

from ._torch_ref import _OccupancyTest, traverse_occupancy_ref

COARSE = 4  # fine cells per coarse cell along each axis (doubled up to MAX_COARSE for long steps)
MAX_COARSE = 32
MIN_BLOCK = 6  # fewer steps per block than this at MAX_COARSE: the reference itself
MAX_NEAR = 0.5  # more coarse cells near occupied ones than this: few blocks to skip, the reference itself
MARGIN = 0.99  # a block spans at most this share of a coarse cell (float rounding of the cell indices)
CHUNK = 1 << 21  # points tested at a time (the reference's)

_cache: dict = {}


def coarse_near(binary: torch.Tensor, factor: int = COARSE) -> torch.Tensor:
    """[C0,C1,C2] bool, C = ceil(G / factor): coarse cells with an occupied fine cell in them or in one of their 26
    neighbours. Cached until ``binary`` changes (an in-place write bumps its version)."""
    key = (binary._version, factor)
    hit = _cache.get("near")
    if hit is not None and hit[0]() is binary and hit[1] == key:  # the same tensor (a weak reference), unchanged
        return hit[2]
    pad = [(-g) % factor for g in binary.shape]
    occ = F.pad(binary.float()[None, None], (0, pad[2], 0, pad[1], 0, pad[0]))
    coarse = F.max_pool3d(occ, factor)
    near = F.max_pool3d(coarse, 3, stride=1, padding=1)[0, 0] > 0
    _cache["near"] = (weakref.ref(binary), key, near)
    return near


def skips_empty(binary: torch.Tensor, factor: int = COARSE) -> bool:
    """Whether ``traverse_blocks`` has empty blocks to skip in ``binary`` at coarse ``factor`` (at most MAX_NEAR of
    the coarse cells near an occupied one)."""
    return float(coarse_near(binary, factor).float().mean()) <= MAX_NEAR


def coarse_side(binary: torch.Tensor, aabb: torch.Tensor, dtype, factor: int) -> torch.Tensor:
    """[3] edge lengths of a coarse cell (``factor`` fine cells)."""
    extent = (aabb[1] - aabb[0]).to(dtype)
    return extent * (factor / torch.tensor(binary.shape, device=aabb.device, dtype=dtype))


def plan(dirs: torch.Tensor, binary: torch.Tensor, aabb: torch.Tensor, step: float) -> tuple[int, int]:
    """(coarse factor, steps per block): the smallest factor (COARSE, 2 COARSE, ... up to MAX_COARSE) whose blocks
    hold at least MIN_BLOCK steps that span at most ``MARGIN`` of a coarse cell's shortest edge along every axis
    for every ray; (0, 0) when there is none (or no rays)."""
    reach = float(dirs.abs().amax()) * step if dirs.shape[0] else 0.0  # one step's largest move along an axis
    factor = COARSE
    while factor <= MAX_COARSE and dirs.shape[0]:
        side = float(coarse_side(binary, aabb, dirs.dtype, factor).min())
        s = int(MARGIN * side / reach) if reach > 0 else 2**31 - 1
        if s >= MIN_BLOCK:
            return factor, s
        factor *= 2
    return 0, 0


def traverse_blocks(origins, dirs, t_min, t_max, binary, aabb, step_size: float, max_steps: int, jitter=None):
    """``traverse_occupancy_ref``'s result (same arguments, same tensors), tested a block of steps at a time."""
    step, m = float(step_size), int(max_steps)
    dt, device = origins.dtype, origins.device
    factor, s = plan(dirs, binary, aabb, step)
    if s == 0 or m <= s or not skips_empty(binary, factor):
        return traverse_occupancy_ref(origins, dirs, t_min, t_max, binary, aabb, step, m, jitter)
    near, side = coarse_near(binary, factor), coarse_side(binary, aabb, dt, factor)
    res = torch.tensor(near.shape, device=device)
    strides = torch.tensor([near.shape[1] * near.shape[2], near.shape[2], 1], device=device)
    lo, inv_side = aabb[0].to(dt), 1.0 / side
    occupied = _OccupancyTest(binary, aabb, dt)
    n_blocks = math.ceil(m / s)
    kb = torch.arange(n_blocks, device=device, dtype=dt) * s
    ks = torch.arange(s, device=device)
    chunk = max(1, CHUNK // (n_blocks * s))  # the fine test holds at most CHUNK points
    out_s, out_e, out_i = [], [], []
    with torch.no_grad():
        for r0 in range(0, origins.shape[0], chunk):
            o, d = origins[r0 : r0 + chunk], dirs[r0 : r0 + chunk]
            tmin, tmax = t_min[r0 : r0 + chunk, None], t_max[r0 : r0 + chunk, None]
            j = 0.0 if jitter is None else jitter[r0 : r0 + chunk, None].to(dt)
            t0 = tmin + (kb + j) * step  # [r, blocks]: the first step of each block
            x = o[:, None, :] + d[:, None, :] * t0[..., None]
            cell = ((x - lo) * inv_side).floor_().long()
            cell = torch.minimum(cell.clamp_min_(0), res - 1)
            live = (t0 < tmax) & near.reshape(-1)[(cell * strides).sum(-1)]
            rows, blocks = live.nonzero(as_tuple=True)
            k = blocks[:, None] * s + ks  # [n, s] step indices, as the reference numbers them
            jr = j if jitter is None else j[rows]
            ts = tmin[rows] + (k.to(dt) + jr) * step
            te = torch.minimum(ts + step, tmax[rows])
            keep = (k < m) & (ts < tmax[rows]) & occupied(o[rows], d[rows], 0.5 * (ts + te))
            at, col = keep.nonzero(as_tuple=True)
            out_s.append(ts[at, col])
            out_e.append(te[at, col])
            out_i.append(rows[at] + r0)
    if not out_s:
        empty = origins.new_zeros(0)
        return empty, empty.clone(), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(out_s), torch.cat(out_e), torch.cat(out_i).long()
