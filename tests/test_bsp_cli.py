"""fieldfit SHAPE --method bsp, fieldfit export RUN (n-gons), and --via bsp on an SDF run."""

import json

import numpy as np
import pytest
import torch
import trimesh

from fieldfit.cli import main
from fieldfit.mesh.topology import is_watertight

pytest.importorskip("manifold3d")

KEYS = {"chamfer_l2", "iou", "normal_consistency", "watertight", "faces", "convexes", "planes", "train_seconds",
        "prepare_seconds", "export_seconds", "convention"}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def open_l_mesh(tmp_path):
    """An L of two boxes as a triangle soup with one triangle missing (a broken input)."""
    a = trimesh.creation.box([1.0, 0.4, 0.6], trimesh.transformations.translation_matrix([-0.2, -0.3, 0]))
    b = trimesh.creation.box([0.4, 1.0, 0.6], trimesh.transformations.translation_matrix([-0.5, 0.2, 0]))
    soup = trimesh.util.concatenate([a, b])
    path = tmp_path / "l.obj"
    trimesh.Trimesh(soup.vertices, soup.faces[1:], process=False).export(path)
    return path


def test_cli_fits_exports_and_reexports(open_l_mesh, tmp_path):
    run = tmp_path / "run"
    assert main([str(open_l_mesh), "--method", "bsp", "--steps", "300", "--out", str(run), "--samples", "40000",
                 "--convexes", "8", "--batch", "2048"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert KEYS <= set(metrics)
    assert metrics["watertight"] is True and metrics["iou"] > 0.8 and metrics["convexes"] <= 8
    for name in ("config.json", "checkpoint.safetensors", "mesh.ply", "mesh.obj", "convexes.ply", "curve.png", "log"):
        assert (run / name).is_file(), name
    mesh = trimesh.load(run / "mesh.ply", process=False)
    assert is_watertight(mesh.vertices, mesh.faces) and len(mesh.faces) == metrics["faces"]
    ngons = [ln for ln in (run / "mesh.obj").read_text().splitlines() if ln.startswith("f ")]
    assert len(ngons) == metrics["polygons"] < metrics["faces"]
    out = tmp_path / "again.stl"
    assert main(["export", str(run), "--mesh", str(out)]) == 0
    again = trimesh.load(out, process=False)
    assert len(again.faces) == metrics["faces"]


def test_export_via_bsp_of_an_sdf_run(tmp_path):
    from fieldfit.methods.bsp import export_from_run
    from fieldfit.runs import Run

    run = tmp_path / "rbf"
    assert main(["csg", "--method", "rbf", "--steps", "200", "--out", str(run), "--samples", "50000",
                 "--resolution", "64"]) == 0
    out = tmp_path / "proxy.ply"
    m = export_from_run(Run.open(run), out, {"convexes": 6, "device": "cpu", "steps": 60})
    proxy = trimesh.load(out, process=False)
    assert m["watertight"] and is_watertight(proxy.vertices, proxy.faces) and m["convexes"] <= 6
    assert m["iou"] > 0.4  # six convexes for a genus-2 part: a coarse proxy
    assert np.all(np.abs(proxy.vertices) <= 1.0 + 1e-6)  # csg's frame is the unit frame
