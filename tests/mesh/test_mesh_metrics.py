"""mesh/metrics.py and mesh/topology.py: Chamfer, normal consistency, IoU, topology counts."""

import numpy as np
import pytest
import trimesh

from fieldfit.mesh import (
    CONVENTIONS,
    chamfer_l2,
    component_count,
    euler_characteristic,
    is_watertight,
    normal_consistency,
    volume_iou,
)
from fieldfit.mesh.topology import describe, edge_stats


def sphere(r=0.5, sub=4):
    return trimesh.creation.icosphere(sub, r)


def test_chamfer_self_and_concentric_spheres():
    a = sphere(0.5)
    assert chamfer_l2(a, a) < 0.005  # independent samples of one surface: ~ sample spacing
    # Far-apart surfaces are the kd-tree's slow case (many near-equidistant candidates): 20k.
    assert chamfer_l2((a.vertices, a.faces), sphere(0.6), n=20_000) == pytest.approx(0.1, abs=0.003)
    assert chamfer_l2(a, sphere(0.6), n=20_000, seed=3) == chamfer_l2(a, sphere(0.6), n=20_000, seed=3)


def test_chamfer_is_symmetric_mean_not_squared():
    # A unit square against a copy shifted by 0.1 along its normal: every distance is 0.1.
    sq = trimesh.creation.box(extents=(1, 1, 1e-9))
    shifted = sq.copy()
    shifted.apply_translation([0, 0, 0.1])
    assert chamfer_l2(sq, shifted, n=20_000) == pytest.approx(0.1, abs=1e-3)
    assert chamfer_l2(sq, shifted, n=20_000) == pytest.approx(chamfer_l2(shifted, sq, n=20_000), abs=1e-3)


def test_normal_consistency():
    a = sphere(0.5)
    assert normal_consistency(a, sphere(0.6), n=20_000) > 0.99
    flipped = (a.vertices, a.faces[:, ::-1])
    assert normal_consistency(a, flipped, n=20_000) > 0.99  # orientation-agnostic
    cube = trimesh.creation.box(extents=(0.9, 0.9, 0.9))
    assert normal_consistency(a, cube, n=20_000) < 0.95


def test_volume_iou_offset_cubes_analytic():
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = a.copy()
    b.apply_translation([0.5, 0.25, 0.0])
    inter = 0.5 * 0.75 * 1.0
    expected = inter / (2.0 - inter)
    assert volume_iou(a, b, n=200_000) == pytest.approx(expected, abs=0.005)
    assert volume_iou(a, b, n=200_000, bounds=(-1, 1.5)) == pytest.approx(expected, abs=0.005)
    assert volume_iou(a, a, n=50_000) == 1.0
    far = a.copy()
    far.apply_translation([3, 0, 0])
    assert volume_iou(a, far, n=50_000) == 0.0


def test_volume_iou_concentric_spheres():
    expected = 0.5**3 / 0.6**3
    assert volume_iou(sphere(0.5), sphere(0.6), n=200_000) == pytest.approx(expected, abs=0.01)


def test_topology_counts():
    torus = trimesh.creation.torus(1.0, 0.3)
    assert euler_characteristic(torus.vertices, torus.faces) == 0
    assert is_watertight(torus.vertices, torus.faces)
    s = sphere(0.5, 2)
    assert euler_characteristic(s.vertices, s.faces) == 2
    assert describe(s.vertices, s.faces) == ["watertight, genus 0"]
    assert not is_watertight(s.vertices, s.faces[1:])  # a hole
    bad = s.faces.copy()
    bad[0] = bad[0, ::-1]
    assert not is_watertight(s.vertices, bad)          # one face flipped
    assert edge_stats(bad)["misoriented"] == 3
    two_v = np.vstack([s.vertices, s.vertices + 3])
    two_f = np.vstack([s.faces, s.faces + len(s.vertices)])
    assert component_count(two_v, two_f) == 2
    assert euler_characteristic(two_v, two_f) == 4
    assert describe(two_v, two_f) == ["2 components", "watertight, total genus 0"]
    assert component_count(two_v, s.faces) == 1  # unreferenced vertices do not count


def test_non_manifold_edge_is_reported():
    # Three triangles sharing the edge (0, 1).
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)
    f = np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    st = edge_stats(f)
    assert st["nonmanifold"] == 1
    assert st["boundary"] == 6
    assert not is_watertight(v, f)
    assert "1 non-manifold edges" in describe(v, f)


def test_conventions_are_documented():
    assert set(CONVENTIONS) == {"chamfer_l2", "normal_consistency", "volume_iou"}
    assert "not squared" in CONVENTIONS["chamfer_l2"]


def test_surface_agreement_is_both_metrics_at_once():
    from fieldfit.mesh.metrics import chamfer_l2, normal_consistency, surface_agreement

    a, b = sphere(0.5), sphere(0.6)
    assert surface_agreement(a, b, n=5000, seed=2) == (chamfer_l2(a, b, n=5000, seed=2),
                                                       normal_consistency(a, b, n=5000, seed=2))
