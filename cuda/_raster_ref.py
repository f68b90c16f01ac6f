"""Pure-torch reference of ``raster_faces``: the K nearest faces at every pixel centre.

It is the CPU path and the oracle of the Triton kernel (``_raster_triton``). It lives beside
``_torch_ref`` rather than inside it to keep that shared file small; the semantics are the same
kind (plain torch, any device, no gradient: the outputs are integer face ids).

Coverage rule (shared with the kernel, so both give the same ids on ties):

- A face is drawn when its three depths are > ``near``, finite, and its screen area is non-zero.
- Edge function of the edge a->b at p: computed with the two endpoints in a canonical order
  (lexicographic on (x, y)) and its sign flipped when that swapped them, so the two faces sharing
  an edge evaluate bit-identical values of opposite sign. Faces are oriented to positive area.
- p is inside when every edge function is > 0, or == 0 on an edge that "owns" its points
  (dy > 0, or dy == 0 and dx < 0 along the oriented edge): a top-left-like rule that gives each
  pixel centre on an edge shared by two faces to exactly one of them (no gaps, no doubles).
- Depth at p: 1 / sum_i(w_i / z_i), w_i = E_i / sum(E) the screen barycentrics.
- Layers are ordered by (depth, face id): the int64 key depth_bits << 32 | face id (positive float32
  bit patterns sort like the floats).

Memory: faces are handled in chunks of at most ``max_candidates`` (face, pixel) pairs, each chunk
merged into the running K-buffer by K rounds of a scatter-min ("peeling"), so memory is bounded by
the chunk plus the [H*W, K] buffer whatever the number of faces.

K = 1 (a z-buffer: the viewer's mesh views) takes a faster path with the same ids: the edge functions'
per-face terms (canonical start point, direction, ownership) are computed once per face rather than
per candidate pixel, depths only for the covered candidates, and each chunk goes into the buffer by
one ``scatter_reduce(amin)`` (no merge).
"""

import torch

INT64_MAX = torch.iinfo(torch.int64).max


def all_last(b: torch.Tensor) -> torch.Tensor:
    """``b.all(-1)`` for a small last dimension, as ANDs of its columns (several times faster on a CPU)."""
    cols = b.unbind(-1)
    out = cols[0]
    for c in cols[1:]:
        out = out & c
    return out


def face_setup(tri: torch.Tensor, near: float):
    """Per face: (x [F,3], y [F,3], z [F,3], area [F], drawn [F] bool), vertices oriented to area > 0."""
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    flip = area < 0
    x, y, z = (torch.stack([a[:, 0], torch.where(flip, a[:, 2], a[:, 1]), torch.where(flip, a[:, 1], a[:, 2])], -1)
               for a in (x, y, z))  # vertices 1 and 2 swapped where the area is negative
    drawn = all_last(z > near) & all_last(torch.isfinite(tri).reshape(-1, 9)) & (area != 0) & torch.isfinite(area)
    return x, y, z, area.abs(), drawn


def edge_values(x, y, px, py):
    """[N,3] edge functions of oriented faces x/y [N,3] at points px/py [N]; E_i is the edge opposite vertex i.

    Returns (E [N,3], owns [N,3] bool) with the canonical-order arithmetic of the module doc.
    """
    es, owns = [], []
    for i in range(3):
        ax, ay, bx, by = x[:, (i + 1) % 3], y[:, (i + 1) % 3], x[:, (i + 2) % 3], y[:, (i + 2) % 3]
        swap = (ax > bx) | ((ax == bx) & (ay > by))
        cx, cy = torch.where(swap, bx, ax), torch.where(swap, by, ay)
        dx, dy = torch.where(swap, ax, bx), torch.where(swap, ay, by)
        e = (dx - cx) * (py - cy) - (dy - cy) * (px - cx)
        es.append(torch.where(swap, -e, e))
        ex, ey = bx - ax, by - ay
        owns.append((ey > 0) | ((ey == 0) & (ex < 0)))
    return torch.stack(es, -1), torch.stack(owns, -1)


def inside_depth(x, y, z, px, py):
    """(inside [N] bool, depth [N]) of pixel points px/py [N] against oriented faces x/y/z [N,3]."""
    e, owns = edge_values(x, y, px, py)
    inside = all_last((e > 0) | ((e == 0) & owns))
    w = e / e.sum(-1, keepdim=True)
    depth = 1.0 / (w / z).sum(-1)
    return inside, depth


def _min3(a):  # a.amin(-1) of [N,3], faster on a CPU
    return torch.minimum(torch.minimum(a[:, 0], a[:, 1]), a[:, 2])


def _max3(a):
    return torch.maximum(torch.maximum(a[:, 0], a[:, 1]), a[:, 2])


def face_boxes(x, y, width: int, height: int):
    """Per face (screen x/y [N,3]): first pixel column and row whose centre the bounding box covers,
    and the box's width and height in pixels (0 when it covers none)."""
    x0 = torch.ceil(_min3(x) - 0.5).clamp(min=0).long()
    x1 = torch.floor(_max3(x) - 0.5).clamp(max=width - 1).long()
    y0 = torch.ceil(_min3(y) - 0.5).clamp(min=0).long()
    y1 = torch.floor(_max3(y) - 0.5).clamp(max=height - 1).long()
    return x0, y0, (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)


def merge_topk(buf: torch.Tensor, pix: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The K smallest keys per pixel of ``buf`` [P,K] (INT64_MAX = empty) and the pairs (pix, key), sorted."""
    p, k = buf.shape
    old = buf < INT64_MAX
    allpix = torch.cat([torch.arange(p, device=buf.device).repeat_interleave(k)[old.reshape(-1)], pix])
    allkey = torch.cat([buf[old], key])
    out = torch.full_like(buf, INT64_MAX)
    for j in range(k):
        if allkey.numel() == 0:
            break
        best = torch.full((p,), INT64_MAX, dtype=torch.int64, device=buf.device)
        best.scatter_reduce_(0, allpix, allkey, reduce="amin")
        out[:, j] = best
        # keys are unique (face id in the low bits): drop the one just taken
        rest = (allkey != best.index_select(0, allpix)).nonzero().squeeze(-1)
        allpix, allkey = allpix.index_select(0, rest), allkey.index_select(0, rest)
    return out


def box_chunks(bw: torch.Tensor, bh: torch.Tensor, max_candidates: int):
    """Slices of consecutive faces whose boxes hold at most ``max_candidates`` pixels together
    (a single larger face is a chunk of its own)."""
    ends = torch.cumsum(bw * bh, 0)
    start = 0
    while start < len(ends):
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, base + max_candidates, right=True)))
        yield slice(start, stop)
        start = stop


def _candidates(ids, x, y, z, x0, y0, bw, bh, width: int):
    """(pixel index, key) of the pixel centres covered by faces ``ids`` (one chunk)."""
    # index_select, and one nonzero for the final mask: on a CPU both cost a fraction of advanced
    # indexing, which redoes the nonzero of a boolean mask at every use
    n = bw * bh
    local = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), n)
    k = torch.arange(local.numel(), device=ids.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    w = bw.index_select(0, local)
    px = x0.index_select(0, local) + k % w
    py = y0.index_select(0, local) + k // w
    x, y, z = (a.index_select(0, local) for a in (x, y, z))
    inside, depth = inside_depth(x, y, z, px.to(x.dtype) + 0.5, py.to(x.dtype) + 0.5)
    ok = (inside & (depth > 0)).nonzero().squeeze(-1)
    bits = depth.index_select(0, ok).float().view(torch.int32).long()
    key = (bits << 32) | ids.index_select(0, local.index_select(0, ok))
    return (py * width + px).index_select(0, ok), key


@torch.no_grad()
def raster_faces_ref(tri: torch.Tensor, width: int, height: int, k: int, near: float = 1e-4,
                     max_candidates: int = 1 << 21) -> torch.Tensor:
    """Face ids [H*W, K] int64 (-1 empty) of the K nearest faces per pixel centre (see the module doc).

    tri: [F,3,3] per face and vertex (pixel x, pixel y (down), camera depth z > 0).
    """
    x0, y0, bw, bh = face_boxes(tri[..., 0], tri[..., 1], width, height)  # nan boxes: empty
    ids = (bw * bh > 0).nonzero().squeeze(-1)  # faces whose box holds a pixel centre (cheap test first)
    x, y, z, _, drawn = face_setup(tri.index_select(0, ids), near)
    on = drawn.nonzero().squeeze(-1)
    ids, x, y, z = (a.index_select(0, on) for a in (ids, x, y, z))
    x0, y0, bw, bh = (a.index_select(0, ids) for a in (x0, y0, bw, bh))
    if k == 1:
        return _zbuffer(ids, x, y, z, x0, y0, bw, bh, width, height, max_candidates)
    buf = torch.full((height * width, k), INT64_MAX, dtype=torch.int64, device=tri.device)
    for sl in box_chunks(bw, bh, max_candidates):
        pix, key = _candidates(ids[sl], x[sl], y[sl], z[sl], x0[sl], y0[sl], bw[sl], bh[sl], width)
        buf = merge_topk(buf, pix, key)
    return torch.where(buf < INT64_MAX, buf & 0xFFFFFFFF, torch.full_like(buf, -1))


def _edge_terms(x, y):
    """Per face (oriented x/y [F,3]) and edge i (opposite vertex i), the terms of ``edge_values`` that do not
    depend on the pixel: (cx, cy, ex, ey, owns), each [F,3]. (cx, cy) is the edge's start in the canonical
    order; ex, ey = b - a along the oriented edge. Then E_i(p) = ex * (py - cy) - ey * (px - cx) is
    ``edge_values``' value bit for bit: where the canonical order swapped the endpoints, it computes
    (a - b) * (py - cy) - ... and negates the result, and negating one factor of each product negates the
    difference exactly (round to nearest is symmetric), up to the sign of a zero, which no comparison or sum
    here can tell. (cx = min(ax, bx) likewise: the canonical start has the smaller x, or the same x.)"""
    a, b = torch.tensor([1, 2, 0], device=x.device), torch.tensor([2, 0, 1], device=x.device)
    ax, ay, bx, by = x.index_select(1, a), y.index_select(1, a), x.index_select(1, b), y.index_select(1, b)
    swap = (ax > bx) | ((ax == bx) & (ay > by))
    ex, ey = bx - ax, by - ay
    owns = (ey > 0) | ((ey == 0) & (ex < 0))
    return torch.minimum(ax, bx), torch.where(swap, by, ay), ex, ey, owns


def _zbuffer(ids, x, y, z, x0, y0, bw, bh, width: int, height: int, max_candidates: int) -> torch.Tensor:
    """``raster_faces_ref`` for K = 1 (faces already set up and culled): [H*W, 1] ids, the same as the K-buffer's
    first layer: the same edge values (``_edge_terms``), coverage rule, depths and keys, one scatter-min per
    chunk."""
    terms = _edge_terms(x, y)
    zbuf = torch.full((height * width,), INT64_MAX, dtype=torch.int64, device=ids.device)
    for sl in box_chunks(bw, bh, max_candidates):
        n = bw[sl] * bh[sl]
        local = torch.repeat_interleave(torch.arange(n.numel(), device=ids.device), n)
        k = torch.arange(local.numel(), device=ids.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        w = bw[sl].index_select(0, local)
        px = x0[sl].index_select(0, local) + k % w
        py = y0[sl].index_select(0, local) + k // w
        cx, cy, ex, ey, own = (t[sl].index_select(0, local) for t in terms)  # [N,3] each
        e = ex * ((py.to(cx.dtype) + 0.5)[:, None] - cy) - ey * ((px.to(cx.dtype) + 0.5)[:, None] - cx)
        hit = all_last((e > 0) | ((e == 0) & own)).nonzero().squeeze(-1)
        e, face = e.index_select(0, hit), local.index_select(0, hit)
        wts = e / e.sum(-1, keepdim=True)
        depth = 1.0 / (wts / z[sl].index_select(0, face)).sum(-1)
        front = (depth > 0).nonzero().squeeze(-1)
        bits = depth.index_select(0, front).float().view(torch.int32).long()
        key = (bits << 32) | ids[sl].index_select(0, face.index_select(0, front))
        pix = (py * width + px).index_select(0, hit.index_select(0, front))
        zbuf.scatter_reduce_(0, pix, key, reduce="amin")
    # the face id in the low 32 bits; empty pixels (INT64_MAX: low bits all ones) wrap to -1 (in-place integer
    # arithmetic: several times faster than a torch.where over the image on a CPU)
    return zbuf.bitwise_and_(0xFFFFFFFF).add_(1).bitwise_and_(0xFFFFFFFF).sub_(1)[:, None]
