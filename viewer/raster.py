"""A small z-buffer triangle rasterizer in plain torch (one fragment per pixel, K = 1).

It returns fragments (face id, perspective-correct barycentrics, camera depth) and knows no
shading, the contract DESIGN.md gives render/'s rasterizer; it lives here until render/ has
one (then the mesh views call that instead).

Method: every face is projected; each face enumerates the pixel centres of its screen
bounding box (packed, faces in chunks of ``max_candidates`` pixels); edge functions keep the
centres inside; the nearest fragment per pixel wins through one ``scatter_reduce(amin)`` on
int64 keys (depth bits << 32 | face id: positive float32 bit patterns sort like the floats).
Faces with a vertex closer than ``near`` are dropped (no clipping): fine for a viewer.
"""

from dataclasses import dataclass

import torch

from fieldfit.cuda._raster_ref import box_chunks, face_boxes

INT64_MAX = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    face: torch.Tensor  # [H,W] int64 face index, -1 where no face covers the pixel centre
    bary: torch.Tensor  # [H,W,3] perspective-correct barycentrics (0 where empty)
    depth: torch.Tensor  # [H,W] camera-space depth (distance along -z), inf where empty

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def project(verts: torch.Tensor, c2w: torch.Tensor, fx, fy, cx, cy):
    """World vertices [V,3] -> (pixel x [V], pixel y [V] (down), depth z [V]) for an OpenGL camera."""
    cam = (verts - c2w[:, 3]) @ c2w[:, :3]
    z = -cam[:, 2]
    zs = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    return cx + fx * cam[:, 0] / zs, cy - fy * cam[:, 1] / zs, z


def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _bary(tri_x, tri_y, px, py):
    """Screen-space barycentrics [N,3] of points (px, py) in triangles tri_x/tri_y [N,3], and the area."""
    x0, x1, x2 = tri_x.unbind(-1)
    y0, y1, y2 = tri_y.unbind(-1)
    area = _edge(x0, y0, x1, y1, x2, y2)
    w0 = _edge(x1, y1, x2, y2, px, py) / area
    w1 = _edge(x2, y2, x0, y0, px, py) / area
    return torch.stack([w0, w1, 1.0 - w0 - w1], -1), area


def _perspective(w: torch.Tensor, tri_z: torch.Tensor):
    """Screen barycentrics -> (perspective-correct barycentrics, depth)."""
    q = w / tri_z
    s = q.sum(-1, keepdim=True)
    return q / s, 1.0 / s.squeeze(-1)


def _splat(zbuf, ids, tx, ty, tz, x0, y0, bw, bh, width: int) -> None:
    """Depth-test the pixel centres of faces ``ids`` (one packed chunk) into ``zbuf`` [H*W] int64."""
    n = bw * bh
    total = int(n.sum())
    if total == 0:
        return
    local = torch.repeat_interleave(torch.arange(len(ids)), n)
    k = torch.arange(total) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    px = x0[local] + k % bw[local]
    py = y0[local] + k // bw[local]
    w, _ = _bary(tx[local], ty[local], px.to(tx.dtype) + 0.5, py.to(tx.dtype) + 0.5)
    inside = (w >= 0).all(-1)
    w, local, px, py = w[inside], local[inside], px[inside], py[inside]
    _, depth = _perspective(w, tz[local])
    key = (depth.float().view(torch.int32).long() << 32) | ids[local]
    zbuf.scatter_reduce_(0, py * width + px, key, reduce="amin")


def rasterize(verts: torch.Tensor, faces: torch.Tensor, c2w, intrinsics, width: int, height: int,
              near: float = 1e-3, cull_back: bool = False, max_candidates: int = 1 << 21) -> Fragments:
    """Rasterize a triangle mesh seen by an OpenGL pinhole camera.

    Args:
        verts: [V,3] float world positions (CPU). faces: [F,3] int64.
        c2w: [3,4] camera-to-world (OpenGL). intrinsics: (fx, fy, cx, cy) in pixels.
        cull_back: drop faces whose front (counter-clockwise side) faces away.

    Returns:
        Fragments with [H,W] fields (see the class).
    """
    c2w = torch.as_tensor(c2w, dtype=verts.dtype)
    px, py, z = project(verts, c2w, *intrinsics)
    tx, ty, tz = px[faces], py[faces], z[faces]
    _, area = _bary(tx, ty, tx[:, 0], ty[:, 0])
    keep = (tz > near).all(-1) & (area != 0) & torch.isfinite(area)
    if cull_back:
        keep &= area < 0  # counter-clockwise in y-up camera space is clockwise in y-down pixels
    ids = keep.nonzero().squeeze(-1)
    tx, ty, tz = tx[ids], ty[ids], tz[ids]
    x0, y0, bw, bh = face_boxes(tx, ty, width, height)
    on = (bw * bh > 0).nonzero().squeeze(-1)  # faces that cover at least one pixel centre's box
    ids, tx, ty, tz, x0, y0, bw, bh = (a[on] for a in (ids, tx, ty, tz, x0, y0, bw, bh))
    zbuf = torch.full((height * width,), INT64_MAX, dtype=torch.int64)
    for sl in box_chunks(bw, bh, max_candidates):
        _splat(zbuf, ids[sl], tx[sl], ty[sl], tz[sl], x0[sl], y0[sl], bw[sl], bh[sl], width)
    return _fragments(zbuf, px, py, z, faces, width, height)


def _fragments(zbuf, px, py, z, faces, width: int, height: int) -> Fragments:
    hit = zbuf != INT64_MAX
    face = torch.full((height * width,), -1, dtype=torch.int64)
    face[hit] = zbuf[hit] & 0xFFFFFFFF
    depth = torch.full((height * width,), float("inf"), dtype=px.dtype)
    bary = torch.zeros(height * width, 3, dtype=px.dtype)
    pix = hit.nonzero().squeeze(-1)
    if pix.numel():
        f = faces[face[pix]]
        cx = (pix % width).to(px.dtype) + 0.5
        cy = (pix // width).to(px.dtype) + 0.5
        w, _ = _bary(px[f], py[f], cx, cy)
        bary[pix], depth[pix] = _perspective(w, z[f])
    return Fragments(face.reshape(height, width), bary.reshape(height, width, 3), depth.reshape(height, width))
