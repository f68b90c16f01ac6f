"""Convex polytopes from planes, their exact boolean union, and polygon export (BSP meshes).

Plane convention: a row (a, b, c, d) of ``planes [P,4]`` keeps the half-space
``a x + b y + c z + d <= 0`` (the inside of a BSP convex, where relu(plane) is 0).

Why a boolean union (METHODS.md 4.3): BSP-Net writes every convex as its own closed polytope;
the soup overlaps itself, so it is neither one surface nor manifold, and inside tests, Chamfer
and 3D printing all go wrong on it. ``union_mesh`` merges the polytopes with manifold3d's exact
boolean (symbolic perturbation for touching faces) into ONE oriented 2-manifold.

n-gons: the union comes back as triangles. ``merge_coplanar`` joins edge-adjacent triangles
that lie in the same plane into one polygon when the region has a single simple boundary loop
(every vertex of the loop kept, so neighbours share vertices and the polygon mesh stays
watertight); regions with holes or pinched loops stay as triangles. Such n-gons can be
non-convex and carry collinear vertices: importers that triangulate by fans (trimesh) then make
zero-area triangles; take the .ply for triangles.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

from fieldfit.errors import InputError

MIN_RADIUS = 1e-6  # a polytope whose largest inscribed ball is thinner than this is empty


def box_planes(box=(-1.0, 1.0)) -> np.ndarray:
    """The 6 planes [6,4] of the axis-aligned box (lo, hi) (scalars or 3-vectors)."""
    lo = np.broadcast_to(np.asarray(box[0], dtype=np.float64), (3,))
    hi = np.broadcast_to(np.asarray(box[1], dtype=np.float64), (3,))
    eye = np.eye(3)
    return np.concatenate([np.c_[eye, -hi], np.c_[-eye, lo]])


def _normalise(planes: np.ndarray) -> np.ndarray | None:
    """Unit-normal, de-duplicated planes [Q,4]; None when a degenerate plane empties the set."""
    p = np.asarray(planes, dtype=np.float64).reshape(-1, 4)
    norm = np.linalg.norm(p[:, :3], axis=1)
    flat = norm < 1e-12
    if np.any(flat & (p[:, 3] > 0)):  # 0 x + d <= 0 with d > 0: nothing is inside
        return None
    p = p[~flat] / norm[~flat, None]
    return np.unique(np.round(p, 12), axis=0)


def interior_point(planes: np.ndarray) -> tuple[np.ndarray, float]:
    """Chebyshev centre of {x: A x + d <= 0} for unit-normal planes [Q,4] by a small LP.

    Returns (centre [3], radius of the largest inscribed ball); radius 0 when infeasible.
    """
    a, d = planes[:, :3], planes[:, 3]
    cost = np.array([0.0, 0.0, 0.0, -1.0])  # maximise the radius r
    res = linprog(cost, A_ub=np.c_[a, np.ones(len(a))], b_ub=-d,
                  bounds=[(None, None)] * 3 + [(0, None)], method="highs")
    if res.status != 0:
        return np.zeros(3), 0.0
    return res.x[:3], float(res.x[3])


def _oriented_hull(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex hull (vertices [V,3], faces [F,3] counter-clockwise seen from outside)."""
    hull = ConvexHull(points)
    used, faces = np.unique(hull.simplices, return_inverse=True)
    faces = faces.reshape(-1, 3)
    v = points[used]
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    flip = np.einsum("ij,ij->i", n, hull.equations[:, :3]) < 0
    faces[flip] = faces[flip][:, ::-1]
    return v, faces


def convex_polytope(planes, box=(-1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Exact intersection of the half-spaces ``planes [P,4]`` and the box, as a closed mesh.

    Redundant, repeated and parallel planes are fine. An empty (or flat) intersection gives
    empty arrays ([0,3] float, [0,3] int).

    Returns:
        (vertices [V,3] float64, faces [F,3] int64), faces counter-clockwise seen from outside.
    """
    empty = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    p = _normalise(np.concatenate([np.asarray(planes, dtype=np.float64).reshape(-1, 4), box_planes(box)]))
    if p is None:
        return empty
    centre, radius = interior_point(p)
    if radius < MIN_RADIUS:
        return empty
    try:
        pts = HalfspaceIntersection(p, centre).intersections
        pts = np.unique(np.round(pts, 10), axis=0)  # >3 planes through one corner repeat it
        return _oriented_hull(pts)
    except (QhullError, ValueError):
        return empty


def _manifold_module():
    try:
        import manifold3d
    except ModuleNotFoundError:
        raise InputError("manifold3d", "the BSP union needs manifold3d", "pip install 'fieldfit[bsp]'") from None
    return manifold3d


def union_mesh(polytopes, with_labels: bool = False):
    """ONE watertight, manifold, outward-oriented mesh: the exact union of convex polytopes.

    Args:
        polytopes: list of (vertices [V,3], faces [F,3]) convex meshes; empty ones are skipped.
        with_labels: also return, per output face, the index of the polytope it comes from.

    Returns:
        (vertices [V,3] float64, faces [F,3] int64[, labels [F] int64]).
    """
    mf = _manifold_module()
    parts, ids = [], {}
    for k, (v, _) in enumerate(polytopes):
        if len(v) < 4:
            continue
        m = mf.Manifold.hull_points(np.asarray(v, dtype=np.float64)).as_original()
        if m.is_empty():
            continue
        ids[m.original_id()] = k
        parts.append(m)
    if not parts:
        out = (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        return out + (np.zeros(0, dtype=np.int64),) if with_labels else out
    mesh = mf.Manifold.batch_boolean(parts, mf.OpType.Add).to_mesh64()
    v = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    f = np.asarray(mesh.tri_verts, dtype=np.int64)
    if not with_labels:
        return v, f
    labels = np.zeros(len(f), dtype=np.int64)
    runs = np.asarray(mesh.run_index, dtype=np.int64) // 3
    for r, oid in enumerate(np.asarray(mesh.run_original_id)):
        labels[runs[r]:runs[r + 1]] = ids.get(int(oid), -1)
    return v, f, labels


def _face_groups(vertices, faces, cos_tol: float) -> np.ndarray:
    """Labels [F]: connected groups of edge-adjacent triangles with parallel normals."""
    v, f = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    edges = np.sort(np.stack([f, np.roll(f, -1, axis=1)], -1).reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(len(f)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    e, o = edges[order], owner[order]
    same = np.all(e[1:] == e[:-1], axis=1)
    a, b = o[:-1][same], o[1:][same]
    keep = np.einsum("ij,ij->i", n[a], n[b]) > 1.0 - cos_tol
    g = scipy.sparse.coo_matrix((np.ones(keep.sum()), (a[keep], b[keep])), shape=(len(f), len(f)))
    return scipy.sparse.csgraph.connected_components(g, directed=False)[1]


def _boundary_loop(tris: np.ndarray) -> list | None:
    """The single simple boundary loop of a triangle patch, in its winding; None otherwise."""
    he = np.stack([tris, np.roll(tris, -1, axis=1)], -1).reshape(-1, 2)
    keys = set(map(tuple, he))
    border = [(a, b) for a, b in map(tuple, he) if (b, a) not in keys]
    nxt = {}
    for a, b in border:
        if a in nxt:  # pinched: a vertex starts two boundary edges
            return None
        nxt[a] = b
    start = border[0][0]
    loop, cur = [start], nxt[start]
    while cur != start and len(loop) <= len(border):
        loop.append(cur)
        cur = nxt.get(cur, start)
    return loop if len(loop) == len(border) else None


def merge_coplanar(vertices, faces, cos_tol: float = 1e-9) -> list:
    """Polygons (lists of vertex indices, counter-clockwise) covering the triangle mesh.

    Coplanar edge-adjacent triangles become one n-gon when their region has one simple
    boundary; other regions keep their triangles. The vertex set is unchanged.
    """
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return []
    labels = _face_groups(vertices, f, cos_tol)
    polys = []
    for g in np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1]):
        loop = _boundary_loop(f[g]) if len(g) > 1 else None
        polys.extend([loop] if loop else f[g].tolist())
    return polys


def _atomic_bytes(path, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def write_polygon_obj(vertices, polygons, path) -> Path:
    """Write an OBJ whose faces are n-gons (1-based indices), atomically."""
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in np.asarray(vertices, dtype=np.float64)]
    lines += ["f " + " ".join(str(i + 1) for i in poly) for poly in polygons]
    return _atomic_bytes(path, ("\n".join(lines) + "\n").encode())


def palette(n: int) -> np.ndarray:
    """n distinct RGB colours [n,3] uint8 (golden-ratio hues)."""
    import colorsys

    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.65, 0.95) for h in hues]).reshape(-1, 3).__mul__(255).astype(np.uint8)


def write_face_colored_ply(vertices, faces, labels, path) -> Path:
    """A .ply whose faces are coloured by ``labels [F]`` (the convex each face comes from)."""
    import trimesh

    lab = np.asarray(labels, dtype=np.int64)
    colors = palette(int(lab.max()) + 1 if len(lab) else 1)[np.maximum(lab, 0)]
    mesh = trimesh.Trimesh(vertices, faces, face_colors=np.c_[colors, np.full(len(lab), 255, np.uint8)],
                           process=False)
    return _atomic_bytes(path, mesh.export(file_type="ply"))
