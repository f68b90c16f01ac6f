"""Meshes that stay closed 2-manifolds when another tool welds their vertices.

Most tools merge vertices that lie (nearly) on top of each other when they load a mesh:
trimesh's default ``process=True`` rounds positions to 1e-8, MeshLab merges close vertices,
Blender merges by distance. A mesh that is closed only because two coincident vertices keep
different indices (two solids touching at a point or along an edge, zero-length edges left by
a boolean) falls apart there: non-manifold edges, pinched vertices, collapsed faces.

``weld_safe`` makes a closed, oriented mesh robust to that: it welds the mesh itself, drops
what collapses, gives every fan of faces around a pinched vertex its own vertex (and every edge
the solids still share a middle vertex per solid), and moves those copies a little apart, each
into its own cone, so distinct vertices end up farther apart than ``WELD_TOL`` of the bounding-box
diagonal. A weld at any smaller tolerance then changes nothing. ``load_welded`` and
``reload_report`` load a file as those tools do and say what they would see.

Conventions: vertices [V,3] float, faces [F,3] int, counter-clockwise seen from outside.
A *corner* is (face, slot): corner 3k+i sits at vertex faces[k, i]. A *fan* is a set of
corners at one vertex joined through the edges they share; a 2-manifold has one fan per vertex.
"""

from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from scipy.spatial import cKDTree

from .topology import component_count, edge_stats, euler_characteristic, signed_volume

WELD_TOL = 1e-5  # relative to the bounding-box diagonal: distinct vertices end up farther apart than this
COLLAPSE = 4.0  # weld_safe first merges vertices closer than COLLAPSE * tol ...
SHIFT = 2.0  # ... then moves the copies of a pinched vertex SHIFT * tol apart


def diagonal(vertices) -> float:
    """Bounding-box diagonal of the vertices (0 for fewer than two)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    return float(np.linalg.norm(v.max(axis=0) - v.min(axis=0))) if len(v) > 1 else 0.0


def merge_close(vertices, faces, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices closer than ``radius`` (chains merge too), as a weld by distance does.

    Each group keeps the position of its lowest-index vertex, so two vertices of different
    groups stay more than ``radius`` apart. Returns (vertices [V',3], faces [F,3] reindexed);
    faces that collapse keep their repeated indices (``drop_collapsed`` removes them).
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    used = np.unique(f)
    group = np.arange(len(used))
    if radius > 0 and len(used) > 1:
        pairs = cKDTree(v[used]).query_pairs(radius, output_type="ndarray")
        if len(pairs):
            g = scipy.sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                                        shape=(len(used), len(used)))
            group = scipy.sparse.csgraph.connected_components(g, directed=False)[1]
    first = np.full(group.max() + 1 if len(group) else 0, len(used), dtype=np.int64)
    np.minimum.at(first, group, np.arange(len(used)))  # lowest index of each group
    rank = np.argsort(np.argsort(first))
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = rank[group]
    return v[used[np.sort(first)]], remap[f]


def drop_collapsed(faces) -> np.ndarray:
    """Indices of the faces to keep: no repeated vertex, and face pairs that cover each other cancelled.

    Two faces on the same three vertices with opposite windings are a wall between two solids
    that touch (both go); faces repeated with one winding are kept once.
    """
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    ok = np.nonzero((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))[0]
    if len(ok) == 0:
        return ok
    g = f[ok]
    s = np.sort(g, axis=1)
    # +1 when (a, b, c) is an even permutation of its sorted order, -1 when odd
    even = (g[:, 0] == s[:, 0]) & (g[:, 1] == s[:, 1]) | (g[:, 1] == s[:, 0]) & (g[:, 2] == s[:, 1]) | \
           (g[:, 2] == s[:, 0]) & (g[:, 0] == s[:, 1])
    sign = np.where(even, 1, -1)
    _, inv = np.unique(s, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    net = np.bincount(inv, weights=sign).astype(np.int64)
    # per triple, the first face whose winding wins the count (none when the windings cancel)
    wins = np.nonzero((net[inv] != 0) & (np.sign(net[inv]) == sign))[0]
    _, first = np.unique(inv[wins], return_index=True)
    keep = np.sort(wins[first])
    return ok[keep]


def _pair_around_edge(v, f, he: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of half-edges (ids 3k+i) around one non-manifold edge that bound the same solid wedge.

    The faces are sorted by angle about the edge; each face is paired with its neighbour on
    the side its solid lies (behind its outward normal). Only mutual, oppositely directed
    pairs are returned.
    """
    a, b = f[he[0] // 3, he[0] % 3], f[he[0] // 3, (he[0] % 3 + 1) % 3]
    e = v[b] - v[a]
    e /= max(np.linalg.norm(e), 1e-300)
    x = np.cross(e, [1.0, 0.0, 0.0] if abs(e[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(e, x)
    k, i = he // 3, he % 3
    start, end, apex = f[k, i], f[k, (i + 1) % 3], f[k, (i + 2) % 3]
    d = v[apex] - v[a]
    d -= np.outer(d @ e, e)
    normal = np.cross(v[end] - v[start], v[apex] - v[start])
    angle = np.arctan2(d @ y, d @ x)
    ccw = np.einsum("ij,ij->i", np.cross(e, d), -normal) > 0  # its solid lies counter-clockwise about e
    order = np.argsort(angle)
    pos = np.empty(len(he), dtype=np.int64)
    pos[order] = np.arange(len(he))
    partner = order[(pos + np.where(ccw, 1, -1)) % len(he)]
    pairs = []
    for j in range(len(he)):
        p = partner[j]
        if j < p and partner[p] == j and start[j] == end[p]:
            pairs.append((int(he[j]), int(he[p])))
    return pairs


def fans(vertices, faces) -> np.ndarray:
    """Fan label [3F] of every corner: corners at one vertex joined through the edges they share.

    Manifold edges (two faces, opposite directions) join their faces; around a non-manifold
    edge the faces are paired by the solid wedge they bound (``_pair_around_edge``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    n_c = 3 * len(f)
    if n_c == 0:
        return np.zeros(0, dtype=np.int64)
    start = f.reshape(-1)
    end = f[:, [1, 2, 0]].reshape(-1)
    n = int(f.max()) + 1
    key = np.minimum(start, end) * n + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    uk, first, count = np.unique(key[order], return_index=True, return_counts=True)
    two = count == 2
    h1, h2 = order[first[two]], order[first[two] + 1]
    ok = start[h1] == end[h2]  # opposite directions
    pairs = [np.stack([h1[ok], h2[ok]], 1)]
    for j in np.nonzero(count > 2)[0]:
        found = _pair_around_edge(v, f, order[first[j]:first[j] + count[j]])
        if found:
            pairs.append(np.asarray(found, dtype=np.int64))
    p = np.concatenate(pairs)
    nxt = (p // 3) * 3 + (p % 3 + 1) % 3  # the corner at the end vertex of each half-edge
    # half-edge h1 = a->b, h2 = b->a: corner(h1) and next(h2) sit at a, next(h1) and corner(h2) at b
    rows = np.concatenate([p[:, 0], nxt[:, 0]])
    cols = np.concatenate([nxt[:, 1], p[:, 1]])
    g = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_c, n_c))
    return scipy.sparse.csgraph.connected_components(g, directed=False)[1]


def split_pinches(vertices, faces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vertex per fan: a vertex where several solids (or sheets) meet gets one copy each.

    Returns:
        (vertices [V',3], faces [F,3], source [V'] index of the input vertex each one copies).
        Copies sit exactly where their source is (``weld_safe`` moves them apart).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return v, f, np.arange(len(v))
    label = fans(v, f)
    vert = f.reshape(-1)
    # one new vertex per (vertex, fan); fans never span two vertices, so the fan label alone is the key
    _, first, new = np.unique(label, return_index=True, return_inverse=True)
    source = vert[first]
    order = np.argsort(source, kind="stable")  # keep the copies of a vertex together, in vertex order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return v[source[order]], rank[new.reshape(-1)].reshape(-1, 3), source[order]


def split_edges(vertices, faces) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges still shared by more than two faces after ``split_pinches``, split at their middle, one middle per solid.

    Solids that touch along an edge whose two end vertices are each a single fan (the surface reaches
    around both ends: a box standing on the touching edge of two others) keep that edge: no vertex
    split separates them. Each pair of faces bounding one solid wedge about the edge (``_pair_around_edge``)
    is cut in two at the edge's middle, with a middle vertex of its own.

    Returns:
        (vertices [V',3], faces [F',3], parent [F'] index of the input face each face is part of,
        middles [K] indices of the new vertices, which sit exactly at the edge's middle).
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3).copy()
    parent = np.arange(len(f))
    middles = []
    for _ in range(8):  # a face on two such edges is cut once per round
        groups = _nonmanifold_edges(f)
        if not groups:
            break
        cut, new_v, new_f, new_parent = set(), [], [], []
        for he in groups:
            for h1, h2 in _pair_around_edge(v, f, he):
                if h1 // 3 in cut or h2 // 3 in cut:
                    continue
                m = len(v) + len(new_v)
                a, b = f[h1 // 3, h1 % 3], f[h1 // 3, (h1 % 3 + 1) % 3]
                new_v.append(0.5 * (v[a] + v[b]))
                for h in (h1, h2):
                    k, i = h // 3, h % 3
                    start, end, apex = f[k, i], f[k, (i + 1) % 3], f[k, (i + 2) % 3]
                    f[k] = (start, m, apex)
                    new_f.append((m, end, apex))
                    new_parent.append(parent[k])
                    cut.add(k)
        if not new_v:
            break
        middles.extend(range(len(v), len(v) + len(new_v)))
        v = np.concatenate([v, np.asarray(new_v)])
        f = np.concatenate([f, np.asarray(new_f, dtype=np.int64)])
        parent = np.concatenate([parent, np.asarray(new_parent, dtype=np.int64)])
    return v, f, parent, np.asarray(middles, dtype=np.int64)


def _nonmanifold_edges(f: np.ndarray) -> list:
    """Half-edge ids (3k+i) of every edge used by more than two faces, one array per edge."""
    start, end = f.reshape(-1), f[:, [1, 2, 0]].reshape(-1)
    n = int(f.max()) + 1 if len(f) else 1
    key = np.minimum(start, end) * n + np.maximum(start, end)
    order = np.argsort(key, kind="stable")
    _, first, count = np.unique(key[order], return_index=True, return_counts=True)
    return [order[first[j]:first[j] + count[j]] for j in np.nonzero(count > 2)[0]]


def fan_directions(vertices, faces, which: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions at the vertices ``which`` [K]: into the solid, towards the faces, and the shortest edge.

    Returns:
        (inward [K,3]: minus the angle-weighted normal of the faces around the vertex, unit (points just
        behind it along this direction lie inside the solid; a flat fan, whose normals cancel, gets
        ``towards`` instead), towards [K,3]: the unit mean direction from the vertex to its ring,
        shortest [K]: its shortest edge).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    p = v[f]  # [F,3,3] corner positions
    e1, e2 = p[:, [1, 2, 0]] - p, p[:, [2, 0, 1]] - p  # the two edges leaving each corner
    l1, l2 = (np.maximum(np.linalg.norm(e, axis=2), 1e-300) for e in (e1, e2))
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    cos = np.einsum("fcj,fcj->fc", e1, e2) / (l1 * l2)
    weighted = np.arccos(np.clip(cos, -1.0, 1.0))[..., None] * n[:, None, :]  # [F,3,3]
    slot = np.full(len(v), -1, dtype=np.int64)
    slot[which] = np.arange(len(which))
    at = slot[f.reshape(-1)]
    mine = at >= 0
    normal, ring = np.zeros((len(which), 3)), np.zeros((len(which), 3))
    shortest = np.full(len(which), np.inf)
    np.add.at(normal, at[mine], weighted.reshape(-1, 3)[mine])
    np.add.at(ring, at[mine], (e1 / l1[..., None] + e2 / l2[..., None]).reshape(-1, 3)[mine])
    np.minimum.at(shortest, at[mine], np.minimum(l1, l2).reshape(-1)[mine])
    ring /= np.maximum(np.linalg.norm(ring, axis=1, keepdims=True), 1e-300)
    d = -normal
    flat = np.linalg.norm(d, axis=1) < 1e-9
    d[flat] = ring[flat]
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-300), ring, shortest


def _cone(v, f, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fan of faces at vertex ``w`` as a cone: unit rays a, b [T,3] of each face (counter-clockwise seen from
    outside), unit face normals [T,3], ring vertex ids [T,2] of the rays, and the angle-weighted normal [3]."""
    k, i = np.nonzero(f == w)
    a, b = f[k, (i + 1) % 3], f[k, (i + 2) % 3]
    ra, rb = v[a] - v[w], v[b] - v[w]
    ra /= np.maximum(np.linalg.norm(ra, axis=1, keepdims=True), 1e-300)
    rb /= np.maximum(np.linalg.norm(rb, axis=1, keepdims=True), 1e-300)
    n = np.cross(ra, rb)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    angle = np.arccos(np.clip(np.einsum("ij,ij->i", ra, rb), -1.0, 1.0))
    return ra, rb, n, np.stack([a, b], 1), (angle[:, None] * n).sum(0)


def _outside(cone, u: np.ndarray) -> bool:
    """Whether the direction ``u`` [3] (unit) from the cone's apex leaves its solid: the sign of ``u`` against the
    normal of the nearest feature (a face, a ray between two faces, the apex), as the pseudo-normal test does."""
    ra, rb, n, ring, apex = cone
    dot = n @ u
    flat = u[None, :] - dot[:, None] * n  # u in each face's plane
    within = (np.einsum("ij,ij->i", np.cross(ra, flat), n) >= 0) & (np.einsum("ij,ij->i", np.cross(flat, rb), n) >= 0)
    face_d = np.where(within, np.abs(dot), np.inf)
    rays = np.concatenate([ra, rb])
    ids = ring.T.reshape(-1)
    along = rays @ u
    ray_d = np.where(along > 0, np.sqrt(np.maximum(0.0, 1.0 - along**2)), 1.0)
    if face_d.min() <= min(ray_d.min(), 1.0):
        return bool(dot[np.argmin(face_d)] > 0)
    if ray_d.min() < 1.0:
        r = ids[np.argmin(ray_d)]
        return bool(n[(ring[:, 0] == r) | (ring[:, 1] == r)].sum(0) @ u > 0)
    return bool(apex @ u > 0)


def _probe(cone) -> np.ndarray:
    """A direction [3] strictly inside one face of the cone (the bisector of its widest face)."""
    ra, rb = cone[0], cone[1]
    t = np.argmin(np.einsum("ij,ij->i", ra, rb))  # the widest angle
    d = ra[t] + rb[t]
    return d / max(np.linalg.norm(d), 1e-300)


def apart_directions(vertices, faces, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions [K,3] that move the coincident copies ``which`` [K] away from each other, and their
    shortest edges [K].

    Each fan is moved into the region its cone closes off from the other fans: into its own solid
    where solids touch (the other fans lie outside it), out of the solid where the empty space touches
    itself (two notches meeting at a point: the other fans lie inside its solid, and moving inwards
    would push the cones through each other).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    d, _, shortest = fan_directions(v, f, which)
    _, group = np.unique(v[which], axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    for members in np.split(order, np.cumsum(np.bincount(group))[:-1]):
        if len(members) < 2:
            continue
        cones = [_cone(v, f, int(which[m])) for m in members]
        probes = [_probe(c) for c in cones]
        for x, m in enumerate(members):
            inside = sum(not _outside(cones[x], probes[y]) for y in range(len(members)) if y != x)
            if 2 * inside > len(members) - 1:  # the others lie in its solid: move out of it
                d[m] = -d[m]
    return d, shortest


def pull_apart(vertices, faces, which: np.ndarray, step: float, gap: float) -> np.ndarray:
    """Coincident copies ``which`` [K] moved ``step`` apart (``apart_directions``; at most a quarter of their
    shortest edge).

    A moved vertex still within ``gap`` of another vertex is moved again, twice and four times as far
    (with the same cap). Returns the new vertices [V,3].
    """
    v = np.asarray(vertices, dtype=np.float64)
    which = np.asarray(which, dtype=np.int64)
    if len(which) == 0:
        return v
    d, shortest = apart_directions(v, faces, which)
    used = np.unique(np.asarray(faces, dtype=np.int64))
    scale = np.ones(len(which))
    moved = v
    for _ in range(3):
        moved = v.copy()
        moved[which] += np.minimum(step * scale, 0.25 * shortest)[:, None] * d
        pairs = cKDTree(moved[used]).query_pairs(gap, output_type="ndarray")
        close = np.isin(which, used[pairs.reshape(-1)])
        if not close.any():
            break
        scale[close] *= 2.0
    return moved


def weld_safe(vertices, faces, tol: float = WELD_TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed oriented mesh rewritten so that welding its vertices (up to ``tol``) changes nothing.

    Vertices closer than ``COLLAPSE * tol`` (of the bounding-box diagonal) are merged, collapsed
    faces dropped and covering face pairs cancelled; every fan around a pinched vertex (solids
    touching at a point or along an edge) gets its own vertex (``split_pinches``), an edge the
    solids still share is cut at its middle, one middle per solid (``split_edges``), and each copy
    is moved ``SHIFT * tol`` (at most a quarter of its shortest edge) away from the others
    (``apart_directions``). The surface moves by less than ``COLLAPSE * tol``. Solids touching at a
    point or along an edge end up a few ``tol`` apart, as separate shells; where the empty space
    touches itself at a point (two notches meeting corner to corner) the solid closes over it. A
    mesh with no vertices that close and no pinches comes back unchanged.

    Returns:
        (vertices [V',3] float64, faces [F',3] int64, kept [F'] index of the input face each face comes from).
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    diag = diagonal(v[np.unique(f)]) if len(f) else 0.0
    if diag == 0.0:
        return v, f, np.arange(len(f))
    v, f = merge_close(v, f, COLLAPSE * tol * diag)
    kept = drop_collapsed(f)
    v, f, source = split_pinches(v, f[kept])
    copies = np.nonzero(np.bincount(source)[source] > 1)[0]
    v, f, parent, middles = split_edges(v, f)
    v = pull_apart(v, f, np.concatenate([copies, middles]), SHIFT * tol * diag, tol * diag)
    return v, f, kept[parent]


def is_closed_manifold(vertices, faces) -> bool:
    """Every edge shared by two faces in opposite directions and every vertex a single fan."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return False
    st = edge_stats(f)
    if st["boundary"] or st["nonmanifold"] or st["misoriented"]:
        return False
    return len(np.unique(fans(vertices, f))) == len(np.unique(f))


def min_separation(vertices, faces) -> float:
    """Smallest distance between two distinct vertices used by the faces (inf for fewer than two)."""
    v = np.asarray(vertices, dtype=np.float64)[np.unique(np.asarray(faces, dtype=np.int64))]
    if len(v) < 2:
        return float("inf")
    return float(cKDTree(v).query(v, k=2)[0][:, 1].min())


def load_welded(path, tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mesh in ``path`` as a tool that merges close vertices sees it.

    Args:
        path: any mesh file trimesh reads (n-gons of .obj are fanned into triangles, as trimesh does).
        tol: None: trimesh's default load (``process=True``: positions rounded to 1e-8 and merged;
            faces that collapse are kept, with their repeated indices). A number: vertices closer
            than ``tol`` times the bounding-box diagonal merged, and the faces that collapse
            dropped (a merge by distance, as MeshLab and Blender do).

    Returns:
        (vertices [V,3] float64, faces [F,3] int64).
    """
    import trimesh

    mesh = trimesh.load(Path(path), process=tol is None, force="mesh")
    v, f = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    return (v, f) if tol is None else merge_by_distance(v, f, tol * diagonal(v))


def merge_by_distance(vertices, faces, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """What MeshLab's merge of close vertices and Blender's merge by distance do: vertices closer than ``radius``
    (absolute) merged (``merge_close``), the faces that collapse dropped. Returns (vertices [V',3], faces [F',3])."""
    v, f = merge_close(vertices, faces, radius)
    return v, f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]


def mesh_report(vertices, faces) -> dict:
    """What a tool finds in a triangle mesh: 'faces', 'closed' (``is_closed_manifold``), 'volume' (signed;
    > 0 when the faces point outwards), 'euler' (V - E + F), 'shells' (connected components) and 'ok'
    (closed with positive volume)."""
    closed = is_closed_manifold(vertices, faces)
    volume = signed_volume(vertices, faces)
    return {"faces": int(len(faces)), "closed": bool(closed), "volume": volume,
            "euler": int(euler_characteristic(vertices, faces)), "shells": int(component_count(vertices, faces)),
            "ok": bool(closed and volume > 0)}


def reload_report(path, tol: float = WELD_TOL) -> dict:
    """``path`` loaded as other tools load it: 'trimesh' (its default load) and 'merged' (vertices closer than
    ``tol`` of the diagonal merged), each a ``mesh_report``."""
    return {"trimesh": mesh_report(*load_welded(path)), "merged": mesh_report(*load_welded(path, tol))}


__all__ = ["COLLAPSE", "SHIFT", "WELD_TOL", "apart_directions", "diagonal", "drop_collapsed", "fan_directions", "fans",
           "is_closed_manifold", "load_welded", "merge_by_distance", "merge_close", "mesh_report", "min_separation",
           "pull_apart", "reload_report", "split_edges", "split_pinches", "weld_safe"]
