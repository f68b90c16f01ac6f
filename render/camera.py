"""The one camera type: pose, pinhole intrinsics, image size and lens distortion.

Conventions (every module of fieldfit uses them):
- ``c2w`` [3,4] float64 camera-to-world in the OpenGL convention: x right, y up, looking along -z.
- Intrinsics fx, fy, cx, cy in pixels of a ``width`` x ``height`` image; pixel (row i, col j) has its
  centre at x = j + 0.5, y = i + 0.5 and the camera-space direction ((x - cx)/fx, -(y - cy)/fy, -1).
- ``distortion`` acts on normalised OpenCV coordinates as ``render.lens`` describes; ``model`` says how to read
  it: "PINHOLE" (none), "OPENCV" (k1, k2, k3, k4, p1, p2: radial-tangential), "FULL_OPENCV" (k1, ..., k6, p1,
  p2: the rational model; 8 numbers) or "OPENCV_FISHEYE" (k1, k2, k3, k4, p1, p2 with p ignored: equidistant,
  theta polynomial; its rays are exact at any angle, past 90 degrees too). A fisheye camera always holds its
  coefficients (zeros: the plain equidistant lens); the others hold None when every coefficient is zero.

Scenes load their frames into Cameras, renderers draw from them and the viewer moves them: there is
no other camera type.
"""

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .lens import DIST_SIZE

CAMERA_MODELS = ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")


@dataclass(frozen=True, eq=False)
class Camera:
    """A posed pinhole camera (see the module doc). Immutable: ``replace``-style methods return new ones.

    Examples:
        >>> cam = Camera(look_at([0, 0, 2], [0, 0, 0], [0, 1, 0]), 50.0, 50.0, 32.0, 24.0, 64, 48)
        >>> o, d = cam.rays()
        >>> tuple(o.shape), tuple(d.shape)
        ((3072, 3), (3072, 3))
    """

    c2w: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: np.ndarray | None = None
    model: str = "PINHOLE"

    def __post_init__(self):
        c2w = self.c2w.detach().cpu().numpy() if torch.is_tensor(self.c2w) else self.c2w
        c2w = np.array(c2w, dtype=np.float64)
        if c2w.shape == (4, 4):
            c2w = c2w[:3]
        if c2w.shape != (3, 4):
            raise ValueError(f"Camera: c2w must be [3,4] (or [4,4]), got {c2w.shape}")
        object.__setattr__(self, "c2w", c2w)
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"Camera: model must be one of {CAMERA_MODELS}, got {self.model!r}")
        if self.distortion is None and self.model == "OPENCV_FISHEYE":
            object.__setattr__(self, "distortion", np.zeros(6))
        if self.distortion is not None:
            dist = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
            n = DIST_SIZE[self.model]
            if dist.shape != (n,):
                layout = "k1..k6, p1, p2" if n == 8 else "k1, k2, k3, k4, p1, p2"
                raise ValueError(f"Camera: {self.model} distortion must be ({layout}), got {dist.shape}")
            if not np.all(np.isfinite(dist)):
                raise ValueError(f"Camera: distortion must be finite, got {dist.tolist()}")
            object.__setattr__(self, "distortion", dist if np.any(dist) or self.model == "OPENCV_FISHEYE" else None)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def position(self) -> np.ndarray:
        """[3] the camera centre in the world."""
        return self.c2w[:, 3].copy()

    @property
    def forward(self) -> np.ndarray:
        """[3] unit viewing direction (-z of the camera)."""
        return -self.c2w[:, 2] / np.linalg.norm(self.c2w[:, 2])

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return 2.0 * math.atan(0.5 * self.height / self.fy)

    # -- derived cameras -----------------------------------------------------------------------
    def with_pose(self, c2w) -> "Camera":
        return replace(self, c2w=c2w)

    def scaled(self, n: int) -> "Camera":
        """The camera of an n x n area downscale of its image: sizes floor(W/n), intrinsics / n."""
        if n == 1:
            return self
        return replace(self, width=self.width // n, height=self.height // n, fx=self.fx / n, fy=self.fy / n,
                       cx=self.cx / n, cy=self.cy / n)

    def resized(self, width: int, height: int) -> "Camera":
        """The same lens at another image size: vertical field of view, pixel aspect and the principal point's
        place relative to the image kept (a viewer window of any size)."""
        k = height / self.height
        fy = self.fy * k
        return replace(self, width=width, height=height, fx=fy * self.fx / self.fy, fy=fy,
                       cx=self.cx / self.width * width, cy=self.cy / self.height * height)

    def crop(self, x0: int, y0: int, width: int, height: int) -> "Camera":
        """The camera of the window [x0, x0+width) x [y0, y0+height) of this image."""
        return replace(self, cx=self.cx - x0, cy=self.cy - y0, width=width, height=height)

    # -- rays and projection ---------------------------------------------------------------------
    def rays(self, xy: torch.Tensor | None = None, device="cpu", dtype=torch.float32):
        """(origins [N,3], unit dirs [N,3]) through pixel positions xy [N,2] (x right, y down; centres at
        +0.5), or through every pixel centre in row-major order when xy is None. Computed in float64
        on ``device`` (lens distortion undone exactly, fisheye rays past 90 degrees included), returned as ``dtype``.
        """
        from .rays import pixel_rays  # noqa: PLC0415 - rays imports this module's neighbours only

        if xy is None:
            xy = pixel_grid(self.width, self.height, device)
        c2w = torch.as_tensor(self.c2w, dtype=torch.float64, device=device)
        dist = None if self.distortion is None else torch.as_tensor(self.distortion, dtype=torch.float64,
                                                                       device=device)
        o, d = pixel_rays(xy.to(device=device, dtype=torch.float64), self.fx, self.fy, self.cx, self.cy, c2w, dist,
                          self.model)
        return o.to(dtype).contiguous(), d.to(dtype).contiguous()

    def project(self, points: torch.Tensor):
        """World points [M,3] -> (pixel positions [M,2] (x right, y down), depth in front [M]; fisheye lenses also
        image points at depth <= 0, up to 180 degrees off the axis)."""
        from .projection import project  # noqa: PLC0415 - kept beside its one use, like the .rays import above

        c2w = torch.as_tensor(self.c2w, dtype=points.dtype, device=points.device)
        dist = None if self.distortion is None else torch.as_tensor(self.distortion, dtype=points.dtype,
                                                                       device=points.device)
        return project(points, c2w, self.fx, self.fy, self.cx, self.cy, dist, self.model)


def pixel_grid(width: int, height: int, device="cpu") -> torch.Tensor:
    """[H*W,2] float64 pixel centres (x + 0.5, y + 0.5), row-major."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=device) + 0.5,
                            torch.arange(width, dtype=torch.float64, device=device) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)


def look_at(eye, target, up) -> np.ndarray:
    """OpenGL camera-to-world [3,4] at ``eye`` looking at ``target`` with ``up`` roughly up (any
    perpendicular when looking along ``up``)."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = eye - target
    z = z / np.linalg.norm(z)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-9:
        helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x = np.cross(np.cross(up, helper), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z, eye], axis=1)


def look_at_centre(cameras) -> np.ndarray:
    """[3] the point closest (least squares) to every camera's optical axis; the mean camera position when
    that is ill-posed or lies behind most cameras. ``cameras``: Cameras or [3,4] poses."""
    poses = np.stack([np.asarray(getattr(c, "c2w", c), np.float64) for c in cameras])
    pos = poses[:, :, 3]
    if len(poses) < 2:
        return pos.mean(axis=0)
    d = -poses[:, :, 2]
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    a = proj.sum(axis=0)
    b = np.einsum("nij,nj->i", proj, pos)
    w = np.linalg.eigvalsh(a)
    if w.min() < 1e-3 * max(w.max(), 1e-12):
        return pos.mean(axis=0)
    c = np.linalg.solve(a, b)
    if np.mean(np.einsum("ni,ni->n", c[None] - pos, d) > 0) < 0.5:
        return pos.mean(axis=0)
    return c


def mean_up(cameras) -> np.ndarray:
    """[3] the cameras' mean up vector (+y of each pose), unit length."""
    up = np.stack([np.asarray(getattr(c, "c2w", c), np.float64)[:, 1] for c in cameras]).mean(axis=0)
    return up / np.linalg.norm(up)


def frusta_bounds(cameras, near: float, far: float) -> np.ndarray:
    """Axis-aligned box [2, 3] enclosing every camera's view frustum between depths near and far.

    Depth is measured along the camera's viewing axis (-z); the box of a frustum is the box of its
    8 corners (image corners at near and far), so the result is exact.
    """
    if not cameras:
        raise ValueError("frusta_bounds needs at least one camera")
    if not (0 <= near < far):
        raise ValueError(f"need 0 <= near < far, got near={near}, far={far}")
    pts = []
    for c in cameras:
        u = np.array([0.0, c.width, 0.0, c.width])
        v = np.array([0.0, 0.0, c.height, c.height])
        d = np.stack([(u - c.cx) / c.fx, -(v - c.cy) / c.fy, -np.ones(4)], axis=1)  # depth-1 points
        r, t = c.c2w[:, :3], c.c2w[:, 3]
        for z in (near, far):
            pts.append((d * z) @ r.T + t)
    pts = np.concatenate(pts)
    return np.stack([pts.min(axis=0), pts.max(axis=0)])


__all__ = ["CAMERA_MODELS", "Camera", "frusta_bounds", "look_at", "look_at_centre", "mean_up", "pixel_grid"]
