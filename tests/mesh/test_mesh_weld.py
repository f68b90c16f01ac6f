"""mesh/weld.py: meshes that stay closed 2-manifolds when other tools merge their close vertices.

The cases are unions of axis-aligned boxes (exact polytopes through manifold3d's boolean) that touch face to face,
along an edge and at a vertex; each result is welded as trimesh (1e-8), at 1e-6 of the diagonal and at WELD_TOL,
and must stay one closed, consistently oriented 2-manifold with the Euler number and shells of the solid's
interior (touching solids are separate shells). Random voxels are the stress case, checked
against a count over the cells (``voxel_topology``).
"""

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from fieldfit.mesh.convex import boolean_union, box_planes, convex_polytope, union_mesh
from fieldfit.mesh.export import export_mesh
from fieldfit.mesh.topology import component_count, euler_characteristic, signed_volume
from fieldfit.mesh.weld import (
    WELD_TOL,
    diagonal,
    drop_collapsed,
    is_closed_manifold,
    load_welded,
    merge_by_distance,
    mesh_report,
    min_separation,
    reload_report,
    split_edges,
    split_pinches,
    weld_safe,
)

pytest.importorskip("manifold3d")


def cube(lo, hi):
    """The closed mesh of the box [lo, hi] (inside [-1, 1]^3, where convex_polytope clips)."""
    return convex_polytope(box_planes((np.asarray(lo, float), np.asarray(hi, float))))


A = ([0, 0, 0], [1, 1, 1])
CASES = {  # name: (second box, Euler number, shells)
    "face": (([-1, 0, 0], [0, 1, 1]), 2, 1),
    "edge": (([-1, -1, 0], [0, 0, 1]), 4, 2),
    "vertex": (([-1, -1, -1], [0, 0, 0]), 4, 2),
    "part_of_an_edge": (([-1, -1, 0.25], [0, 0, 0.75]), 4, 2),
}


def radii(v):
    """The merge radii other tools use: trimesh's 1e-8, 1e-6 of the diagonal, WELD_TOL of it."""
    d = diagonal(v)
    return (1e-8, 1e-6 * d, WELD_TOL * d)


def assert_survives_welding(v, f, euler, shells, volume):
    for r in (0.0, *radii(v)):
        vv, ff = merge_by_distance(v, f, r)
        assert is_closed_manifold(vv, ff), r
        assert euler_characteristic(vv, ff) == euler, r
        assert component_count(vv, ff) == shells, r
        assert signed_volume(vv, ff) == pytest.approx(volume, rel=1e-3), r


@pytest.mark.parametrize("name", list(CASES))
def test_touching_boxes_survive_welding(name):
    b, euler, shells = CASES[name]
    v, f = union_mesh([cube(*A), cube(*b)])
    assert_survives_welding(v, f, euler, shells, 1.5 if name == "part_of_an_edge" else 2.0)
    assert min_separation(v, f) > WELD_TOL * diagonal(v)


@pytest.mark.parametrize("name", ["edge", "vertex"])
def test_the_raw_boolean_pinches_when_welded(name):
    """The failure weld_safe exists for: manifold3d's union is closed only while coincident vertices stay apart."""
    v, f, _ = boolean_union([cube(*A), cube(*CASES[name][0])])
    assert is_closed_manifold(v, f)
    assert min_separation(v, f) < 1e-12
    vv, ff = merge_by_distance(v, f, 1e-8)
    assert not is_closed_manifold(vv, ff)


def test_a_manifold_mesh_passes_unchanged():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f, kept = weld_safe(sphere.vertices, sphere.faces)
    assert np.array_equal(v, sphere.vertices)
    assert np.array_equal(f, sphere.faces)
    assert np.array_equal(kept, np.arange(len(f)))
    two = union_mesh([cube([0, 0, 0], [1, 1, 1]), cube([2, 0, 0], [3, 1, 1])])  # apart: nothing to do
    raw = boolean_union([cube([0, 0, 0], [1, 1, 1]), cube([2, 0, 0], [3, 1, 1])])
    assert np.array_equal(two[0], raw[0])
    assert np.array_equal(two[1], raw[1])


def test_labels_follow_the_welded_faces():
    v, f, labels = union_mesh([cube(*A), cube(*CASES["edge"][0])], with_labels=True)
    assert len(labels) == len(f)
    assert set(labels.tolist()) == {0, 1}
    centroid = v[f].mean(axis=1)
    assert np.all((centroid[:, 0] + centroid[:, 1] > 0) == (labels == 0))  # box A: x, y >= 0; the other <= 0


def test_edge_shared_by_solids_joined_at_both_ends_is_cut():
    """A ring of four boxes around an edge, two diagonal ones touching along it: the surface reaches around both
    ends of the edge (each end is one fan), so only cutting the edge at its middle separates the solids there."""
    base = cube([-1, -1, -1], [1, 1, -0.5])
    top = cube([-1, -1, 0.5], [1, 1, 1])
    posts = [cube([0, 0, -0.5], [1, 1, 0.5]), cube([-1, -1, -0.5], [0, 0, 0.5])]
    v, f = union_mesh([base, top, *posts])
    # one solid: base, posts, top; the posts touch along x = y = 0 (pulled apart: a ring, genus 1 -> Euler 0)
    assert_survives_welding(v, f, 0, 1, 2 + 2 + 1 + 1)


def test_split_pinches_and_split_edges_on_index_level():
    """Two tetrahedra sharing a vertex by index: one copy each; sharing an edge: the edge cut per solid."""
    tet = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    v = np.concatenate([pts, -pts[1:]])
    f = np.concatenate([tet, np.where(tet == 0, 0, tet + 3)[:, ::-1]])  # mirrored through vertex 0
    v2, f2, source = split_pinches(v, f)
    assert len(v2) == 8
    assert np.bincount(source)[0] == 2
    assert is_closed_manifold(v2, f2)
    v3, f3, parent, middles = split_edges(v2, f2)
    assert len(middles) == 0
    assert np.array_equal(f3, f2)
    assert np.array_equal(parent, np.arange(len(f2)))


def test_drop_collapsed_cancels_opposite_pairs():
    f = np.array([[0, 1, 2], [2, 1, 0], [3, 4, 5], [3, 4, 5], [6, 6, 7]])
    assert drop_collapsed(f).tolist() == [2]


def voxel_topology(occ):
    """(Euler number of the surface, shells) weld_safe gives the union of the occupied unit cells.

    Cells touching only along an edge or at a corner are apart (the interior of the union: Euler number of the
    solid = cells - face pairs + full 2x2 squares - full 2x2x2 blocks), except where two empty cells meet only at
    a corner (six of a 2x2x2 block full, the missing two opposite): there the solid closes over the corner.
    """
    o = occ.astype(np.int64)

    def both(x, axis):
        n = x.shape[axis]
        return np.take(x, range(n - 1), axis) & np.take(x, range(1, n), axis)

    pairs = sum(both(o, k).sum() for k in range(3))
    squares = sum(both(both(o, i), j).sum() for i, j in ((0, 1), (0, 2), (1, 2)))
    cubes = both(both(both(o, 0), 1), 2).sum()
    nx, ny, nz = (n - 1 for n in o.shape)
    block = np.stack([o[i:i + nx, j:j + ny, k:k + nz] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    six = block.sum(0) == 6
    closed = sum(((block[b] == 0) & (block[7 - b] == 0) & six).sum() for b in range(4))  # b, 7-b: opposite
    return 2 * int(o.sum() - pairs + squares - cubes + closed), int(ndimage.label(occ)[1])


def test_voxel_oracle_on_known_solids():
    ring = np.ones((3, 3, 1), bool)
    ring[1, 1, 0] = False
    corners = np.zeros((2, 2, 2), bool)
    corners[0, 0, 0] = corners[1, 1, 1] = True
    notches = np.ones((2, 2, 2), bool)
    notches[0, 0, 0] = notches[1, 1, 1] = False
    assert voxel_topology(ring) == (0, 1)  # a torus
    assert voxel_topology(corners) == (4, 2)  # two cubes touching at a corner
    assert voxel_topology(notches) == (2, 1)  # the solid closes over the corner where the notches meet


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_voxels_survive_welding(seed):
    """Many touching edges and corners at once (both solids and empty space touching themselves)."""
    occ = np.random.default_rng(seed).random((4, 4, 3)) < 0.45
    cells = np.argwhere(occ).astype(float)
    v, f = union_mesh([cube(c / 4, (c + 1) / 4) for c in cells])
    euler, shells = voxel_topology(occ)
    assert_survives_welding(v, f, euler, shells, len(cells) / 64)


def arrangement_cells(planes, rng) -> list:
    """The convex cells [(v, f)] that ``planes`` [P,4] cut the cube [-1, 1]^3 into (those a sample point finds)."""
    x = rng.uniform(-1, 1, (50_000, 3))
    signs = np.unique((x @ planes[:, :3].T + planes[:, 3]) > 0, axis=0)
    cells = [convex_polytope(np.where(s[:, None], -planes, planes)) for s in signs]
    return [c for c in cells if len(c[0])]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cells_of_a_plane_arrangement_survive_welding(seed):
    """Half the cells of six planes (some axis-aligned, several through shared points): convexes sharing planes, as
    BSP convexes do, touching at slanted edges and corners. The weld changes nothing of what weld_safe reports."""
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(6, 3))
    normals[:3] = np.eye(3)[rng.integers(0, 3, 3)]
    planes = np.c_[normals / np.linalg.norm(normals, axis=1, keepdims=True), rng.choice([0.0, 0.25, -0.25], 6)]
    cells = arrangement_cells(planes, rng)
    picked = [cells[k] for k in rng.permutation(len(cells))[:len(cells) // 2]]
    raw = boolean_union(picked)
    assert not is_closed_manifold(*merge_by_distance(raw[0], raw[1], 1e-8))  # the case needs weld_safe
    v, f = union_mesh(picked)
    volume = sum(signed_volume(*c) for c in picked)
    assert_survives_welding(v, f, euler_characteristic(v, f), component_count(v, f), volume)


@pytest.mark.parametrize("ext", [".ply", ".obj", ".stl"])
def test_files_reload_closed(tmp_path, ext):
    """Written and loaded back as tools do (trimesh's default load, a merge by distance)."""
    v, f = union_mesh([cube([0, 0, 0], [0.5] * 3), cube([-0.5, -0.5, 0], [0, 0, 0.5]), cube([0.5] * 3, [1] * 3)])
    path = export_mesh(v, f, tmp_path / f"u{ext}")
    report = reload_report(path)
    for how in ("trimesh", "merged"):
        assert report[how]["ok"], how
        assert report[how]["euler"] == euler_characteristic(v, f) == 6
        assert report[how]["shells"] == component_count(v, f) == 3
    assert mesh_report(*load_welded(path, 1e-6))["ok"]
