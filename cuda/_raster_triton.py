"""Triton kernel of ``raster_faces`` (imported lazily; importing this imports triton).

Binning in torch: each drawn face is listed under every TILE x TILE screen tile its bounding box
touches (a CSR list sorted by tile). The kernel runs one program per tile (TILE*TILE pixels) and
one launch per layer k ("depth peeling"): it loops over the tile's faces and keeps, per pixel, the
smallest (depth, face id) strictly after layer k-1's. The coverage rule and depth are the
reference's (``_raster_ref``: canonical edge order, top-left-like ownership of zero edges), so the
two agree except where float rounding differs (fp contraction is off for that reason).
"""

import torch
import triton
import triton.language as tl

from ._dispatch import device_guard
from ._raster_ref import face_setup

TILE = 16


@triton.jit
def _edge(ax, ay, bx, by, px, py):
    swap = tl.where(ax == bx, ay > by, ax > bx)  # no & on scalars (the interpreter rejects it)
    cx = tl.where(swap, bx, ax)
    cy = tl.where(swap, by, ay)
    dx = tl.where(swap, ax, bx)
    dy = tl.where(swap, ay, by)
    e = (dx - cx) * (py - cy) - (dy - cy) * (px - cx)
    e = tl.where(swap, -e, e)
    ex = bx - ax
    ey = by - ay
    owns = tl.where(ey == 0, ex < 0, ey > 0)
    return e, owns


@triton.jit
def _peel_kernel(x_ptr, y_ptr, z_ptr, fid_ptr, offs_ptr, prev_d_ptr, prev_f_ptr, out_d_ptr, out_f_ptr,
                 W, H, TILES_X, FIRST: tl.constexpr, TILE: tl.constexpr):
    tile = tl.program_id(0)
    tx = tile % TILES_X
    ty = tile // TILES_X
    lane = tl.arange(0, TILE * TILE)
    pxi = tx * TILE + lane % TILE
    pyi = ty * TILE + lane // TILE
    valid = (pxi < W) & (pyi < H)
    pix = pyi * W + pxi
    px = pxi.to(tl.float32) + 0.5
    py = pyi.to(tl.float32) + 0.5
    if FIRST:
        pd = tl.full((TILE * TILE,), -float("inf"), tl.float32)
        pf = tl.full((TILE * TILE,), -1, tl.int64)
    else:
        pd = tl.load(prev_d_ptr + pix, mask=valid, other=float("inf"))
        pf = tl.load(prev_f_ptr + pix, mask=valid, other=-1)
    bd = tl.full((TILE * TILE,), float("inf"), tl.float32)
    bf = tl.full((TILE * TILE,), -1, tl.int64)
    start = tl.load(offs_ptr + tile)
    end = tl.load(offs_ptr + tile + 1)
    for j in range(start, end):
        f = tl.load(fid_ptr + j)
        x0 = tl.load(x_ptr + f * 3)
        x1 = tl.load(x_ptr + f * 3 + 1)
        x2 = tl.load(x_ptr + f * 3 + 2)
        y0 = tl.load(y_ptr + f * 3)
        y1 = tl.load(y_ptr + f * 3 + 1)
        y2 = tl.load(y_ptr + f * 3 + 2)
        z0 = tl.load(z_ptr + f * 3)
        z1 = tl.load(z_ptr + f * 3 + 1)
        z2 = tl.load(z_ptr + f * 3 + 2)
        e0, o0 = _edge(x1, y1, x2, y2, px, py)
        e1, o1 = _edge(x2, y2, x0, y0, px, py)
        e2, o2 = _edge(x0, y0, x1, y1, px, py)
        c0 = tl.where(e0 == 0, o0.to(tl.int32), (e0 > 0).to(tl.int32))
        c1 = tl.where(e1 == 0, o1.to(tl.int32), (e1 > 0).to(tl.int32))
        c2 = tl.where(e2 == 0, o2.to(tl.int32), (e2 > 0).to(tl.int32))
        inside = (c0 + c1 + c2) == 3
        s = e0 + e1 + e2
        d = 1.0 / (e0 / s / z0 + e1 / s / z1 + e2 / s / z2)
        fl = f.to(tl.int64)
        after = (d > pd) | ((d == pd) & (fl > pf))
        better = (d < bd) | ((d == bd) & (fl < bf))
        take = inside & (d > 0) & after & better & valid
        bd = tl.where(take, d, bd)
        bf = tl.where(take, fl, bf)
    tl.store(out_d_ptr + pix, bd, mask=valid)
    tl.store(out_f_ptr + pix, bf, mask=valid)


def _bins(x, y, ids, width: int, height: int):
    """CSR (offsets [T+1], face ids sorted by tile) of the faces' bounding boxes over the tiles."""
    tiles_x, tiles_y = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    tx0 = torch.floor((x.amin(-1) - 0.5) / TILE).clamp(0, tiles_x - 1).long()
    tx1 = torch.floor((x.amax(-1) - 0.5) / TILE).clamp(0, tiles_x - 1).long()
    ty0 = torch.floor((y.amin(-1) - 0.5) / TILE).clamp(0, tiles_y - 1).long()
    ty1 = torch.floor((y.amax(-1) - 0.5) / TILE).clamp(0, tiles_y - 1).long()
    bw, bh = tx1 - tx0 + 1, ty1 - ty0 + 1
    n = bw * bh
    local = torch.repeat_interleave(torch.arange(len(ids), device=x.device), n)
    k = torch.arange(local.numel(), device=x.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    tile = (ty0[local] + k // bw[local]) * tiles_x + tx0[local] + k % bw[local]
    order = torch.argsort(tile, stable=True)
    counts = torch.bincount(tile, minlength=tiles_x * tiles_y)
    offs = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int64, device=x.device)
    offs[1:] = torch.cumsum(counts, 0)
    return offs, local[order].to(torch.int32).contiguous(), tiles_x, tiles_y


def forward(tri: torch.Tensor, width: int, height: int, k: int, near: float) -> torch.Tensor:
    x, y, z, _, drawn = face_setup(tri.float(), near)
    keep = drawn & (x.amax(-1) > 0) & (x.amin(-1) < width) & (y.amax(-1) > 0) & (y.amin(-1) < height)
    ids = keep.nonzero().squeeze(-1)
    x, y, z = x[ids].contiguous(), y[ids].contiguous(), z[ids].contiguous()
    out = torch.full((height * width, k), -1, dtype=torch.int64, device=tri.device)
    if ids.numel() == 0:
        return out
    offs, fids, tiles_x, tiles_y = _bins(x, y, ids, width, height)
    prev_d = torch.empty(height * width, dtype=torch.float32, device=tri.device)
    prev_f = torch.empty(height * width, dtype=torch.int64, device=tri.device)
    with device_guard(tri.device):
        for j in range(k):
            d = torch.empty_like(prev_d)
            f = torch.empty_like(prev_f)
            _peel_kernel[(tiles_x * tiles_y,)](x, y, z, fids, offs, prev_d, prev_f, d, f, width, height, tiles_x,
                                               FIRST=j == 0, TILE=TILE, enable_fp_fusion=True)  # as tested so far
            out[:, j] = torch.where(f >= 0, ids[f.clamp(min=0)], f)
            prev_d, prev_f = d, f
    return out
