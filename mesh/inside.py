"""Inside/outside and signed distance for imperfect meshes, via the generalized winding number.

Why not ray parity: counting crossings along one ray is exact only for closed, manifold,
self-intersection-free meshes. Real inputs have holes (scans), duplicated or missing faces,
non-manifold edges and several overlapping parts; a single ray that slips through a hole or
grazes an edge flips the answer, and the errors come in streaks that a network then learns.

The generalized winding number w(p) = (1 / 4 pi) * sum of signed solid angles of all triangles
seen from p (Jacobson et al. 2013) is exactly 1 inside and 0 outside a closed outward-oriented
mesh, and degrades smoothly elsewhere: a small hole only moves w near the hole, so w >= 0.5
remains a good inside test. libigl's fast winding number (Barill et al. 2018) evaluates it in
O(log F) per point with a tree of far-field expansions and exact near-field sums.

Signs: ``signed_distance`` is NEGATIVE inside (SDF convention of the whole project).
"""

import os
from concurrent.futures import ThreadPoolExecutor

import igl
import numpy as np

CHUNK = 1 << 16  # points per library call: bounds peak memory, balances the threads


def _morton_order(p: np.ndarray, bits: int = 6) -> np.ndarray:
    """Permutation [N] that sorts points along a Z-order curve of a 2^bits grid.

    Tree queries on spatially sorted points reuse the same tree nodes from one point to the
    next; on 1M uniform points this makes distance queries about 3-4x faster.
    """
    lo, hi = p.min(axis=0), p.max(axis=0)
    cell = np.clip(((p - lo) / np.maximum(hi - lo, 1e-30) * (1 << bits)).astype(np.int64),
                   0, (1 << bits) - 1)
    key = np.zeros(len(p), dtype=np.int64)
    for b in range(bits):
        for axis in range(3):
            key |= ((cell[:, axis] >> b) & 1) << (3 * b + axis)
    return np.argsort(key, kind="stable")


def _map_chunks(fn, p: np.ndarray, chunk: int) -> np.ndarray:
    """fn over spatially sorted chunks of p [N,3], on up to os.cpu_count() threads.

    libigl releases the GIL inside its queries, so threads run truly in parallel.
    """
    out = np.empty(len(p), dtype=np.float64)
    if len(p) == 0:
        return out
    order = _morton_order(p) if len(p) > chunk else np.arange(len(p))
    ps = p[order]
    starts = range(0, len(p), chunk)
    workers = min(len(starts), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as ex:
            parts = list(ex.map(lambda s: fn(ps[s:s + chunk]), starts))
    else:
        parts = [fn(ps[s:s + chunk]) for s in starts]
    out[order] = np.concatenate(parts)
    return out


def _mesh_arrays(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    v = np.ascontiguousarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        raise ValueError("mesh has no faces")
    return v, f


def _points(points) -> np.ndarray:
    p = np.ascontiguousarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape [N,3], got {p.shape}")
    return p


class WindingNumber:
    """Reusable fast-winding-number tree for one mesh (build once, query many times).

    Args:
        vertices: [V,3] float.
        faces: [F,3] int, counter-clockwise seen from outside.
    """

    def __init__(self, vertices, faces):
        v, f = _mesh_arrays(vertices, faces)
        self._bvh = igl.FastWindingNumberBVH()
        self._bvh.init(v, f)

    def __call__(self, points, chunk: int = CHUNK) -> np.ndarray:
        """Winding numbers [N] float64 of points [N,3] (about 1 inside, 0 outside)."""
        return _map_chunks(self._bvh.winding_number, _points(points), chunk)


class Distance:
    """Reusable AABB tree for unsigned point-to-triangle distances of one mesh."""

    def __init__(self, vertices, faces):
        self._v, self._f = _mesh_arrays(vertices, faces)
        self._tree = igl.AABB()
        self._tree.init(self._v, self._f)

    def __call__(self, points, chunk: int = CHUNK) -> np.ndarray:
        """Euclidean distances [N] float64 from points [N,3] to the nearest triangle."""
        d2 = _map_chunks(lambda q: self._tree.squared_distance(self._v, self._f, q)[0],
                         _points(points), chunk)
        return np.sqrt(np.maximum(d2, 0.0))


def winding_number(points, vertices, faces) -> np.ndarray:
    """Generalized winding number of each point (fast approximation, exact near the surface).

    Args:
        points: [N,3] float.
        vertices: [V,3] float.
        faces: [F,3] int.

    Returns:
        [N] float64; ~1 inside, ~0 outside a closed outward-oriented mesh, fractional near holes.
    """
    return WindingNumber(vertices, faces)(points)


def inside(points, vertices, faces) -> np.ndarray:
    """Inside test robust to holes, soups and non-manifold edges: winding number >= 0.5.

    Args:
        points: [N,3] float.
        vertices: [V,3] float.
        faces: [F,3] int.

    Returns:
        [N] bool.
    """
    return winding_number(points, vertices, faces) >= 0.5


def signed_distance(points, vertices, faces) -> np.ndarray:
    """Distance to the nearest triangle, negative inside (inside = winding number >= 0.5).

    Args:
        points: [N,3] float.
        vertices: [V,3] float.
        faces: [F,3] int.

    Returns:
        [N] float64 signed distances, same units as the vertices.

    Examples:
        >>> import trimesh
        >>> ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        >>> sd = signed_distance(np.zeros((1, 3)), ball.vertices, ball.faces)  # about -radius
        >>> bool(-0.5 < sd[0] < -0.49)
        True
    """
    dist = Distance(vertices, faces)(points)
    w = WindingNumber(vertices, faces)(points)
    return np.where(w >= 0.5, -dist, dist)
