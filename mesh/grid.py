"""Sampling a torch field on a regular grid (the volumes of ``extract`` and ``band``).

Grid convention (``extract`` module doc): ``volume[i, j, k] = f(x_i, y_j, z_k)``, ``torch.meshgrid`` "ij"
indexing, nodes from ``lo`` to ``hi`` inclusive.
"""

import numpy as np


def grid_bounds(bounds) -> tuple[np.ndarray, np.ndarray]:
    """(lo [3], hi [3]) from (lo, hi) where each is a scalar or a 3-vector."""
    lo, hi = bounds
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (3,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (3,)).copy()
    if not np.all(hi > lo):
        raise ValueError(f"bounds must satisfy hi > lo, got {bounds}")
    return lo, hi


def _grid_axes(resolution, lo, hi, device) -> list:
    import torch

    res = np.broadcast_to(np.asarray(resolution), (3,))
    if (res < 2).any():
        raise ValueError(f"resolution must be >= 2 per axis, got {resolution}")
    return [torch.linspace(float(lo[a]), float(hi[a]), int(res[a]), device=device) for a in range(3)]


def evaluate_grid(sdf_fn, resolution=256, bounds=(-1.0, 1.0), chunk: int = 2**18,
                  device=None) -> np.ndarray:
    """Sample a torch SDF on the grid of ``marching_cubes_closed`` (indexing "ij").

    Args:
        sdf_fn: callable, points [M,3] float32 tensor on ``device`` -> [M] or [M,1] tensor.
        resolution: nodes per axis (int or 3 ints).
        bounds: (lo, hi), scalars or 3-vectors.
        chunk: at most this many points per call (bounds the memory of one forward pass).
        device: where to build the points (default: CPU).

    Returns:
        [R0,R1,R2] float32 numpy volume.
    """
    import torch  # imported here: loading meshes and metrics does not need torch

    lo, hi = grid_bounds(bounds)
    xs, ys, zs = _grid_axes(resolution, lo, hi, device)
    shape = (len(xs), len(ys), len(zs))
    # The (y, z) plane is built once; a chunk is a run of x-slabs, cut to ``chunk`` points.
    yz = torch.stack(torch.meshgrid(ys, zs, indexing="ij"), dim=-1).reshape(-1, 2)
    plane = len(yz)
    slabs = max(1, chunk // plane)
    out = np.empty(shape[0] * plane, dtype=np.float32)
    with torch.no_grad():
        _fill(sdf_fn, xs, yz, slabs, chunk, out)
    return out.reshape(shape)


def _fill(sdf_fn, xs, yz, slabs: int, chunk: int, out: np.ndarray) -> None:
    """Evaluate runs of ``slabs`` x-slabs (each the whole yz plane) into ``out``."""
    import torch

    plane = len(yz)
    for i0 in range(0, len(xs), slabs):
        x = xs[i0:i0 + slabs]
        pts = torch.cat([x.repeat_interleave(plane)[:, None], yz.repeat(len(x), 1)], dim=1)
        for s in range(0, len(pts), chunk):
            val = sdf_fn(pts[s:s + chunk])
            start = i0 * plane + s
            out[start:start + min(chunk, len(pts) - s)] = val.reshape(-1).float().cpu().numpy()


__all__ = ["evaluate_grid", "grid_bounds"]
