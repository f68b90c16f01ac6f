"""mesh/band.py and the fast level gap of mesh/extract.py: the band gives the full grid's mesh, for fewer calls."""

import numpy as np
import pytest
import torch

from fieldfit.mesh import extract_sdf_mesh
from fieldfit.mesh.band import evaluate_band
from fieldfit.mesh.extract import _NODE_GAP, _keep_off_level, evaluate_grid


def sphere_and_wire(p):
    """Exact SDF of a ball of radius 0.5 with a thin ring (tube radius 0.03) around it at x = 0.3."""
    ball = p.norm(dim=-1) - 0.5
    ring = torch.stack([torch.sqrt(p[:, 1] ** 2 + p[:, 2] ** 2) - 0.7, p[:, 0] - 0.3], -1).norm(dim=-1) - 0.03
    return torch.minimum(ball, ring)


class Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, p):
        self.calls += len(p)
        return self.fn(p)


@pytest.mark.parametrize(("res", "bounds", "share"), [(129, (-1.0, 1.0), 0.35),
                                                      ((61, 70, 83), ([-0.9, -1.0, -0.8], [1.0, 0.95, 1.1]), 0.8)])
def test_band_gives_the_full_grids_mesh(res, bounds, share):
    # the ring's tube (0.06 across) is thinner than a coarse cell (4 fine cells, about 0.08): it is found only
    # because a corner within reach of it refines the cell
    f = Counted(sphere_and_wire)
    band = extract_sdf_mesh(f, res, bounds, chunk=5000)
    calls = f.calls
    dense = extract_sdf_mesh(sphere_and_wire, res, bounds, chunk=5000, band=False)
    assert band.faces.shape == dense.faces.shape
    np.testing.assert_array_equal(band.faces, dense.faces)
    np.testing.assert_allclose(band.vertices, dense.vertices, rtol=0, atol=1e-6)
    assert calls < share * np.prod(np.broadcast_to(res, (3,)))  # the point: fewer calls (17% at 256^3)
    assert band.split(only_watertight=False).__len__() == 2  # ball and ring


def test_band_volume_matches_the_grid_near_the_surface_and_in_sign_everywhere():
    vol, report = evaluate_band(sphere_and_wire, 120, (-1.0, 1.0), chunk=7000)
    ref = evaluate_grid(sphere_and_wire, 120, (-1.0, 1.0))
    assert report["nodes"] == 120 ** 3
    assert report["evaluated"] < 0.4 * 120 ** 3
    near = np.abs(ref) < 0.05
    np.testing.assert_allclose(vol[near], ref[near], rtol=0, atol=1e-6)
    assert np.array_equal(vol < 0, ref < 0)


def test_a_field_steeper_than_reach_can_hide_a_speck():
    # documented limit: a tiny ball inside one coarse cell of a field 10x steeper than a distance
    def speck(p):
        return 10 * (p.norm(dim=-1) - 0.02)  # in the middle of a coarse cell

    vol, _ = evaluate_band(speck, 101, (-1.0, 1.0))
    assert (evaluate_grid(speck, 101, (-1.0, 1.0)) < 0).any()
    assert not (vol < 0).any()


def test_band_errors_match_the_grids():
    with pytest.raises(ValueError, match="NaN"):
        extract_sdf_mesh(lambda p: torch.where(p[:, 0] > 0.5, torch.nan, p.norm(dim=-1) - 0.5), 40)
    with pytest.raises(ValueError, match="no zero crossing"):
        extract_sdf_mesh(lambda p: p.norm(dim=-1) + 0.1, 40)
    small, report = evaluate_band(lambda p: p.norm(dim=-1) - 0.5, 8)  # too small for a coarse grid: all nodes
    assert report["evaluated"] == 8 ** 3
    np.testing.assert_array_equal(small, evaluate_grid(lambda p: p.norm(dim=-1) - 0.5, 8))


def keep_off_level_reference(vol, level):
    """Every node's largest difference to a grid neighbour, by loops over the six directions."""
    diff = np.zeros_like(vol)
    for axis in range(3):
        for step in (-1, 1):
            nb = np.roll(vol, step, axis=axis)
            d = np.abs(vol - nb)
            edge = [slice(None)] * 3
            edge[axis] = 0 if step == 1 else -1  # roll wrapped these around
            d[tuple(edge)] = 0
            diff = np.maximum(diff, d)
    gap = np.maximum(_NODE_GAP * diff, np.abs(np.spacing(np.float32(level))) * 4)
    off = vol - np.float32(level)
    moved = np.where(off < 0, -1.0, 1.0) * np.maximum(np.abs(off), gap) + level
    return np.where(np.abs(off) < gap, moved, vol).astype(np.float32)


@pytest.mark.parametrize("level", [0.0, 0.25])
def test_keep_off_level_matches_the_full_neighbour_pass(level):
    rng = np.random.default_rng(4)
    vol = np.round(rng.normal(size=(14, 15, 16)) * 4).astype(np.float32) / 8 + np.float32(level)
    vol[rng.random(vol.shape) < 0.1] = level  # exact ties
    vol.ravel()[rng.integers(0, vol.size, 50)] += np.float32(1e-5)  # just off the level
    out = _keep_off_level(vol, level)
    np.testing.assert_array_equal(out, keep_off_level_reference(vol, level))
    assert not (out == np.float32(level)).any()
