"""mesh/inside.py and mesh/sampling.py: winding-number inside test, signed distance, samples."""

from pathlib import Path

import igl
import numpy as np
import pytest
import trimesh

from conftest import data_path
from fieldfit.mesh import (
    inside,
    load_mesh,
    normalization,
    sdf_training_set,
    signed_distance,
    surface_samples,
    to_unit,
    winding_number,
)
from fieldfit.mesh.inside import Distance, WindingNumber, morton_order


def shared_mesh(name: str) -> Path:
    return data_path("meshes", name)


HOLE_DIR = np.array([0.1, 0.2, 1.0]) / np.linalg.norm([0.1, 0.2, 1.0])  # hits a face interior


def holed_sphere(radius=0.5, n_holes=12, seed=0):
    """Icosphere with n_holes random faces deleted, plus the face that HOLE_DIR from 0 crosses."""
    s = trimesh.creation.icosphere(3, radius)
    rng = np.random.default_rng(seed)
    drop = set(rng.choice(len(s.faces), n_holes, replace=False).tolist())
    hit = s.ray.intersects_first([[0, 0, 0]], [HOLE_DIR])[0]
    drop.add(int(hit))
    keep = np.setdiff1d(np.arange(len(s.faces)), list(drop))
    return np.asarray(s.vertices), np.asarray(s.faces)[keep]


def ray_vote_inside(vertices, faces, points, n_dirs=9, seed=0):
    """Test oracle: majority over n_dirs random directions of the ray-crossing parity."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    dirs = np.random.default_rng(seed).normal(size=(n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    votes = np.zeros(len(points))
    for d in dirs:
        _, ray_idx, _ = mesh.ray.intersects_location(points, np.tile(d, (len(points), 1)), multiple_hits=True)
        votes += np.bincount(ray_idx, minlength=len(points)) % 2
    return votes > n_dirs / 2


def test_ray_vote_oracle_on_closed_sphere():
    s = trimesh.creation.icosphere(3, 0.5)
    p = np.random.default_rng(1).uniform(-1, 1, size=(2000, 3))
    r = np.linalg.norm(p, axis=1)
    ok = np.abs(r - 0.5) > 0.02
    assert np.array_equal(ray_vote_inside(s.vertices, s.faces, p[ok]), r[ok] < 0.5)


def test_holed_sphere_classified_correctly():
    v, f = holed_sphere()
    p = np.random.default_rng(2).uniform(-0.8, 0.8, size=(20000, 3))
    r = np.linalg.norm(p, axis=1)
    far = np.abs(r - 0.5) > 0.05
    assert far.sum() > 10000
    assert np.array_equal(inside(p[far], v, f), r[far] < 0.5)


def test_single_ray_parity_fails_where_winding_does_not():
    # Why ray parity is not used: a ray from the centre escapes through a hole.
    v, f = holed_sphere()
    mesh = trimesh.Trimesh(v, f, process=False)
    hits = mesh.ray.intersects_location([[0, 0, 0]], [HOLE_DIR], multiple_hits=True)[0]
    assert len(hits) % 2 == 0                       # parity says "outside"
    assert inside(np.zeros((1, 3)), v, f)[0]        # winding number says inside
    assert winding_number(np.zeros((1, 3)), v, f)[0] > 0.9


def test_triangle_soup_and_duplicated_faces():
    s = trimesh.creation.icosphere(2, 0.5)
    soup_v = np.asarray(s.vertices)[s.faces].reshape(-1, 3)    # no shared vertices at all
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)
    p = np.array([[0.0, 0.0, 0.0], [0.3, 0.1, 0.0], [0.7, 0.0, 0.0], [0.0, 0.9, 0.2]])
    assert inside(p, soup_v, soup_f).tolist() == [True, True, False, False]


@pytest.mark.parametrize("name", ["bunny_zipper_res2.ply", "teapot.obj", "bunny_ngp_small.obj",
                                  "featuretype.STL"])
def test_broken_meshes_agree_with_exact_winding_and_ray_votes(name):
    m = load_mesh(shared_mesh(name))
    center, scale = normalization(m.vertices)
    v, f = to_unit(m.vertices, center, scale), m.faces
    rng = np.random.default_rng(0)
    box = rng.uniform(v.min(axis=0), v.max(axis=0), size=(1500, 3))
    near = surface_samples(v, f, 1500, rng)[0] + rng.normal(size=(1500, 3)) * 0.05
    p = np.concatenate([box, near])
    p = p[Distance(v, f)(p) > 0.02]
    assert len(p) > 1500
    ours = inside(p, v, f)
    exact = igl.winding_number(v, f, p) >= 0.5
    votes = ray_vote_inside(v, f, p)
    assert 0.05 < ours.mean() < 0.95
    assert np.mean(ours == exact) > 0.99
    assert np.mean(ours == votes) > 0.99


def test_chunked_queries_match_igl():
    s = trimesh.creation.icosphere(3, 0.5)
    v, f = np.asarray(s.vertices), np.asarray(s.faces, dtype=np.int64)
    p = np.random.default_rng(3).uniform(-1, 1, size=(5000, 3))
    np.testing.assert_array_equal(WindingNumber(v, f)(p, chunk=700), igl.fast_winding_number(v, f, p))
    d2 = igl.point_mesh_squared_distance(p, v, f)[0]
    np.testing.assert_allclose(Distance(v, f)(p, chunk=700), np.sqrt(d2), rtol=0, atol=1e-12)


def test_morton_order_interleaves_the_cell_bits():
    p = np.random.default_rng(9).normal(size=(3000, 3)) * [1.0, 0.1, 3.0]
    lo, hi = p.min(axis=0), p.max(axis=0)
    cell = np.clip(((p - lo) / (hi - lo) * 64).astype(int), 0, 63)
    key = [sum(((int(c[axis]) >> b) & 1) << (3 * b + axis) for b in range(6) for axis in range(3)) for c in cell]
    np.testing.assert_array_equal(morton_order(p), np.argsort(key, kind="stable"))


def test_presorted_queries_match_unsorted_ones():
    s = trimesh.creation.icosphere(3, 0.5)
    v, f = np.asarray(s.vertices), np.asarray(s.faces, dtype=np.int64)
    p = np.random.default_rng(8).uniform(-1, 1, size=(5000, 3))
    p = p[morton_order(p)]
    np.testing.assert_array_equal(Distance(v, f)(p, chunk=700, presorted=True), Distance(v, f)(p, chunk=700))
    wn = WindingNumber(v, f)
    np.testing.assert_array_equal(wn(p, chunk=700, fast=True, presorted=True), wn(p, chunk=700, fast=True))


def test_signed_distance_sphere():
    s = trimesh.creation.icosphere(4, 0.5)
    p = np.random.default_rng(4).uniform(-1, 1, size=(4000, 3))
    r = np.linalg.norm(p, axis=1)
    sd = signed_distance(p, s.vertices, s.faces)
    np.testing.assert_allclose(sd, r - 0.5, atol=3e-3)  # inscribed polyhedron: chord error
    clear = np.abs(r - 0.5) > 0.01
    assert np.array_equal(sd[clear] < 0, r[clear] < 0.5)


def test_signed_distance_box_exact():
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    p = np.random.default_rng(5).uniform(-1, 1, size=(4000, 3))
    q = np.abs(p) - [0.5, 0.3, 0.2]
    ref = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)
    np.testing.assert_allclose(signed_distance(p, box.vertices, box.faces), ref, atol=1e-12)


def test_surface_samples_on_surface_with_outward_normals():
    s = trimesh.creation.icosphere(3, 0.5)
    p, n = surface_samples(s.vertices, s.faces, 5000, np.random.default_rng(6))
    assert p.shape == (5000, 3)
    assert n.shape == (5000, 3)
    assert np.abs(np.linalg.norm(p, axis=1) - 0.5).max() < 0.01
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    assert (np.einsum("ij,ij->i", p, n) > 0).all()
    # Area weighting: the two halves of a 1 x 3 strip get samples in ratio 1:2.
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [3, 0, 0], [3, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    q, _ = surface_samples(v, f, 30000, 0)
    assert np.mean(q[:, 0] < 1) == pytest.approx(1 / 3, abs=0.01)


def test_sdf_training_set():
    s = trimesh.creation.icosphere(4, 0.5)
    pts, sdf = sdf_training_set(s.vertices, s.faces, 20001, np.random.default_rng(7),
                                surface_frac=0.5, sigmas=(0.01, 0.05))
    assert pts.shape == (20001, 3)
    assert sdf.shape == (20001,)
    assert pts.dtype == np.float32
    assert sdf.dtype == np.float32
    r = np.linalg.norm(pts, axis=1)
    np.testing.assert_allclose(sdf, r - 0.5, atol=3e-3)
    near = np.abs(r - 0.5) < 0.03
    assert 0.35 < near.mean() < 0.55           # mostly the 10000 perturbed surface points
    again, _ = sdf_training_set(s.vertices, s.faces, 20001, np.random.default_rng(7))
    np.testing.assert_array_equal(pts, again)
    uni, _ = sdf_training_set(s.vertices, s.faces, 1000, 0, surface_frac=0.0)
    assert np.abs(uni).max() <= 1.0


def test_thin_part_samples_find_thin_walls_only():
    from fieldfit.mesh.sampling import thin_part_samples

    slab = trimesh.creation.box((1.0, 1.0, 0.01))  # a wall 0.01 thick: thin everywhere but the rim
    pts = thin_part_samples(slab.vertices, slab.faces, 5000, np.random.default_rng(0), width=0.02)
    assert pts.shape == (5000, 3)
    assert np.abs(pts[:, 2]).max() <= 0.02 + 0.005 + 1e-9      # across the wall, never far from it
    assert (np.abs(pts[:, 2]) < 0.005).mean() > 0.15           # some inside the wall itself
    cube = trimesh.creation.box((0.5, 0.5, 0.5))               # nothing thinner than 0.5
    assert thin_part_samples(cube.vertices, cube.faces, 5000, np.random.default_rng(0), width=0.02).shape == (0, 3)
    # a cube with a thin plate: only the plate's surface is sampled
    both = trimesh.util.concatenate([cube, slab.apply_translation((0, 0, 0.6))])
    pts = thin_part_samples(both.vertices, both.faces, 2000, np.random.default_rng(1), width=0.02)
    assert np.all(np.abs(pts[:, 2] - 0.6) <= 0.025)


def test_sdf_training_set_thin_frac():
    # a thick cube and a small plate 0.01 thick: thin_frac moves points into the plate's wall
    plate = trimesh.creation.box((0.3, 0.3, 0.01)).apply_translation((0, 0, 0.6))
    mesh = trimesh.util.concatenate([trimesh.creation.box((0.8, 0.8, 0.8)), plate])
    pts, sdf = sdf_training_set(mesh.vertices, mesh.faces, 10000, np.random.default_rng(3), thin_frac=0.2)
    assert pts.shape == (10000, 3)
    assert sdf.shape == (10000,)
    base, _ = sdf_training_set(mesh.vertices, mesh.faces, 10000, np.random.default_rng(3))
    in_wall = lambda p: (np.abs(p[:, 2] - 0.6) < 0.005) & (np.abs(p[:, :2]) < 0.15).all(1)  # noqa: E731 - one-line mask
    assert in_wall(pts).sum() > 3 * in_wall(base).sum()
    assert np.all(sdf[in_wall(pts)] <= 1e-6)
    with pytest.raises(ValueError, match="thin_frac"):
        sdf_training_set(mesh.vertices, mesh.faces, 100, 0, surface_frac=0.2, thin_frac=0.3)
