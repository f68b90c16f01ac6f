"""Decimation that keeps topology (mesh/decimate.py), on meshes whose topology is known: a torus (Euler 0) and a
sphere (Euler 2) from marching cubes of analytic SDFs, checked as other tools load the written file."""

import numpy as np
import pytest

from fieldfit.mesh import export_mesh, marching_cubes_closed
from fieldfit.mesh.decimate import decimate, topology
from fieldfit.mesh.io import normalization, to_unit
from fieldfit.mesh.metrics import chamfer_l2
from fieldfit.mesh.weld import reload_report

pytest.importorskip("fast_simplification")


def grid(res: int = 48):
    x = np.linspace(-1, 1, res)
    return np.meshgrid(x, x, x, indexing="ij")


def torus(res: int = 48):
    x, y, z = grid(res)
    return marching_cubes_closed(np.sqrt((np.sqrt(x**2 + y**2) - 0.6) ** 2 + z**2) - 0.25, 0.0, (-1, 1))


def sphere(res: int = 40):
    x, y, z = grid(res)
    return marching_cubes_closed(np.sqrt(x**2 + y**2 + z**2) - 0.7, 0.0, (-1, 1))


@pytest.mark.parametrize(("make", "euler"), [(torus, 0), (sphere, 2)])
def test_decimate_keeps_topology_as_other_tools_load_it(make, euler, tmp_path):
    v, f = make()
    assert topology(v, f).euler == euler  # the fixture is what it claims
    target = len(f) // 10
    d = decimate(v, f, target)
    assert len(d.faces) <= target
    assert d.note == ""
    assert d.passes >= 3
    out = export_mesh(d.vertices, d.faces, tmp_path / "small.ply")
    for how, report in reload_report(out).items():
        assert report["ok"], (how, report)
        assert (report["euler"], report["shells"]) == (euler, 1), (how, report)
    centre, scale = normalization(v)
    near = chamfer_l2((to_unit(v, centre, scale), f), (to_unit(d.vertices, centre, scale), d.faces), n=20_000)
    far = chamfer_l2((to_unit(v, centre, scale), f), (to_unit(v * 1.1, centre, scale), f), n=20_000)
    assert near < 0.02 < far  # within 1% of the diagonal (1.9); a 10% larger copy is not


def test_colours_follow_the_nearest_vertex():
    v, f = sphere(24)
    colours = (v[:, :1] > 0).astype(np.uint8).repeat(3, 1) * 255  # +x half white, the rest black
    d = decimate(v, f, len(f) // 4, colours)
    assert d.colours.shape == (len(d.vertices), 3)
    far = np.abs(d.vertices[:, 0]) > 0.1  # away from the seam the colour is the side's
    assert np.array_equal(d.colours[far, 0] == 255, d.vertices[far, 0] > 0)


def test_a_pass_that_breaks_the_topology_is_retried_less_aggressively(monkeypatch):
    """A decimator that pinches the mesh at its default aggressiveness: decimate keeps only the tries that do not."""
    import fast_simplification

    real = fast_simplification.simplify
    calls = []

    def pinching(v, f, target_count, agg):
        calls.append(agg)
        nv, nf = real(v, f, target_count=target_count, agg=agg)
        if agg == 7.0:  # glue two faces' corners together: non-manifold
            nf = nf.copy()
            nf[nf == nf[0, 0]] = nf[len(nf) // 2, 0]
        return nv, nf

    monkeypatch.setattr(fast_simplification, "simplify", pinching)
    v, f = torus(32)
    d = decimate(v, f, len(f) // 4)
    assert 7.0 in calls
    assert 5.0 in calls
    assert len(d.faces) <= len(f) // 4
    assert topology(d.vertices, d.faces) == topology(v, f)


def test_when_every_pass_breaks_it_stops_and_says_where(monkeypatch):
    import fast_simplification

    def tearing(v, f, target_count, agg):
        return v, np.asarray(f)[: target_count]  # drops faces: an open mesh every time

    monkeypatch.setattr(fast_simplification, "simplify", tearing)
    v, f = sphere(24)
    d = decimate(v, f, 100)
    assert d.passes == 0
    assert len(d.faces) == len(f)
    assert d.note.startswith(f"reached {len(f)} faces, not 100")


def test_refuses_what_has_no_topology_to_keep():
    v, f = sphere(24)
    with pytest.raises(ValueError, match="not a closed"):
        decimate(v, f[:-3], 100)  # a hole
    with pytest.raises(ValueError, match=">= 4"):
        decimate(v, f, 3)
    same = decimate(v, f, len(f))  # nothing to do
    assert same.passes == 0
    assert np.array_equal(same.faces, f)
