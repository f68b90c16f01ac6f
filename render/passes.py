"""What a video shows (``fieldfit render --pass``): rgb, depth or normal, as uint8 frames.

- depth: the expected distance along each ray (``Rendering.depth``: marching-space units, NDC for forward-facing
  scenes; shape runs: camera depth of the mesh) through matplotlib's turbo map, one range for the whole video:
  near (blue) is the 1st and far (red) the 99th percentile of every valid depth of every frame, so a colour means
  the same distance in every frame; pixels with no surface (opacity <= 1/2) are black.
- normal: unit normals in the world frame as colour n/2 + 1/2 (x red, y green, z blue), black where there is no
  surface. Runs give them from their density gradient (rbf; in its marching space, the NDC cube for forward-facing
  scenes) or, where they have none, from the depth map (``normals_from_points``: the cross product of the
  neighbouring surface points' differences, facing the camera).
"""

import numpy as np

PASSES = ("rgb", "depth", "normal")
PERCENTILES = (1.0, 99.0)
_LUT = None


def turbo(t: np.ndarray) -> np.ndarray:
    """Values in [0,1] [...] -> float colours [...,3] of matplotlib's turbo map."""
    global _LUT
    if _LUT is None:
        import matplotlib

        _LUT = matplotlib.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3].astype(np.float32)
    return _LUT[np.clip(np.round(np.asarray(t) * 255), 0, 255).astype(np.int64)]


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def depth_range(depths: list[np.ndarray]) -> tuple[float, float]:
    """(near, far) of a video: the 1st and 99th percentiles of its finite depths (nan marks no surface)."""
    values = np.concatenate([d[np.isfinite(d)].reshape(-1) for d in depths]) if depths else np.zeros(0)
    if len(values) == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, PERCENTILES)
    return float(lo), float(max(hi, lo + 1e-9))


def depth_frames(depths: list[np.ndarray]) -> tuple[list[np.ndarray], tuple[float, float]]:
    """Depth maps [H,W] (nan: no surface) -> (uint8 frames [H,W,3] on the video's range, that range)."""
    lo, hi = depth_range(depths)
    frames = []
    for d in depths:
        valid = np.isfinite(d)
        out = np.zeros(d.shape + (3,), np.float32)
        out[valid] = turbo((d[valid] - lo) / (hi - lo))
        frames.append(to_uint8(out))
    return frames, (lo, hi)


def normal_frame(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unit normals [H,W,3] -> uint8 colours n/2 + 1/2, black where not ``valid`` [H,W]."""
    out = np.zeros(normals.shape, np.float32)
    out[valid] = normals[valid] * 0.5 + 0.5
    return to_uint8(out)


def normals_from_points(points: np.ndarray, eye) -> np.ndarray:
    """Surface points [H,W,3] of a depth map (nan: none) -> unit normals [H,W,3] facing the camera at ``eye``
    (nan where a pixel or a neighbour it needs has no point; the image's border)."""
    p = np.asarray(points, np.float64)
    n = np.full(p.shape, np.nan)
    dx = p[1:-1, 2:] - p[1:-1, :-2]
    dy = p[2:, 1:-1] - p[:-2, 1:-1]
    c = np.cross(dx, dy)
    c /= np.linalg.norm(c, axis=-1, keepdims=True).clip(min=1e-300)
    toward = np.asarray(eye, np.float64) - p[1:-1, 1:-1]
    c *= np.where(np.sum(c * toward, -1, keepdims=True) < 0, -1.0, 1.0)
    n[1:-1, 1:-1] = c
    return n


__all__ = ["PASSES", "PERCENTILES", "depth_frames", "depth_range", "normal_frame", "normals_from_points", "turbo"]
