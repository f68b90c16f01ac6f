"""Differentiable K-buffer triangle rasterizer: the K nearest faces per pixel, with attributes.

Notation: V vertices, F faces, P = H*W pixels (row-major), K layers. Cameras are OpenGL pinholes
(look along -z, y up; pixel rows go down), as ``render.rays.pixel_rays``: the ray through pixel
centre (col + 0.5, row + 0.5) meets exactly the points this rasterizer draws there.

Design: two halves.
  1. Which faces (no gradient): ``fieldfit.cuda.raster_faces`` gives the face ids of the K nearest
     faces at every pixel centre, depth-sorted (Triton kernel on CUDA, chunked torch on CPU; memory
     bounded by chunks of (face, pixel) pairs, see ``cuda._raster_ref``). Coverage uses a
     top-left-like rule, so faces sharing an edge leave no gap and draw no pixel twice.
  2. Where on them (differentiable): barycentrics and depths are recomputed in plain torch from the
     face ids and the projected vertices, so autograd carries gradients to vertex positions (and,
     through ``interpolate``, to vertex attributes). Coverage itself is not differentiable (hard
     rasterization, as PyTorch3D with blur 0).

Barycentrics are perspective-correct: b_i = (w_i / z_i) / sum_j (w_j / z_j) with w the screen
barycentrics; depth = 1 / sum_j (w_j / z_j) is camera depth (along -z), not distance along the ray.
The rasterizer knows no shading.
"""

from dataclasses import dataclass

import torch

from fieldfit.cuda import raster_faces

from .camera import Camera


@dataclass
class Fragments:
    """K layers per pixel, nearest first. face: [P,K] int64 (-1 empty); bary: [P,K,3]; depth: [P,K] (inf empty)."""

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    width: int
    height: int

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def project(verts: torch.Tensor, cam: Camera) -> torch.Tensor:
    """World vertices [V,3] -> [V,3] (pixel x, pixel y (down), camera depth z); differentiable."""
    c2w = torch.as_tensor(cam.c2w, device=verts.device).to(verts.dtype)
    local = (verts - c2w[:, 3]) @ c2w[:, :3]
    z = -local[:, 2]
    zs = torch.where(z.abs() > 1e-12, z, torch.full_like(z, 1e-12))
    return torch.stack([cam.cx + cam.fx * local[:, 0] / zs, cam.cy - cam.fy * local[:, 1] / zs, z], -1)


def barycentrics(screen: torch.Tensor, faces: torch.Tensor, face_ids: torch.Tensor, width: int):
    """Perspective-correct barycentrics [P,K,3] and depth [P,K] at the pixel centres of ``face_ids`` [P,K].

    screen: [V,3] projected vertices (``project``); differentiable in it. Empty layers: bary 0, depth inf.
    """
    p, k = face_ids.shape
    # the (pixel, layer) slots that hold a face, found once (each boolean-mask index of a [P,K] tensor is a pass
    # over the whole image: several of them cost more than the rest of a one-layer frame on a CPU)
    slot = (face_ids.reshape(-1) >= 0).nonzero().squeeze(-1)
    pix = torch.div(slot, k, rounding_mode="floor")
    tri = screen.index_select(0, faces.index_select(0, face_ids.reshape(-1).index_select(0, slot)).reshape(-1))
    tri = tri.reshape(-1, 3, 3)  # [N,3,3]
    px = (pix % width).to(screen.dtype) + 0.5
    py = torch.div(pix, width, rounding_mode="floor").to(screen.dtype) + 0.5
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    e = []
    for i in range(3):
        ax, ay, bx, by = x[:, (i + 1) % 3], y[:, (i + 1) % 3], x[:, (i + 2) % 3], y[:, (i + 2) % 3]
        e.append((bx - ax) * (py - ay) - (by - ay) * (px - ax))
    w = torch.stack(e, -1)
    w = w / w.sum(-1, keepdim=True)
    q = w / z
    s = q.sum(-1, keepdim=True)
    bary = torch.zeros(p * k, 3, dtype=screen.dtype, device=screen.device).index_copy(0, slot, q / s)
    depth = torch.full((p * k,), float("inf"), dtype=screen.dtype, device=screen.device)
    depth = depth.index_copy(0, slot, 1.0 / s.squeeze(-1))
    return bary.reshape(p, k, 3), depth.reshape(p, k)


def rasterize(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, k: int = 1, near: float = 1e-3,
              cull_back: bool = False) -> Fragments:
    """Rasterize a triangle mesh: the K nearest faces at every pixel centre, depth-sorted.

    Args:
        verts: [V,3] float world positions (any device); gradients reach them through bary/depth.
        faces: [F,3] int64 vertex indices.
        cam: the camera (image size included).
        k: layers per pixel.
        near: faces with a vertex closer than ``near`` (camera depth) are not drawn.
        cull_back: skip faces whose counter-clockwise (outward, for closed meshes) side looks away.

    Returns:
        Fragments over P = H*W pixels (row-major).

    Examples:
        >>> cam = Camera(torch.eye(3, 4), 2.0, 2.0, 1.0, 1.0, 2, 2)
        >>> v = torch.tensor([[-5.0, -5.0, -1.0], [5.0, -5.0, -1.0], [0.0, 5.0, -1.0]])
        >>> rasterize(v, torch.tensor([[0, 1, 2]]), cam).face.reshape(-1).tolist()
        [0, 0, 0, 0]
    """
    if verts.dim() != 2 or verts.shape[-1] != 3:
        raise ValueError(f"rasterize: verts must be [V,3], got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3 or faces.dtype != torch.int64:
        raise ValueError(f"rasterize: faces must be [F,3] int64, got {tuple(faces.shape)} {faces.dtype}")
    screen = project(verts, cam)
    tri = screen.detach().index_select(0, faces.reshape(-1)).reshape(*faces.shape, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    keep = (z[:, 0] > near) & (z[:, 1] > near) & (z[:, 2] > near)  # near faces never reach the rasterizer
    keep &= (x.amax(-1) > 0) & (x.amin(-1) < cam.width) & (y.amax(-1) > 0) & (y.amin(-1) < cam.height)  # nor off-screen
    if cull_back:
        keep &= (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0]) < 0
    sel = keep.nonzero().squeeze(-1)
    local = raster_faces(tri.index_select(0, sel), cam.width, cam.height, k, near)
    ids = torch.where(local >= 0, sel[local.clamp(min=0)], local) if sel.numel() else local
    bary, depth = barycentrics(screen, faces, ids, cam.width)
    return Fragments(ids, bary, depth, cam.width, cam.height)


def interpolate_packed(attrs: torch.Tensor, faces: torch.Tensor, face_ids: torch.Tensor, bary: torch.Tensor):
    """Vertex attributes [V,C] at N fragments given by face_ids [N] (all >= 0) and bary [N,3]: [N,C].

    Gathers with ``index_select`` (its backward is an index_add, much faster on the CPU than the
    accumulate-scatter of advanced indexing); differentiable in attrs and bary.
    """
    vid = faces.index_select(0, face_ids).reshape(-1)
    vals = attrs.index_select(0, vid).reshape(face_ids.shape[0], 3, attrs.shape[-1])
    return (vals * bary[..., None].to(attrs.dtype)).sum(-2)


def interpolate(attrs: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Vertex attributes [V,C] at the fragments: [P,K,C] (0 on empty layers); differentiable in attrs and bary."""
    hit = frags.mask
    out = torch.zeros(*frags.face.shape, attrs.shape[-1], dtype=attrs.dtype, device=attrs.device)
    return out.index_put((hit,), interpolate_packed(attrs, faces, frags.face[hit], frags.bary[hit]))


__all__ = ["Fragments", "barycentrics", "interpolate", "interpolate_packed", "project", "rasterize"]
