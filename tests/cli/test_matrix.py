"""Every method on a tiny built-in scene through every command: fit, eval, export (a mesh that stays watertight
when welded), export --via bsp, render a video, a viewer screenshot. All exit 0 (or say in one line why a command
does not apply, exit 2)."""

import json

import numpy as np
import pytest
import trimesh

from fieldfit.cli import main

# (method, scene, flags of a tiny fit)
CASES = {
    "rbf-image": ("rbf", "rings", ["--steps", "40", "--levels", "3", "--max-res", "64"]),
    "rbf-sdf": ("rbf", "csg", ["--steps", "150", "--train-points", "50000", "--levels", "3", "--max-res", "32",
                               "--resolution", "48", "--iou-points", "50000"]),
    "rbf-radiance": ("rbf", "blocks", ["--steps", "80", "--downscale", "2", "--levels", "2", "--max-res", "32",
                                       "--resolution", "48"]),
    "bsp": ("bsp", "csg", ["--steps", "150", "--train-points", "40000", "--convexes", "8", "--iou-points", "50000"]),
    "pronerf": ("pronerf", "blocks", ["--steps", "60", "--downscale", "2", "--levels", "2", "--max-res", "32",
                                      "--samples", "8", "--resolution", "48"]),
    "dnmp": ("dnmp", "blocks", ["--steps", "60", "--downscale", "2", "--resolution", "48", "--batch", "2048"]),
}
GEOMETRY = [k for k in CASES if k != "rbf-image"]


def score(metrics: dict) -> float:
    """The task's quality figure: test PSNR (radiance), PSNR (image) or IoU (shapes)."""
    return metrics["test"]["psnr"] if "test" in metrics else metrics.get("psnr", metrics.get("iou"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("matrix")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIELDFIT_CACHE", str(root / "cache"))  # dnmp's auto-encoder: quick weights, not the full ones
    from fieldfit.methods.dnmp import autoencoder

    enc, dec, code = autoencoder.train_autoencoder(steps=200, batch=256)
    autoencoder.save(root / "cache" / autoencoder.FILE, enc, dec, code)
    out = {}
    for key, (method, scene, flags) in CASES.items():
        path = root / key
        assert main([scene, "--method", method, "--out", str(path), *flags]) == 0, key
        out[key] = path
    yield out
    mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("key", list(CASES))
def test_fit_and_eval(runs, key):
    run = runs[key]
    before = json.loads((run / "metrics.json").read_text())
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    after = json.loads((run / "metrics.json").read_text())
    assert score(after) == pytest.approx(score(before), abs=1e-3)  # the checkpoint measures what the fit did
    assert json.loads((run / "config.json").read_text())["method"] == CASES[key][0]


@pytest.mark.slow
@pytest.mark.parametrize("key", GEOMETRY)
def test_export_mesh_stays_watertight_when_welded(runs, key, tmp_path):
    out = tmp_path / f"{key}.ply"
    assert main(["export", str(runs[key]), "--mesh", str(out)]) == 0
    welded = trimesh.load(out, process=True)  # trimesh's default: coincident vertices merged, as most tools do
    assert len(welded.faces) > 0
    assert welded.is_watertight
    assert welded.is_winding_consistent
    assert welded.volume > 0


@pytest.mark.slow
@pytest.mark.parametrize("key", GEOMETRY)
def test_export_via_bsp(runs, key, tmp_path):
    out = tmp_path / f"{key}.obj"
    assert main(["export", str(runs[key]), "--mesh", str(out), "--via", "bsp", "--convexes", "4",
                 "--steps", "60"]) == 0
    mesh = trimesh.load(out, process=False, force="mesh")
    assert len(mesh.faces) > 0
    assert np.isfinite(mesh.vertices).all()


@pytest.mark.slow
@pytest.mark.parametrize("key", GEOMETRY)
def test_render_a_video(runs, key, tmp_path):
    out = tmp_path / f"{key}.gif"
    assert main(["render", str(runs[key]), "--path", "orbit", "--frames", "2", "--out", str(out)]) == 0
    assert out.is_file()
    assert out.stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("key", list(CASES))
def test_viewer_screenshot(runs, key, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / f"{key}.png"
    assert main(["view", str(runs[key]), "--screenshot", str(out), "--size", "40x30"]) == 0
    img = iio.imread(out)
    assert img.shape == (30, 40, 3)
    assert img.std() > 0


def test_commands_that_do_not_apply_say_so(tmp_path, capsys):
    run = tmp_path / "img"
    assert main(["rings", "--steps", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--mesh", str(tmp_path / "m.ply")]) == 2
    assert main(["render", str(run), "--out", str(tmp_path / "v.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("fieldfit: error:") for line in err)
