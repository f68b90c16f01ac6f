"""Camera paths for novel-view videos: orbit and spiral around a set of cameras.

Poses are OpenGL camera-to-world [3,4] in the cameras' world frame.
- orbit: a circle around the point the cameras look at (``camera.look_at_centre``), about their mean up
  vector, at their mean distance and mean elevation: for object captures (Blender, the fox).
- spiral: NeRF's LLFF spiral around the average pose, radii from the spread of the camera positions,
  focused at a depth from the scene's depth bounds when given: for forward-facing captures.
"""

import math
from dataclasses import replace

import numpy as np

from .camera import Camera, look_at, look_at_centre, mean_up

PATHS = ("orbit", "spiral")


def orbit_poses(cameras, n: int) -> list[np.ndarray]:
    """n poses on a circle around the looked-at point of ``cameras`` (Cameras or [3,4] poses)."""
    poses = np.stack([np.asarray(getattr(c, "c2w", c), np.float64) for c in cameras])
    centre = look_at_centre(poses)
    up = mean_up(poses)
    rel = poses[:, :, 3] - centre
    radius = float(np.linalg.norm(rel, axis=1).mean())
    height = float(np.mean(rel @ up))
    ring = math.sqrt(max(radius**2 - height**2, 1e-6))
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    out = []
    for k in range(n):
        phi = 2 * math.pi * k / n
        eye = centre + height * up + ring * (math.cos(phi) * a + math.sin(phi) * b)
        out.append(look_at(eye, centre, up))
    return out


def spiral_poses(cameras, n: int, bounds=None, rots: int = 2) -> list[np.ndarray]:
    """n poses on NeRF's LLFF spiral around the average camera; ``bounds`` are the scene's depth bounds
    (near/far per view, any shape) when known, else the focus is the looked-at point."""
    c2w = np.stack([np.asarray(getattr(c, "c2w", c), np.float64) for c in cameras])
    centre = c2w[:, :, 3].mean(axis=0)
    back = c2w[:, :, 2].sum(axis=0)
    back /= np.linalg.norm(back)
    up = mean_up(c2w)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    axes = np.stack([right, up, back], axis=1)
    rads = np.percentile(np.abs((c2w[:, :, 3] - centre) @ axes), 90, axis=0)
    if bounds is not None:
        close, far = 0.9 * float(np.min(bounds)), 5.0 * float(np.max(bounds))
        focus = 1.0 / (0.25 / close + 0.75 / far)
    else:
        focus = float(np.linalg.norm(look_at_centre(c2w) - centre))
    target = centre - focus * back
    out = []
    for k in range(n):
        th = 2 * math.pi * rots * k / n
        off = np.array([math.cos(th), -math.sin(th), -math.sin(0.5 * th)]) * rads
        out.append(look_at(centre + axes @ off, target, up))
    return out


def path_cameras(kind: str, cameras: list[Camera], n: int, lens: Camera, bounds=None) -> list[Camera]:
    """n Cameras along path ``kind`` (orbit | spiral) around ``cameras``, with ``lens``'s intrinsics and size
    (no distortion)."""
    if kind not in PATHS:
        raise ValueError(f"unknown camera path {kind!r} (choose {', '.join(PATHS)})")
    poses = orbit_poses(cameras, n) if kind == "orbit" else spiral_poses(cameras, n, bounds)
    base = replace(lens, distortion=None, model="PINHOLE")
    return [base.with_pose(p) for p in poses]


__all__ = ["PATHS", "orbit_poses", "path_cameras", "spiral_poses"]
