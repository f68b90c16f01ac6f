"""Scene bounds from a sparse point cloud (structure from motion) and the cameras that observed it.

Rule (``point_bounds``):
* Inliers: points seen by 3 or more images when tracks are known (all points when fewer than 4 pass), then
  those inside the 0.5 .. 99.5 percentile of every axis.
* ``aabb``: the inliers' box, padded by 10% of its size on each side (an axis of zero size is padded by 0.1% of the
  largest side, or 0.001).
* Per view: the depths (z in front of the camera) of the points it observes (all its tracked points, not only the
  inliers, so that far backgrounds count): near = 0.5 x their 1st percentile, far = 1.5 x their 99th. A view that
  observes fewer than 5 points in front of it takes the inliers inside its image instead; one that sees none takes
  the other views' extremes. Scene near / far = min / max over the views.
* ``centre``: the centre of the (unpadded) inlier box; ``radius``: the distance from it within which 95% of the
  inliers lie (what a scene contraction needs).

Without points, ``camera_bounds`` is nerfstudio's rule without aabb_scale: the look-at centre c, r = camera
distances to c, near = 0.05 median r, far = 2 max r, aabb = the box of the frusta between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fieldfit.render.camera import frusta_bounds, look_at_centre

MIN_TRACK = 3
PERCENTILES = (0.5, 99.5)
PAD = 0.1
DEPTH_PERCENTILES = (1.0, 99.0)
NEAR_FACTOR, FAR_FACTOR = 0.5, 1.5
MIN_SEEN = 5
RADIUS_PERCENTILE = 95.0

RULE = ("sparse points: tracks >= 3, 0.5-99.5 percentile box padded 10%; per view near = 0.5 x 1st, "
        "far = 1.5 x 99th percentile of observed point depths")


@dataclass
class PointBounds:
    aabb: np.ndarray  # [2,3]
    near: float
    far: float
    frame_bounds: np.ndarray  # [N,2] near, far per view
    centre: np.ndarray  # [3]
    radius: float
    inliers: np.ndarray  # [P] bool


def inlier_mask(xyz: np.ndarray, track_lengths: np.ndarray | None = None) -> np.ndarray:
    """[P] bool: well-tracked points inside the per-axis percentile box (module doc)."""
    keep = np.all(np.isfinite(xyz), axis=1)
    if track_lengths is not None and len(track_lengths) == len(xyz):
        tracked = keep & (track_lengths >= MIN_TRACK)
        if tracked.sum() >= 4:
            keep = tracked
    if keep.sum() == 0:
        return keep
    lo, hi = np.percentile(xyz[keep], PERCENTILES, axis=0)
    return keep & np.all((xyz >= lo) & (xyz <= hi), axis=1)


def depths(camera, points: np.ndarray) -> np.ndarray:
    """Depth in front of an OpenGL camera (``render.camera.Camera``) of world points [P,3]."""
    rot, pos = camera.c2w[:, :3], camera.c2w[:, 3]
    return -((points - pos) @ rot)[:, 2]


def _in_image(camera, points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, bool)
    xy, z = camera.project(torch.from_numpy(np.ascontiguousarray(points, np.float64)))
    xy, z = xy.numpy(), z.numpy()
    return (z > 0) & (xy[:, 0] >= 0) & (xy[:, 0] <= camera.width) & (xy[:, 1] >= 0) & (xy[:, 1] <= camera.height)


def point_bounds(xyz: np.ndarray, cameras: list, seen: list[np.ndarray],
                 track_lengths: np.ndarray | None = None) -> PointBounds | None:
    """Bounds of the points ``xyz`` [P,3] seen from ``cameras``; ``seen[i]`` holds the row indices of the points
    that camera i observes. None when there are no usable points."""
    inl = inlier_mask(xyz, track_lengths)
    if inl.sum() < 1:
        return None
    pts = xyz[inl]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = hi - lo
    size = np.where(size > 0, size, max(1e-3 * float(size.max()), 1e-3))
    aabb = np.stack([lo - PAD * size, hi + PAD * size])
    centre = 0.5 * (lo + hi)
    radius = float(np.percentile(np.linalg.norm(pts - centre, axis=1), RADIUS_PERCENTILE))

    finite = np.all(np.isfinite(xyz), axis=1)
    fb = np.full((len(cameras), 2), np.nan)
    for i, cam in enumerate(cameras):
        idx = np.asarray(seen[i], np.int64)
        d = depths(cam, xyz[idx[finite[idx]]]) if len(idx) else np.zeros(0)
        d = d[d > 0]
        if len(d) < MIN_SEEN:
            d = depths(cam, pts[_in_image(cam, pts)])
            d = d[d > 0]
        if len(d):
            lo_d, hi_d = np.percentile(d, DEPTH_PERCENTILES)
            fb[i] = NEAR_FACTOR * lo_d, FAR_FACTOR * hi_d
    if np.all(np.isnan(fb[:, 0])):
        return None
    near, far = float(np.nanmin(fb[:, 0])), float(np.nanmax(fb[:, 1]))
    fb[np.isnan(fb[:, 0])] = near, far
    return PointBounds(aabb, near, far, fb, centre, radius, inl)


def camera_bounds(cameras: list) -> tuple[np.ndarray, float, float]:
    """(aabb [2,3], near, far) from the cameras alone (module doc)."""
    c = look_at_centre(cameras)
    r = np.linalg.norm(np.stack([cam.position for cam in cameras]) - c, axis=1)
    near, far = 0.05 * float(np.median(r)), 2.0 * float(r.max())
    if not near > 0:
        near, far = 0.05, 100.0
    return frusta_bounds(cameras, near, far), near, far


__all__ = ["RULE", "PointBounds", "camera_bounds", "depths", "inlier_mask", "point_bounds"]
