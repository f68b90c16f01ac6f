"""Small, safe repairs: merge identical vertices, drop degenerate and duplicate faces.

Merging only joins vertices closer than 1e-9 of the bounding-box diagonal, so geometry is
unchanged for any practical purpose and no real feature collapses.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from scipy.spatial import cKDTree


def merge_duplicate_vertices(vertices: np.ndarray, faces: np.ndarray,
                             rel_tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, int]:
    """Merge vertices that coincide up to a tiny tolerance and drop unreferenced ones.

    STL files and some exporters repeat a vertex per face, sometimes with last-digit
    differences (1e-16 apart), so exact equality is not enough; ``rel_tol`` times the
    bounding-box diagonal is far below any real feature size.

    Args:
        vertices: [V,3] float.
        faces: [F,3] int.
        rel_tol: merge radius relative to the bounding-box diagonal (0: bit-identical only).

    Returns:
        (vertices [V',3] float64, faces [F,3] int64, number of vertices merged away).
        Each group keeps the position and order of its first vertex.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    used = np.unique(f)
    vu = v[used] + 0.0  # +0.0 turns -0.0 into 0.0
    if len(vu) == 0:
        return vu, f, 0
    _, first, labels = np.unique(vu, axis=0, return_index=True, return_inverse=True)
    labels = labels.reshape(-1)
    uniq = vu[first]
    radius = rel_tol * float(np.linalg.norm(vu.max(axis=0) - vu.min(axis=0)))
    if radius > 0 and len(uniq) > 1:
        pairs = cKDTree(uniq).query_pairs(radius, output_type="ndarray")
        if len(pairs):
            g = scipy.sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                                        shape=(len(uniq), len(uniq)))
            _, group = scipy.sparse.csgraph.connected_components(g, directed=False)
            labels = group[labels]
    # Representative of each group: its lowest original index.
    n_groups = int(labels.max()) + 1
    rep = np.full(n_groups, len(vu), dtype=np.int64)
    np.minimum.at(rep, labels, np.arange(len(vu)))
    order = np.argsort(rep)
    rank = np.empty_like(order)
    rank[order] = np.arange(n_groups)
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = rank[labels]
    return vu[rep[order]], remap[f], int(len(vu) - n_groups)


def drop_bad_faces(faces: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop faces that repeat a vertex index and faces that duplicate another face.

    Two faces are duplicates when they use the same three vertices, whatever the order or
    orientation; the first one is kept. Zero-area faces with three distinct vertices are kept:
    removing them would open holes in otherwise closed meshes.

    Args:
        faces: [F,3] int.

    Returns:
        (faces [F',3] int64, number degenerate, number duplicate).
    """
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    degen = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    f = f[~degen]
    if len(f) == 0:
        return f, int(degen.sum()), 0
    s = np.sort(f, axis=1)
    n = int(s.max()) + 1
    if n < 2**21:  # three indices packed into one int64: much faster np.unique
        _, first = np.unique((s[:, 0] * n + s[:, 1]) * n + s[:, 2], return_index=True)
    else:
        _, first = np.unique(s, axis=0, return_index=True)
    keep = np.zeros(len(f), dtype=bool)
    keep[first] = True
    return f[keep], int(degen.sum()), int(len(f) - keep.sum())


def remove_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses; returns (vertices [V',3], faces [F,3] reindexed)."""
    v = np.asarray(vertices)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    used = np.unique(f)
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def clean(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """merge_duplicate_vertices, then drop_bad_faces, then remove_unreferenced.

    Returns:
        (vertices [V',3] float64, faces [F',3] int64, counts dict with keys
        'merged_vertices', 'degenerate_faces', 'duplicate_faces').
    """
    v, f, merged = merge_duplicate_vertices(vertices, faces)
    f, n_degen, n_dup = drop_bad_faces(f)
    v, f = remove_unreferenced(v, f)
    return v, f, dict(merged_vertices=merged, degenerate_faces=n_degen, duplicate_faces=n_dup)
