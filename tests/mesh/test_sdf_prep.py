"""The fast SDF preparation: two-pass winding numbers against the reference, and the prepared-set cache."""

import igl
import numpy as np
import pytest
import trimesh

from fieldfit.mesh.inside import MARGIN, WindingNumber
from fieldfit.mesh.sampling import sdf_training_set, thin_part_samples
from fieldfit.scenes.shapes import Shape
from fieldfit.tasks import sdf_samples


def closed_mesh():
    """A bumpy closed sphere (5120 faces): deep enough a tree that the cheap first pass differs from the reference."""
    s = trimesh.creation.icosphere(4, 0.6)
    v = np.asarray(s.vertices)
    r = 1 + 0.15 * np.sin(5 * v[:, 0]) * np.cos(4 * v[:, 1])
    return v * r[:, None], np.asarray(s.faces)


def open_mesh():
    """The bumpy sphere with 40 faces removed: holes, so w is fractional around them."""
    v, f = closed_mesh()
    drop = np.random.default_rng(0).choice(len(f), 40, replace=False)
    return v, np.delete(f, drop, axis=0)


def overlapping_mesh():
    """Two intersecting closed spheres as one soup (self-intersecting; w = 2 where they overlap)."""
    a = trimesh.creation.icosphere(3, 0.45)
    v = np.concatenate([np.asarray(a.vertices) - [0.2, 0, 0], np.asarray(a.vertices) + [0.2, 0, 0]])
    f = np.concatenate([np.asarray(a.faces), np.asarray(a.faces) + len(a.vertices)])
    return v, f


MESHES = {"closed": closed_mesh, "open": open_mesh, "self-intersecting": overlapping_mesh}


def probe_points(v, f, n=20000, seed=1):
    """Uniform points and points near the surface (the two kinds a training set has)."""
    rng = np.random.default_rng(seed)
    fi = rng.integers(0, len(f), n // 2)
    near = v[f[fi]].mean(axis=1) + rng.normal(size=(n // 2, 3)) * 0.02
    return np.concatenate([rng.uniform(-1, 1, (n - n // 2, 3)), near])


@pytest.mark.parametrize("name", list(MESHES))
def test_fast_winding_signs_agree_with_the_reference(name):
    v, f = MESHES[name]()
    p = probe_points(v, f)
    away = np.sqrt(igl.point_mesh_squared_distance(p, v, f)[0]) > 0.01
    wn = WindingNumber(v, f)
    ref, fast = wn(p), wn(p, fast=True)
    assert ((ref >= 0.5) == (fast >= 0.5))[away].mean() >= 0.999
    # the ambiguous band is the reference exactly, and the first pass was used elsewhere (it is not the reference)
    band = np.abs(fast - 0.5) < MARGIN
    np.testing.assert_array_equal(fast[band], ref[band])
    assert np.abs(fast - ref).max() > 1e-6


def test_fast_winding_keeps_the_open_and_overlapping_answers():
    """Holes leave a fractional w near them (re-evaluated exactly); overlaps count twice."""
    v, f = open_mesh()
    p = probe_points(v, f)
    fast = WindingNumber(v, f)(p, fast=True)
    assert ((fast > 0.1) & (fast < 0.9)).any()
    v, f = overlapping_mesh()
    w = WindingNumber(v, f)(np.array([[0.0, 0, 0], [0.5, 0, 0], [0.9, 0, 0]]), fast=True)
    np.testing.assert_allclose(w, [2, 1, 0], atol=0.05)


@pytest.mark.parametrize("name", list(MESHES))
def test_training_set_fast_matches_the_reference(name):
    v, f = MESHES[name]()
    timings = {}
    p_fast, d_fast = sdf_training_set(v, f, 20000, np.random.default_rng(3), timings=timings)
    p_ref, d_ref = sdf_training_set(v, f, 20000, np.random.default_rng(3), fast=False)
    np.testing.assert_array_equal(p_fast, p_ref)  # the same points
    np.testing.assert_array_equal(np.abs(d_fast), np.abs(d_ref))  # the same (exact) distances
    exact = np.sqrt(igl.point_mesh_squared_distance(p_ref.astype(np.float64), v, f)[0])
    np.testing.assert_allclose(np.abs(d_ref), exact, rtol=1e-6, atol=1e-7)  # float32 rounding only
    away = np.abs(d_ref) > 0.01
    assert (np.sign(d_fast) == np.sign(d_ref))[away].mean() >= 0.999
    assert set(timings) == {"samples", "thin", "distance", "sign"}


def test_thin_parts_found_alike():
    """A 0.01-thick slab: the thin-part candidates are the same with the fast signs (same points drawn)."""
    slab = trimesh.creation.box([0.8, 0.8, 0.01])
    v, f = np.asarray(slab.vertices), np.asarray(slab.faces)
    fast = thin_part_samples(v, f, 500, np.random.default_rng(0), candidates=4000)
    ref = thin_part_samples(v, f, 500, np.random.default_rng(0), candidates=4000, fast=False)
    assert len(fast) == 500
    np.testing.assert_array_equal(fast, ref)


def small_shape():
    v, f = closed_mesh()
    return Shape("bumpy", np.zeros(3), 1.0, v, f)


def test_prepared_set_is_cached_and_read_back_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDFIT_CACHE", str(tmp_path))
    shape = small_shape()
    first = sdf_samples.prepare(shape, 5000, seed=0, probe_points=1000, sigmas=[0.02])
    assert not first.cached
    assert "distance" in first.seconds
    assert len(list((tmp_path / "sdf").glob("*.npz"))) == 1

    def no_compute(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(sdf_samples, "compute", no_compute)
    again = sdf_samples.prepare(shape, 5000, seed=0, probe_points=1000, sigmas=[0.02])
    assert again.cached
    for k in ("points", "sdf", "probe", "probe_inside"):
        np.testing.assert_array_equal(getattr(again, k), getattr(first, k))
    assert again.probe_inside.dtype == bool
    # the probe's labels are the shape's occupancy of the probe points
    np.testing.assert_array_equal(again.probe_inside, shape.inside(again.probe))


def test_cache_key_follows_mesh_seed_and_options():
    shape = small_shape()
    key = sdf_samples.cache_key(shape, 5000, 0, 1000, {"thin_frac": 0.1})
    assert key == sdf_samples.cache_key(small_shape(), 5000, 0, 1000, {"thin_frac": 0.1})
    moved = Shape("bumpy", np.zeros(3), 1.0, shape.vertices + 1e-6, shape.faces)
    others = [sdf_samples.cache_key(shape, 5000, 1, 1000, {"thin_frac": 0.1}),
              sdf_samples.cache_key(shape, 5001, 0, 1000, {"thin_frac": 0.1}),
              sdf_samples.cache_key(shape, 5000, 0, 1000, {}),
              sdf_samples.cache_key(moved, 5000, 0, 1000, {"thin_frac": 0.1})]
    assert key not in others
    assert len(set(others)) == len(others)


def test_damaged_cache_file_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDFIT_CACHE", str(tmp_path))
    shape = small_shape()
    first = sdf_samples.prepare(shape, 3000, seed=0, probe_points=500)
    (path,) = (tmp_path / "sdf").glob("*.npz")
    path.write_bytes(b"not an npz")
    again = sdf_samples.prepare(shape, 3000, seed=0, probe_points=500)
    assert not again.cached
    np.testing.assert_array_equal(again.sdf, first.sdf)
    assert sdf_samples.prepare(shape, 3000, seed=0, probe_points=500).cached


def test_uncached_and_analytic_shapes_compute(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDFIT_CACHE", str(tmp_path))
    shape = small_shape()
    off = sdf_samples.prepare(shape, 3000, seed=0, probe_points=500, cache=False)
    assert not off.cached
    assert not (tmp_path / "sdf").exists()
    ball = Shape("ball", np.zeros(3), 1.0, *closed_mesh(),
                 analytic_sdf=lambda p: np.linalg.norm(p, axis=1) - 0.5)
    a = sdf_samples.prepare(ball, 3000, seed=0, probe_points=500)
    assert not a.cached
    assert not (tmp_path / "sdf").exists()
    np.testing.assert_allclose(a.sdf, np.linalg.norm(a.points, axis=1) - 0.5, atol=1e-6)
