"""Cameras to rays.

Conventions:
- Camera-to-world ``c2w`` [3,4] = [R | t] in the OpenGL convention (x right, y up,
  the camera looks along -z), as Blender/NeRF-synthetic and nerfstudio store it.
- Pinhole intrinsics fx, fy, cx, cy in pixels; pixel (row i, col j) has its centre
  at x = j + 0.5, y = i + 0.5. Image rows go down, so a pixel (x, y) has the
  normalised OpenCV coordinates u = (x - cx)/fx, v = (y - cy)/fy and the camera-space
  direction (u, -v, -1).
- Lens distortion ``dist`` with its ``model`` ("OPENCV": (k1, k2, k3, k4, p1, p2), nerfstudio's
  layout; "FULL_OPENCV": (k1, ..., k6, p1, p2), the rational model; "OPENCV_FISHEYE":
  equidistant) acts on (u, v) in OpenCV's convention (y down) as ``render.lens`` describes;
  pixel positions are taken as photographed and the lens is undone exactly, fisheye rays
  past 90 degrees from the axis included.
- Directions are returned with unit length, so t along a ray is metric distance from
  the camera centre (not z-depth: z = t * cos of the angle to the optical axis).
"""

from dataclasses import dataclass

import torch

from fieldfit.cuda import ray_box

from .lens import FISHEYE, directions, lens_model, undistort


def _as_column(x, like: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return x if x.dim() == 0 else x.reshape(-1)


def pixel_rays(xy, fx, fy, cx, cy, c2w, dist=None, model: str = "OPENCV"):
    """World-space rays through pixel positions.

    Args:
        xy: [N,2] pixel coordinates (x = col + 0.5, y = row + 0.5 at pixel centres).
        fx, fy, cx, cy: floats or [N] tensors (pixels).
        c2w: [3,4] or [N,3,4] camera-to-world, OpenGL convention (looks along -z).
        dist: None, [D] or [N,D] coefficients of the lens ``model`` (``render.lens``); the
            pixel positions are taken as distorted (as photographed) and undistorted first.
        model: "OPENCV" (also "PINHOLE"), "FULL_OPENCV" or "OPENCV_FISHEYE" (a fisheye lens
            with dist None has zero coefficients: the plain equidistant projection).

    Returns:
        (origins [N,3], dirs [N,3]) with unit-length dirs, in the dtype of c2w.
        Differentiable in c2w and the intrinsics (undistortion excepted).

    Examples:
        >>> o, d = pixel_rays(torch.tensor([[50.0, 40.0]]), 100.0, 100.0, 50.0, 40.0, torch.eye(3, 4))
        >>> d.tolist()
        [[0.0, 0.0, -1.0]]
    """
    c2w = torch.as_tensor(c2w)
    if c2w.shape[-2:] != (3, 4) or c2w.dim() not in (2, 3):
        raise ValueError(f"c2w: expected [3,4] or [N,3,4], got {tuple(c2w.shape)}")
    xy = torch.as_tensor(xy, device=c2w.device).to(c2w.dtype)
    if xy.dim() != 2 or xy.shape[-1] != 2:
        raise ValueError(f"xy: expected [N,2] pixel coordinates, got {tuple(xy.shape)}")
    u = (xy[:, 0] - _as_column(cx, xy)) / _as_column(fx, xy)
    v = (xy[:, 1] - _as_column(cy, xy)) / _as_column(fy, xy)
    if lens_model(model) == FISHEYE:
        k = torch.zeros(6, dtype=torch.float64, device=xy.device) if dist is None else dist
        d_cv = directions(torch.stack([u, v], -1), k, model).to(xy.dtype)
        d_cam = d_cv * torch.tensor([1.0, -1.0, -1.0], dtype=xy.dtype, device=xy.device)
    else:
        if dist is not None:
            uv = undistort(torch.stack([u, v], -1), dist, model=model)
            u, v = uv[:, 0], uv[:, 1]
        d_cam = torch.stack([u, -v, -torch.ones_like(u)], dim=-1)  # OpenGL: y up, looking along -z
    rot, trans = c2w[..., :3], c2w[..., 3]
    if c2w.dim() == 2:
        dirs = d_cam @ rot.t()
        origins = trans.expand(xy.shape[0], 3)
    else:
        dirs = torch.einsum("nij,nj->ni", rot, d_cam)
        origins = trans
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    return origins.contiguous(), dirs


def image_rays(H: int, W: int, fx, fy, cx, cy, c2w, dist=None, model: str = "OPENCV"):
    """Rays through every pixel centre of an H x W image, row-major (index = row * W + col).

    Args as ``pixel_rays``; c2w [3,4]. Returns (origins [H*W,3], dirs [H*W,3]), unit dirs.
    """
    c2w = torch.as_tensor(c2w)
    dtype = c2w.dtype if c2w.is_floating_point() else torch.float32
    ys = torch.arange(H, device=c2w.device, dtype=dtype) + 0.5
    xs = torch.arange(W, device=c2w.device, dtype=dtype) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xy = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
    return pixel_rays(xy, fx, fy, cx, cy, c2w.to(dtype), dist, model)


def ndc_rays(origins: torch.Tensor, dirs: torch.Tensor, H: int, W: int, focal: float, near: float = 1.0):
    """NeRF's normalised device coordinates for forward-facing (LLFF) scenes.

    The rays must be in the frame of the (average) camera, which looks along -z. Each
    origin is first moved onto the plane z = -near (o <- o + t_n d, t_n = -(near + o_z)/d_z);
    then, with a_x = 2 focal / W, a_y = 2 focal / H (the perspective projection of
    NeRF's appendix C, mapping the frustum z in (-inf, -near] to the cube [-1,1]^3):

        o'  = ( -a_x o_x / o_z,  -a_y o_y / o_z,  1 + 2 near / o_z )
        d'  = ( -a_x (d_x/d_z - o_x/o_z),  -a_y (d_y/d_z - o_y/o_z),  -2 near / o_z )

    so that o' + t' d', t' in [0, 1), covers the ray from the near plane to infinity:
    d'_z = 2 for every ray, and the point at NDC t' has camera depth -z = near / (1 - t')
    (ProNeRF's z = 1 / (1 - t) for near = 1).
    d' is NOT unit length; compositing in NDC uses the NDC t' (ProNeRF scales delta by |d'|).

    Args:
        origins, dirs: [N,3]. H, W: image size in pixels. focal: pixels. near: plane distance.

    Returns:
        (o_ndc [N,3], d_ndc [N,3]); differentiable.
    """
    t = -(near + origins[..., 2]) / dirs[..., 2]
    o = origins + t[..., None] * dirs
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = dirs.unbind(-1)
    ax, ay = 2.0 * focal / W, 2.0 * focal / H
    o_ndc = torch.stack([-ax * ox / oz, -ay * oy / oz, 1.0 + 2.0 * near / oz], dim=-1)
    d_ndc = torch.stack([-ax * (dx / dz - ox / oz), -ay * (dy / dz - oy / oz), -2.0 * near / oz], dim=-1)
    return o_ndc, d_ndc


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor):
    """Slab intersection of rays with an axis-aligned box.

    Args:
        origins, dirs: [N,3] (dirs of any nonzero length; t in units of |d|).
        aabb: [2,3] (min corner, max corner).

    Returns:
        (t_near [N], t_far [N], hit [N] bool). t_near = max(entry, 0) (a ray starting
        inside the box enters at 0), t_far = exit; hit = t_far > t_near (a box behind
        the origin or merely touched is a miss). On a miss t_near = t_far = 0.
        Axis-parallel rays are handled (a zero component never produces NaN).
    """
    return ray_box(origins, dirs, aabb)  # fieldfit.cuda's reference: ray_setup's kernel computes the same


def ndc_to_world(x: torch.Tensor, fx: float, fy: float, width: int, height: int, near: float = 1.0,
                 far: float | None = None) -> torch.Tensor:
    """NDC points [...,3] -> the world frame of ``ndc_rays`` (its exact inverse map).

    z_ndc = 1 + 2 near / z  ->  z = 2 near / (z_ndc - 1);  x = -x_ndc z / (2 fx / W), y likewise.
    z_ndc is capped below 1 (z_ndc = 1 is infinitely far): at 1 - 1e-6, or where the depth reaches ``far``
    when given. Differentiable.

    Examples:
        >>> ndc_to_world(torch.tensor([[0.0, 0.0, -1.0]]), 100.0, 100.0, 200, 200).tolist()
        [[0.0, 0.0, -1.0]]
    """
    cap = 1.0 - 1e-6 if far is None else 1.0 - 2.0 * near / far
    zn = x[..., 2].clamp(max=cap)
    z = 2.0 * near / (zn - 1.0)
    return torch.stack([-x[..., 0] * z * width / (2.0 * fx), -x[..., 1] * z * height / (2.0 * fy), z], dim=-1)


@dataclass(frozen=True)
class NDCParams:
    """What maps rays to LLFF normalised device coordinates (NeRF's ndc_rays) and back.

    Sizes/focals are those of the scene's (downscaled) images; the projection only uses the ratios
    fx/width, fy/height, so they are resolution independent. Rays are first moved to the plane
    z = -near_plane in the scene's world coordinates.
    """

    fx: float
    fy: float
    width: int
    height: int
    near_plane: float = 1.0

    def rays(self, origins: torch.Tensor, dirs: torch.Tensor):
        """World rays [N,3] -> NDC rays with unit directions (t is then distance inside the NDC cube)."""
        o, d = ndc_rays(origins, dirs, self.height, self.width, self.fx, self.near_plane)
        return o, d / d.norm(dim=-1, keepdim=True)

    def to_world(self, x: torch.Tensor, far: float | None = None) -> torch.Tensor:
        """NDC points [...,3] -> world points (``ndc_to_world``)."""
        return ndc_to_world(x, self.fx, self.fy, self.width, self.height, self.near_plane, far)
