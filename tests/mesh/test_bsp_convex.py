"""mesh/convex.py: exact half-space intersection, boolean union, n-gon and coloured export."""

import numpy as np
import pytest
import trimesh

from fieldfit.mesh.convex import (
    box_planes,
    convex_polytope,
    merge_coplanar,
    union_mesh,
    write_face_colored_ply,
    write_polygon_obj,
)
from fieldfit.mesh.inside import inside
from fieldfit.mesh.topology import component_count, is_watertight, signed_volume

pytest.importorskip("manifold3d")


def box(lo, hi):
    """Planes [6,4] of an axis-aligned box (inside: n.x + d <= 0)."""
    return box_planes((np.asarray(lo, float), np.asarray(hi, float)))


def corners(lo, hi):
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def same_points(a, b, tol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    return len(a) == len(b) and np.all(np.min(np.linalg.norm(a[:, None] - b[None], axis=2), axis=1) < tol)


def test_box_vertices_and_volume():
    lo, hi = [-0.3, -0.2, 0.1], [0.5, 0.4, 0.7]
    v, f = convex_polytope(box(lo, hi))
    assert same_points(v, corners(lo, hi))
    assert signed_volume(v, f) == pytest.approx(0.8 * 0.6 * 0.6, rel=1e-9)
    assert is_watertight(v, f)


def test_tetrahedron_vertices_and_volume():
    a = 0.7
    planes = np.array([[-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 0], [1, 1, 1, -a]], float)
    v, f = convex_polytope(planes)
    assert same_points(v, [[0, 0, 0], [a, 0, 0], [0, a, 0], [0, 0, a]])
    assert signed_volume(v, f) == pytest.approx(a**3 / 6, rel=1e-9)  # > 0: outward faces
    assert len(f) == 4
    assert is_watertight(v, f)


def test_redundant_parallel_and_scaled_planes_change_nothing():
    lo, hi = [-0.5] * 3, [0.5] * 3
    extra = np.array([[3, 0, 0, -1.5],  # x <= 0.5 again, scaled
                      [1, 0, 0, -0.9],  # parallel, redundant
                      [1, 1, 0, -5.0],  # far away
                      [0, 0, 0, -1.0]])  # no normal, always satisfied
    v, f = convex_polytope(np.concatenate([box(lo, hi), extra, box(lo, hi)]))
    assert same_points(v, corners(lo, hi))
    assert signed_volume(v, f) == pytest.approx(1.0)


def test_box_bounds_the_polytope_and_empty_cases():
    v, f = convex_polytope(np.array([[1.0, 0, 0, -0.5]]), box=(-1, 1))  # half-space x <= 0.5
    assert signed_volume(v, f) == pytest.approx(1.5 * 2 * 2)
    for planes in ([[1, 0, 0, 0.1], [-1, 0, 0, 0.1]],  # x <= -0.1 and x >= 0.1
                   [[1, 0, 0, 2.0]],  # x <= -2: outside the box
                   [[0, 0, 0, 1.0]],  # 0 <= -1
                   [[1, 0, 0, 0], [-1, 0, 0, 0]]):  # flat: x == 0
        v, f = convex_polytope(np.asarray(planes, float))
        assert v.shape == (0, 3)
        assert f.shape == (0, 3)


def monte_carlo_check(v, f, occupancy, n=200_000, seed=0):
    """Fraction of uniform points in [-1,1]^3 where the mesh's inside test disagrees with the truth."""
    p = np.random.default_rng(seed).uniform(-1, 1, (n, 3))
    return np.mean(inside(p, v, f) != occupancy(p))


def in_box(p, lo, hi):
    return np.all((p >= lo) & (p <= hi), axis=1)


def test_union_of_overlapping_convexes_is_watertight_with_right_volume():
    a = ([-0.6, -0.4, -0.3], [0.2, 0.4, 0.3])
    b = ([-0.1, -0.1, -0.5], [0.5, 0.6, 0.1])
    tet = np.array([[-1, 0, 0, -0.6], [0, -1, 0, -0.6], [0, 0, -1, -0.6], [1, 1, 1, 0.5]], float)
    parts = [convex_polytope(box(*a)), convex_polytope(box(*b)), convex_polytope(tet)]
    v, f, labels = union_mesh(parts, with_labels=True)
    assert is_watertight(v, f)
    assert component_count(v, f) == 1
    assert set(labels.tolist()) <= {0, 1, 2}
    assert len(labels) == len(f)

    def occ(p):
        return in_box(p, *a) | in_box(p, *b) | np.all(p @ tet[:, :3].T + tet[:, 3] <= 0, axis=1)

    pts = np.random.default_rng(1).uniform(-1, 1, (400_000, 3))
    assert signed_volume(v, f) == pytest.approx(8 * occ(pts).mean(), abs=0.01)
    assert monte_carlo_check(v, f, occ) < 1e-3


def test_union_of_touching_convexes_is_one_closed_solid():
    a, b = ([-0.5, -0.5, -0.5], [0.0, 0.5, 0.5]), ([0.0, -0.5, -0.5], [0.5, 0.0, 0.5])  # share a face part
    v, f = union_mesh([convex_polytope(box(*a)), convex_polytope(box(*b))])
    assert is_watertight(v, f)
    assert component_count(v, f) == 1
    assert signed_volume(v, f) == pytest.approx(0.5 + 0.25, rel=1e-9)
    assert monte_carlo_check(v, f, lambda p: in_box(p, *a) | in_box(p, *b)) < 1e-3


def test_union_skips_empty_convexes_and_keeps_disjoint_ones():
    parts = [convex_polytope(box([-0.9] * 3, [-0.5] * 3)), convex_polytope(np.array([[0, 0, 0, 1.0]])),
             convex_polytope(box([0.5] * 3, [0.9] * 3))]
    v, f = union_mesh(parts)
    assert is_watertight(v, f)
    assert component_count(v, f) == 2
    assert signed_volume(v, f) == pytest.approx(2 * 0.4**3)


def test_ngons_keep_the_surface_closed(tmp_path):
    """Two touching boxes: 6 polygons (the seam vertices stay on the long sides)."""
    halves = (box([-0.5] * 3, [0, 0.5, 0.5]), box([0, -0.5, -0.5], [0.5] * 3))
    v, f = union_mesh([convex_polytope(h) for h in halves])
    polys = merge_coplanar(v, f)
    assert len(polys) == 6
    edges = {}
    for p in polys:
        for a, b in zip(p, p[1:] + p[:1], strict=True):
            edges[(a, b)] = edges.get((a, b), 0) + 1
    assert all(edges.get((b, a)) == 1 for (a, b) in edges)  # every directed edge has its twin
    out = write_polygon_obj(v, polys, tmp_path / "u.obj")
    faces = [ln for ln in out.read_text().splitlines() if ln.startswith("f ")]
    assert len(faces) == 6
    assert max(len(ln.split()) - 1 for ln in faces) > 4
    m = trimesh.load(out, process=False)  # trimesh fans the n-gons from their first vertex
    assert m.volume == pytest.approx(1.0)
    assert m.area_faces.min() > 0.01  # each n-gon starts where its fan has no zero-area triangle


def directed_edges_twinned(polys) -> bool:
    edges = {}
    for p in polys:
        for a, b in zip(p, p[1:] + p[:1], strict=True):
            edges[(a, b)] = edges.get((a, b), 0) + 1
    return all(n == 1 and edges.get((b, a)) == 1 for (a, b), n in edges.items())


def test_face_with_a_hole_becomes_fan_safe_polygons(tmp_path):
    """A small box on a big box's top face: that face is an annulus, written as polygons around the hole."""
    parts = (box([-0.5] * 3, [0.5] * 3), box([-0.1, -0.1, 0.3], [0.1, 0.1, 0.7]))
    v, f = union_mesh([convex_polytope(p) for p in parts])
    polys = merge_coplanar(v, f)
    top = [p for p in polys if np.allclose(v[p][:, 2], 0.5)]
    assert 2 <= len(top) < 8  # no polygon spans the hole; fewer than the annulus's 8 triangles
    assert directed_edges_twinned(polys)
    m = trimesh.load(write_polygon_obj(v, polys, tmp_path / "u.obj"), process=False)
    assert m.volume == pytest.approx(1 + 0.2 * 0.2 * 0.2)
    assert m.area_faces.min() > 1e-3


def test_face_coloured_ply(tmp_path):
    v, f, labels = union_mesh([convex_polytope(box([-0.5] * 3, [0.1] * 3)), convex_polytope(box([0.0] * 3, [0.5] * 3))],
                              with_labels=True)
    m = trimesh.load(write_face_colored_ply(v, f, labels, tmp_path / "c.ply"), process=False)
    colours = np.asarray(m.visual.face_colors)[:, :3]
    assert len(np.unique(colours, axis=0)) == 2
    assert len(m.faces) == len(f)
