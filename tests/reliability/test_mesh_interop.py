"""Every mesh fieldfit exports, loaded back the way other tools load meshes.

trimesh's default load (``process=True``: positions rounded to 1e-8 and merged) and a merge by distance at
``WELD_TOL`` of the diagonal (MeshLab's merge of close vertices, Blender's merge by distance) must both find one
closed, consistently oriented 2-manifold (every edge two faces in opposite directions, every vertex one fan,
positive volume) with the Euler number and shell count fieldfit reported (metrics.json or the export's line).
Fits are tiny: the point is the files, not their quality.
"""

import json
import re

import numpy as np
import pytest
import torch

from conftest import fit_one_thread
from fieldfit.cli import main
from fieldfit.mesh.weld import load_welded, mesh_report, reload_report

BSP = ["csg", "--method", "bsp", "--steps", "150", "--train-points", "40000", "--convexes", "8",
       "--iou-points", "50000"]
SDF = ["csg", "--steps", "150", "--train-points", "50000", "--levels", "3", "--max-res", "32", "--resolution", "48",
       "--iou-points", "50000"]
RADIANCE = ["blocks", "--steps", "120", "--downscale", "2", "--levels", "2", "--max-res", "32", "--resolution", "32"]


pytestmark = pytest.mark.usefixtures("one_thread")


def fit(tmp_path_factory, name, args) -> tuple:
    out = fit_one_thread(tmp_path_factory, name, args)
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def bsp_run(tmp_path_factory):
    return fit(tmp_path_factory, "bsp", BSP)


@pytest.fixture(scope="module")
def sdf_run(tmp_path_factory):
    return fit(tmp_path_factory, "sdf", SDF)


def assert_tools_agree(path, euler: int, shells: int | None = None):
    """``path`` as written, as trimesh loads it and merged by distance: closed, outward, ``euler`` and ``shells``
    (an .stl has no shared vertices as written: only its reloads count)."""
    if path.suffix != ".stl":
        as_written = mesh_report(*load_welded(path, 0.0))
        assert as_written["ok"], (path.name, as_written)
    for how, report in reload_report(path).items():
        assert report["ok"], (path.name, how, report)
        assert report["euler"] == euler, (path.name, how, report)
        if shells is not None:
            assert report["shells"] == shells, (path.name, how, report)


def printed(out: str, key: str):
    """A value of the export's line 'wrote PATH: faces 12, watertight True, euler 2'."""
    found = re.search(rf"\b{key} (\S+?)(,|$)", out.strip().splitlines()[-1])
    assert found, (key, out)
    return found.group(1)


@pytest.mark.parametrize("name", ["mesh.ply", "mesh.obj", "convexes.ply"])
def test_bsp_run_meshes(bsp_run, name):
    run, metrics = bsp_run
    assert metrics["watertight"] is True
    assert metrics["reload"]["merged"]["euler"] == metrics["euler"]
    assert_tools_agree(run / name, metrics["euler"], metrics["components"])


@pytest.mark.parametrize("ext", [".stl", ".glb", ".obj"])
def test_bsp_export(bsp_run, tmp_path, capsys, ext):
    run, metrics = bsp_run
    out = tmp_path / f"again{ext}"
    assert main(["export", str(run), "--mesh", str(out)]) == 0
    line = capsys.readouterr().out
    assert printed(line, "watertight") == "True"
    assert int(printed(line, "euler")) == metrics["euler"]
    assert_tools_agree(out, metrics["euler"], metrics["components"])


def set_boxes(field, boxes):
    """Make the first convexes of a ``BSPField`` the axis-aligned boxes [(lo, hi)] of its unit frame; prune the rest."""
    from fieldfit.fields.bsp import T_THRESHOLD
    from fieldfit.mesh.convex import box_planes

    with torch.no_grad():
        field.T.fill_(0.0)
        field.alive.fill_(False)
        for k, (lo, hi) in enumerate(boxes):
            planes = torch.as_tensor(box_planes((np.asarray(lo, float), np.asarray(hi, float))), dtype=torch.float32)
            field.normals[6 * k:6 * k + 6] = planes[:, :3]
            field.offsets[6 * k:6 * k + 6] = planes[:, 3]
            field.T[6 * k:6 * k + 6, k] = 2 * T_THRESHOLD + 1.0
            field.alive[k] = True


@pytest.mark.parametrize("ext", [".ply", ".obj", ".stl"])
def test_bsp_export_of_convexes_touching_at_an_edge_and_a_corner(bsp_run, tmp_path, ext):
    """The pinches of a long fit, made on purpose: box 1 touches box 0 along an edge, box 2 touches it at a corner.
    Three shells (Euler 6) for fieldfit and for every tool that welds the file."""
    import fieldfit

    model = fieldfit.load(bsp_run[0], "cpu")
    set_boxes(model.field, [([0, 0, 0], [0.5] * 3), ([-0.5, -0.5, 0], [0, 0, 0.5]), ([0.5] * 3, [0.9] * 3)])
    out = tmp_path / f"touching{ext}"
    m = model.export_mesh(out)
    assert (m["watertight"], m["euler"], m["components"]) == (True, 6, 3)
    assert_tools_agree(out, 6, 3)


def test_rbf_sdf_mesh(sdf_run):
    run, metrics = sdf_run
    assert metrics["watertight"] is True
    assert_tools_agree(run / "mesh.ply", metrics["euler"], metrics["components"])


@pytest.mark.slow
def test_export_via_bsp(sdf_run, tmp_path, capsys):
    run, _ = sdf_run
    out = tmp_path / "proxy.ply"
    assert main(["export", str(run), "--mesh", str(out), "--via", "bsp", "--convexes", "6", "--steps", "100"]) == 0
    line = capsys.readouterr().out
    assert printed(line, "watertight") == "True"
    assert_tools_agree(out, int(printed(line, "euler")))


@pytest.mark.slow
def test_radiance_density_mesh(tmp_path_factory, tmp_path, capsys):
    run, metrics = fit(tmp_path_factory, "radiance", RADIANCE)
    out = tmp_path / "density.ply"
    capsys.readouterr()
    assert main(["export", str(run), "--mesh", str(out), "--resolution", "32"]) == 0
    line = capsys.readouterr().out
    assert printed(line, "watertight") == "True"
    v, f = load_welded(out, 0.0)
    written = mesh_report(v, f)
    assert_tools_agree(out, written["euler"], written["shells"])
