"""Convex polytopes from planes, their exact boolean union, and polygon export (BSP meshes).

Plane convention: a row (a, b, c, d) of ``planes [P,4]`` keeps the half-space
``a x + b y + c z + d <= 0`` (the inside of a BSP convex, where relu(plane) is 0).

Why a boolean union (METHODS.md 4.3): BSP-Net writes every convex as its own closed polytope;
the soup overlaps itself, so it is neither one surface nor manifold, and inside tests, Chamfer
and 3D printing all go wrong on it. ``union_mesh`` merges the polytopes with manifold3d's exact
boolean (symbolic perturbation for touching faces) into ONE oriented 2-manifold, then makes it
survive the vertex welding other tools do on load (mesh/weld.py).

n-gons: the union comes back as triangles. ``merge_coplanar`` joins edge-adjacent triangles
that lie in the same plane into polygons (every vertex kept, so neighbours share vertices and the
polygon mesh stays watertight), each written from a vertex where the fan of triangles that
importers make of an n-gon (trimesh does) covers it with no zero-area triangle.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError

from fieldfit.errors import InputError

from .weld import WELD_TOL, weld_safe

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


def oriented_hull(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        return oriented_hull(pts)
    except (QhullError, ValueError):
        return empty


def _manifold_module():
    try:
        import manifold3d
    except ModuleNotFoundError:
        raise InputError("manifold3d", "the BSP union needs manifold3d", "pip install 'fieldfit[bsp]'") from None
    return manifold3d


def boolean_union(polytopes, simplify: float | None = WELD_TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """manifold3d's union of convex polytopes, as it comes: closed and manifold by index only.

    Solids touching at a point or along an edge keep coincident vertices under different indices
    (``union_mesh`` makes that survive welding). ``simplify`` (a fraction of the bounding-box
    diagonal; None: not at all) lets manifold3d collapse edges that change the surface by less,
    which removes the slivers left where convexes share a plane.

    Args:
        polytopes: list of (vertices [V,3], faces [F,3]) convex meshes; empty ones are skipped.

    Returns:
        (vertices [V,3] float64, faces [F,3] int64, labels [F] int64: the polytope each face comes from, -1 none).
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
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    union = mf.Manifold.batch_boolean(parts, mf.OpType.Add)
    if simplify:
        box = np.asarray(union.bounding_box(), dtype=np.float64)
        union = union.simplify(simplify * float(np.linalg.norm(box[3:] - box[:3])))
    mesh = union.to_mesh64()
    v = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    f = np.asarray(mesh.tri_verts, dtype=np.int64).reshape(-1, 3)
    labels = np.full(len(f), -1, dtype=np.int64)
    runs = np.asarray(mesh.run_index, dtype=np.int64) // 3
    for r, oid in enumerate(np.asarray(mesh.run_original_id)):
        labels[runs[r]:runs[r + 1]] = ids.get(int(oid), -1)
    return v, f, labels


def union_mesh(polytopes, with_labels: bool = False):
    """ONE watertight, manifold, outward-oriented mesh: the union of convex polytopes, exact up to a few
    ``WELD_TOL`` (1e-5) of its bounding-box diagonal, that stays so when other tools weld its vertices.

    manifold3d keeps solids that touch at a point or along an edge (and the slivers of coplanar
    faces, which BSP convexes share) closed by giving coincident vertices different indices
    (``boolean_union``); ``weld_safe`` pulls touching solids a few ``WELD_TOL`` apart, as separate shells.

    Args:
        polytopes: list of (vertices [V,3], faces [F,3]) convex meshes; empty ones are skipped.
        with_labels: also return, per output face, the index of the polytope it comes from.

    Returns:
        (vertices [V,3] float64, faces [F,3] int64[, labels [F] int64]).
    """
    v, f, labels = boolean_union(polytopes)
    if len(f):
        v, f, kept = weld_safe(v, f)
        labels = labels[kept]
    return (v, f, labels) if with_labels else (v, f)


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


FAN_SINE = 1e-6  # every triangle of a written polygon's fan turns by at least this sine: none has zero area
MAX_SIDES = 64  # merging stops growing a polygon past this many vertices (a whole planar region may have more)


def _plane_coords(vertices, normal) -> np.ndarray:
    """[V,2] coordinates of the vertices in a plane orthogonal to the unit ``normal``."""
    nx, ny, nz = (float(c) for c in normal)
    x = np.array([0.0, nz, -ny]) if abs(nx) < 0.9 else np.array([-nz, 0.0, nx])  # normal x (1,0,0) or x (0,1,0)
    x /= np.linalg.norm(x)
    y = np.array([ny * x[2] - nz * x[1], nz * x[0] - nx * x[2], nx * x[1] - ny * x[0]])
    return np.asarray(vertices, dtype=np.float64) @ np.stack([x, y], 1)


def _fan_ok(uv: np.ndarray) -> int:
    """The start (index into the polygon ``uv [n,2]``, counter-clockwise) of its best clean fan; -1 if none."""
    n = len(uv)
    idx = (np.arange(n)[:, None] + np.arange(n)[None, :]) % n  # row s: the polygon started at s
    d = uv[idx[:, 1:]] - uv[idx[:, :1]]  # [n, n-1, 2] v0 -> vi for every start
    a, b = d[:, :-1], d[:, 1:]
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    sine = cross / np.maximum(np.hypot(a[..., 0], a[..., 1]) * np.hypot(b[..., 0], b[..., 1]), 1e-300)
    turn = np.arctan2(cross, (a * b).sum(-1)).sum(1)
    ok = (sine.min(1) > FAN_SINE) & (turn < 2 * np.pi - 1e-9)
    return int(np.argmax(np.where(ok, sine.min(1), -np.inf))) if ok.any() else -1


def fan_start(vertices, loop, normal) -> list | None:
    """``loop`` rotated so that the fan of triangles from its first vertex triangulates it cleanly.

    Importers split an n-gon into the fan (v0, vi, vi+1) (trimesh does). That fan covers the
    polygon exactly, with no zero-area triangle, when every fan triangle turns counter-clockwise
    about ``normal`` by a sine above ``FAN_SINE`` and their angles at v0 add up to less than a full
    turn (the polygon is star-shaped from v0). Of the starts that qualify, the one whose thinnest
    triangle is widest is taken.

    Args:
        vertices: [V,3] float; loop: vertex indices, counter-clockwise about ``normal`` [3].

    Returns:
        the rotated loop, or None when no vertex qualifies.
    """
    loop = [int(x) for x in loop]
    s = _fan_ok(_plane_coords(np.asarray(vertices, dtype=np.float64)[loop], normal))
    return None if s < 0 else loop[s:] + loop[:s]


def _boundary_loop(tris: np.ndarray) -> list | None:
    """The single simple boundary loop of a triangle patch, in its winding; None otherwise."""
    he = np.stack([tris, np.roll(tris, -1, axis=1)], -1).reshape(-1, 2)
    keys = set(map(tuple, he.tolist()))
    border = [(a, b) for a, b in keys if (b, a) not in keys]
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


def _merge_region(v, tris: np.ndarray, normal: np.ndarray) -> list:
    """Coplanar triangles as few fan-safe polygons: the whole region when its outline qualifies, else
    triangles merged greedily (longest shared edge first) while each polygon stays fan-safe."""
    used = np.unique(tris)
    uv = dict(zip(used.tolist(), _plane_coords(v[used], normal), strict=True))
    whole = _boundary_loop(tris)
    if whole is not None:
        s = _fan_ok(np.array([uv[i] for i in whole]))
        if s >= 0:
            return [whole[s:] + whole[:s]]
    pieces = {k: t for k, t in enumerate(tris.tolist())}
    owner = {(a, b): k for k, loop in pieces.items() for a, b in zip(loop, loop[1:] + loop[:1], strict=True)}
    shared = [(a, b) for a, b in owner if a < b and (b, a) in owner]
    if shared:
        e = np.asarray(shared)
        shared = [shared[k] for k in np.argsort(-np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1), kind="stable")]
    for a, b in shared:
        p, q = owner[(a, b)], owner[(b, a)]
        lp, lq = pieces[p], pieces[q]
        if p == q or len(lp) + len(lq) - 2 > MAX_SIDES:
            continue
        i, j = lp.index(b), lq.index(a)
        joined = lp[i:] + lp[:i] + (lq[j:] + lq[:j])[1:-1]  # b .. a, then a .. b without its ends
        if len(set(joined)) != len(joined):  # the pieces share more than this edge
            continue
        s = _fan_ok(np.array([uv[k] for k in joined]))
        if s < 0:
            continue
        pieces[p] = joined[s:] + joined[:s]
        del pieces[q]
        for e in zip(lq, lq[1:] + lq[:1], strict=True):
            owner[e] = p
        del owner[(a, b)], owner[(b, a)]
    return list(pieces.values())


def merge_coplanar(vertices, faces, cos_tol: float = 1e-9) -> list:
    """Polygons (lists of vertex indices, counter-clockwise) covering the triangle mesh.

    Edge-adjacent coplanar triangles are merged into n-gons that importers can split safely:
    each starts at a vertex from which the fan of triangles covers it with no zero-area triangle
    (``fan_start``), so the .obj loads as the same closed surface as the .ply, welded or not.
    Triangles that fit no such polygon stay triangles. The vertex set is unchanged.
    """
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return []
    v = np.asarray(vertices, dtype=np.float64)
    labels = _face_groups(v, f, cos_tol)
    area_normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    polys = []
    for g in np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1]):
        if len(g) == 1:
            polys.append(f[g[0]].tolist())
            continue
        normal = area_normal[g].sum(0)
        polys.extend(_merge_region(v, f[g], normal / max(np.linalg.norm(normal), 1e-300)))
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
