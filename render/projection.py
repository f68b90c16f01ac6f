"""Points -> pixels of posed pinhole cameras, and bilinear colour lookups there (ProNeRF's features).

Conventions are those of ``render.rays``: c2w [3,4] OpenGL (x right, y up, looking along -z),
pixel centres at integer + 0.5, normalised OpenCV coordinates u = (x - cx)/fx, v = (y - cy)/fy
(y down), lens distortion of the camera's model applied as ``render.lens`` describes.

``project`` is exact (float64 in, float64 out; no_grad is up to the caller). ``gather_colours``
looks colours up in V images stacked as [3,V,H,W] by per-point view index: the
caller chooses the few views each ray needs first and only those are touched (ProNeRF's
official code warps into every training view, then keeps 4: METHODS.md 3.7.2).
"""

import torch
import torch.nn.functional as F

from .lens import FISHEYE, distort, fisheye_project, lens_model


def project(x: torch.Tensor, c2w: torch.Tensor, fx, fy, cx, cy, dist=None, model: str = "OPENCV"):
    """World points x [M,3] -> (pixel positions [M,2] (x right, y down), depth in front [M]).

    c2w is [3,4] (one camera for all points) or [M,3,4] (one per point); fx, fy, cx, cy are
    floats or [M] tensors; dist is None, [D] or [M,D] coefficients of the lens ``model``
    (``render.lens``). Points behind the camera get depth <= 0 (their pixel positions are finite
    but meaningless, except for fisheye lenses, which see them up to 180 degrees off the axis).

    Examples:
        >>> xy, z = project(torch.tensor([[0.0, 0.0, -2.0]]), torch.eye(3, 4), 100.0, 100.0, 50.0, 40.0)
        >>> xy.tolist(), z.tolist()
        ([[50.0, 40.0]], [2.0])
    """
    rot, trans = c2w[..., :3], c2w[..., 3]
    rel = x - trans
    if c2w.dim() == 2:
        p = rel @ rot  # R^T (x - t) as row vectors
    else:
        p = torch.einsum("mij,mi->mj", rot, rel)
    depth = -p[:, 2]
    safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    if lens_model(model) == FISHEYE:
        k = torch.zeros(6, dtype=x.dtype, device=x.device) if dist is None else dist
        uv = fisheye_project(p * torch.tensor([1.0, -1.0, -1.0], dtype=p.dtype, device=p.device), k)
    else:
        uv = torch.stack([p[:, 0] / safe, -p[:, 1] / safe], dim=-1)
        if dist is not None:
            uv = distort(uv, dist, model)
    return torch.stack([uv[:, 0] * fx + cx, uv[:, 1] * fy + cy], dim=-1), depth


def gather_colours(images: torch.Tensor, view: torch.Tensor, xy: torch.Tensor, sizes: torch.Tensor,
                   depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear colours of points in chosen views, zero outside the image or behind the camera.

    Args:
        images: [C,V,H,W] float, the views stacked channel-first (smaller views padded with
            zeros at the bottom right).
        view: [M] int64, the view of each point.
        xy: [M,2] pixel positions in that view (``project``).
        sizes: [V,2] int64 (width, height) of each view's real image.
        depth: [M] depth in front of that view's camera (``project``).

    Returns:
        (colours [M,C], valid [M] bool). Texels outside the real image count as zero
        (grid_sample's zeros padding, align_corners=False); a point is valid when it is in
        front of the camera and inside the image. One 3-D grid_sample does every view: the
        third coordinate sits on the centre of the point's view slice, so the lookup is an
        exact bilinear one in that view (2.7x faster than four indexed corner gathers).
    """
    c, n_views, h, w = images.shape
    wh = sizes[view].to(xy.dtype)
    valid = (depth > 1e-6) & (xy >= 0).all(-1) & (xy <= wh).all(-1)
    xy = torch.where(valid[:, None], xy, torch.full_like(xy, -1e3))  # far outside: zeros
    grid = torch.stack([xy[:, 0] * (2.0 / w) - 1.0, xy[:, 1] * (2.0 / h) - 1.0,
                        (view.to(xy.dtype) + 0.5) * (2.0 / n_views) - 1.0], dim=-1)
    out = F.grid_sample(images[None], grid.to(images.dtype).view(1, 1, 1, -1, 3), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.view(c, -1).t(), valid


def fill_invalid(colours: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[...,V,C] colours with the invalid views [...,V] replaced by the mean of the valid ones
    (zero where no view is valid), as ProNeRF fills its re-projected features."""
    m = valid.to(colours.dtype)[..., None]
    mean = (colours * m).sum(-2, keepdim=True) / m.sum(-2, keepdim=True).clamp_min(1.0)
    return torch.where(valid[..., None], colours, mean.expand_as(colours))


__all__ = ["fill_invalid", "gather_colours", "project"]
