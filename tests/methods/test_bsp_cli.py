"""fieldfit SHAPE --method bsp, fieldfit export RUN (n-gons), and --via bsp on SDF runs."""

import json

import numpy as np
import pytest
import torch
import trimesh

from fieldfit.cli import main
from fieldfit.mesh.topology import is_watertight, signed_volume
from fieldfit.runs import Run

pytest.importorskip("manifold3d")

KEYS = {"chamfer_l2", "iou", "normal_consistency", "watertight", "faces", "convexes", "planes", "train_seconds",
        "prepare_seconds", "export_seconds", "convention"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bsp_run(tmp_path_factory):
    """A bsp fit of an L of two boxes given as a soup with one triangle missing (broken input)."""
    tmp = tmp_path_factory.mktemp("bsp")
    a = trimesh.creation.box([1.0, 0.4, 0.6], trimesh.transformations.translation_matrix([-0.2, -0.3, 0]))
    b = trimesh.creation.box([0.4, 1.0, 0.6], trimesh.transformations.translation_matrix([-0.5, 0.2, 0]))
    soup = trimesh.util.concatenate([a, b])
    mesh = tmp / "l.obj"
    trimesh.Trimesh(soup.vertices, soup.faces[1:], process=False).export(mesh)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    code = main([str(mesh), "--method", "bsp", "--steps", "300", "--out", str(tmp / "run"), "--train-points", "40000",
                 "--convexes", "8", "--batch", "2048", "--iou-points", "100000"])
    torch.set_num_threads(n)
    assert code == 0
    return tmp / "run"


def test_cli_fit_writes_the_run_folder(bsp_run):
    metrics = json.loads((bsp_run / "metrics.json").read_text())
    assert KEYS <= set(metrics)
    assert metrics["watertight"] is True
    assert metrics["iou"] > 0.85
    assert metrics["convexes"] <= 8
    for name in ("config.json", "checkpoint.safetensors", "mesh.ply", "mesh.obj", "convexes.ply", "curve.png", "log"):
        assert (bsp_run / name).is_file(), name
    mesh = trimesh.load(bsp_run / "mesh.ply", process=False)
    assert is_watertight(mesh.vertices, mesh.faces)
    assert len(mesh.faces) == metrics["faces"]
    ngons = [ln for ln in (bsp_run / "mesh.obj").read_text().splitlines() if ln.startswith("f ")]
    assert len(ngons) == metrics["polygons"] < metrics["faces"]
    coloured = trimesh.load(bsp_run / "convexes.ply", process=False)
    assert len(coloured.faces) == metrics["faces"]


def test_cli_reexport_from_the_checkpoint(bsp_run, tmp_path):
    metrics = json.loads((bsp_run / "metrics.json").read_text())
    out = tmp_path / "again.stl"
    assert main(["export", str(bsp_run), "--mesh", str(out)]) == 0
    again = trimesh.load(out, process=False)
    assert len(again.faces) == metrics["faces"]
    assert abs(signed_volume(again.vertices, again.faces)) > 0


def test_eval_measures_the_checkpoint_again(bsp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(bsp_run, run)
    before = json.loads((run / "metrics.json").read_text())
    assert main(["eval", str(run)]) == 0
    after = json.loads((run / "metrics.json").read_text())
    for k in ("iou", "chamfer_l2", "faces", "convexes", "watertight"):
        assert after[k] == before[k], k
    assert after["train_seconds"] == before["train_seconds"]  # the fit's own keys stay


def test_export_via_bsp_of_a_bsp_run(bsp_run, tmp_path):
    import fieldfit
    from fieldfit.methods.bsp.proxy import export_via_bsp
    from fieldfit.trainer import Budget

    out = tmp_path / "proxy.obj"
    m = export_via_bsp(fieldfit.load(bsp_run, "cpu"), out, convexes=4, budget=Budget(steps=200))
    assert m["watertight"]
    assert m["convexes"] <= 4
    assert m["iou"] > 0.8
    faces = [ln.split()[1:] for ln in out.read_text().splitlines() if ln.startswith("f ")]
    assert max(map(len, faces)) > 3  # .obj keeps n-gons


def test_export_via_bsp_lands_in_the_runs_frame(tmp_path):
    """A run whose occupancy is an exact sphere of radius 0.25 at (1, 2, 3) (its unit frame: centre (1, 2, 3),
    scale 2, where the sphere has radius 0.5)."""
    from types import SimpleNamespace

    from fieldfit.methods.bsp.proxy import export_via_bsp
    from fieldfit.model import Occupancy
    from fieldfit.trainer import Budget

    centre = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    occ = Occupancy(lambda x: (x.double() - centre).norm(dim=1) < 0.25, np.array([1.0, 2.0, 3.0]), 2.0)
    model = SimpleNamespace(run=Run.create(tmp_path / "r"), occupancy=lambda: occ)
    out = tmp_path / "proxy.ply"
    m = export_via_bsp(model, out, convexes=4, budget=Budget(steps=200))
    mesh = trimesh.load(out, process=False)
    assert m["watertight"]
    assert is_watertight(mesh.vertices, mesh.faces)
    assert m["iou"] > 0.8
    box_centre = 0.5 * (mesh.vertices.min(0) + mesh.vertices.max(0))
    assert np.allclose(box_centre, [1, 2, 3], atol=0.05)  # back in the run's frame: unit / 2 + centre
    assert signed_volume(mesh.vertices, mesh.faces) == pytest.approx(4 / 3 * np.pi * 0.25**3, rel=0.25)


def test_export_via_bsp_refuses_an_image_run(tmp_path, capsys):
    run = tmp_path / "img"
    assert main(["rings", "--steps", "2", "--out", str(run)]) == 0
    assert main(["export", str(run), "--mesh", str(tmp_path / "x.ply"), "--via", "bsp"]) == 2
    assert "no geometry" in capsys.readouterr().err
    assert not (tmp_path / "x.ply").exists()
