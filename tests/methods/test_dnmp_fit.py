"""DNMP end to end on the built-in blocks scene: fit, renders, metrics, export, eval, render."""

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow  # end-to-end dnmp fits (rbf point fit, stages): the full suite runs them


@pytest.fixture(scope="module")
def dnmp_run(tmp_path_factory):
    from fieldfit.cli import main
    from fieldfit.methods.dnmp import autoencoder as dnmp_ae

    root = tmp_path_factory.mktemp("dnmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIELDFIT_CACHE", str(root / "cache"))
    mp.setenv("OMP_NUM_THREADS", "1")
    enc, dec, code = dnmp_ae.train_autoencoder(steps=300, batch=256)  # quick weights instead of the full ones
    dnmp_ae.save(root / "cache" / dnmp_ae.FILE, enc, dec, code)
    out = root / "run"
    # --steps, not a time budget: the fit must not depend on how busy the machine is
    assert main(["blocks", "--method", "dnmp", "--steps", "120", "--downscale", "2", "--batch", "2048",
                 "--resolution", "48", "--out", str(out)]) == 0
    yield out
    mp.undo()


def _mean_colour_psnr():
    from fieldfit.render.metrics import psnr
    from fieldfit.scenes import load_scene
    from fieldfit.scenes.builtin import blocks_scene_dir

    s = load_scene(blocks_scene_dir(), downscale=2)
    m = np.mean([s.image(i).reshape(-1, 3).mean(0) for i in s.split("train")], 0).astype(np.float32)
    return float(np.mean([psnr(np.broadcast_to(m, s.image(i).shape), s.image(i)) for i in s.split("test")]))


def test_fit_writes_radiance_outputs(dnmp_run):
    m = json.loads((dnmp_run / "metrics.json").read_text())
    assert m["task"] == "radiance"
    for key in ("train_seconds", "render_ms_per_frame", "render_ms_per_1k_pixels", "peak_mb_per_1k_pixels"):
        assert m[key] >= 0, key
    assert m["test"]["psnr"] > _mean_colour_psnr() + 2.0
    assert 0 < m["test"]["ssim"] <= 1
    assert len(list((dnmp_run / "renders").glob("test_*.png"))) == m["test"]["views"]
    assert m["watertight"] is True


def test_export_eval_and_render(dnmp_run, tmp_path):
    from fieldfit.cli import main
    from fieldfit.mesh import is_watertight
    from fieldfit.mesh.io import load_mesh

    out = tmp_path / "m.ply"
    assert main(["export", str(dnmp_run), "--mesh", str(out), "--resolution", "64"]) == 0
    mesh = load_mesh(out)
    v, f = mesh.vertices, mesh.faces
    assert len(f) > 0
    assert is_watertight(v, f)
    before = json.loads((dnmp_run / "metrics.json").read_text())["test"]["psnr"]
    assert main(["eval", str(dnmp_run)]) == 0
    after = json.loads((dnmp_run / "metrics.json").read_text())["test"]["psnr"]
    assert abs(after - before) < 1e-3  # the checkpoint renders what training rendered
    video = tmp_path / "orbit.gif"  # .gif: no optional writer needed (.mp4 is tested with rbf)
    assert main(["render", str(dnmp_run), "--path", "orbit", "--frames", "3", "--out", str(video)]) == 0
    assert len(iio.imread(video)) == 3


def test_points_are_the_opaque_primitive_vertices_and_depth_is_refused(dnmp_run, tmp_path):
    import trimesh

    from conftest import run_main
    from fieldfit.scenes import procedural

    out = tmp_path / "points.ply"
    res = run_main("export", dnmp_run, "--points", out, "--max-points", "4000")
    assert res.returncode == 0, res.stderr
    assert "property float nx" in out.read_bytes().split(b"end_header")[0].decode()
    p = np.asarray(trimesh.load(out).vertices)
    assert 100 < len(p) <= 4000
    near_sphere = [np.abs(np.linalg.norm(p - np.asarray(c), axis=1) - r) for c, r, _ in procedural._SPHERES]
    lo, hi = (np.asarray(b) for b in procedural._BOX)
    in_slab_box = (p > lo - 0.15).all(1) & (p < hi + 0.15).all(1)
    assert np.mean((np.min(near_sphere, 0) < 0.15) | in_slab_box) > 0.9  # primitives sit on the scene's surfaces
    res = run_main("render", dnmp_run, "--path", "test", "--pass", "depth", "--out", tmp_path / "d")
    assert res.returncode == 2
    assert "carry no depth" in res.stderr


def test_resume_continues_the_radiance_stage(dnmp_run, tmp_path):
    import shutil

    from fieldfit.cli import main

    run = tmp_path / "run"
    shutil.copytree(dnmp_run, run)
    before = json.loads((run / "metrics.json").read_text())
    assert main(["--resume", str(run), "--steps", "130"]) == 0
    assert "resumed the radiance stage from step 120" in (run / "log").read_text()
    after = json.loads((run / "metrics.json").read_text())
    assert after["steps"] == 130
    assert after["watertight"] is True
    assert after["test"]["psnr"] > before["test"]["psnr"] - 0.3  # the optimizer states came back with the weights


def test_resume_before_the_radiance_stage_starts_from_the_kept_point_fit(dnmp_run, tmp_path):
    import shutil

    from fieldfit.cli import main

    assert (dnmp_run / "points" / "checkpoint.safetensors").is_file()  # the rbf point fit, an rbf run
    assert main(["view", str(dnmp_run / "points"), "--screenshot", str(tmp_path / "p.png"), "--size", "32x24"]) == 0
    run = tmp_path / "run"
    shutil.copytree(dnmp_run, run)
    (run / "checkpoint.safetensors").unlink()  # stopped before the radiance stage wrote one
    (run / "metrics.json").unlink()
    assert main(["--resume", str(run), "--steps", "20"]) == 0
    log = (run / "log").read_text()
    assert "resume: the point fit" in log
    assert "dnmp: points from the rbf run" in log
    assert "rbf point fit" not in log.split("resume: the point fit")[1]  # no second point fit
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["watertight"] is True
    assert metrics["mesh_resolution"] == 48  # the run's own options go on (--resolution 48), not the defaults


def test_the_loaded_run_renders_any_camera(dnmp_run):
    import fieldfit

    model = fieldfit.load(dnmp_run, "cpu")
    cam = model.cameras("test")[0].resized(32, 24)
    img = model.render(cam)
    assert img.rgb.shape == (24, 32, 3)
    assert float(img.rgb.std()) > 0
    assert 0.05 < float(img.opacity.mean()) < 0.95  # the blocks fill part of the view


def test_points_from_a_short_rbf_fit(tmp_path):
    """The source for scenes without points or alpha: surface cells of a quick rbf fit, inside the box."""
    from fieldfit.methods.dnmp.config import DNMPConfig
    from fieldfit.methods.dnmp.points import scene_points
    from fieldfit.runs import Run
    from fieldfit.scenes import load_scene
    from fieldfit.scenes.builtin import blocks_scene_dir
    from fieldfit.scenes.inputs import Input
    from fieldfit.trainer import Budget

    scene = load_scene(blocks_scene_dir())
    inp = Input("radiance", None, "blocks", "blocks")
    cfg = DNMPConfig(points="rbf", voxel=0.01)
    pts, source, density, voxel = scene_points(scene, inp, cfg, Budget(time_budget=4.0), "cpu",
                                               Run.create(tmp_path / "r"))
    assert voxel >= 0.01
    assert source == "rbf density fit"
    assert len(pts) > 50
    # the fit's density, for the primitive shapes: solid at most of the surface points it gave
    assert density.sigma_min > 0
    assert (density.fn(torch.as_tensor(pts).float()) > density.sigma_min).float().mean() > 0.5
    assert np.all(pts >= scene.aabb[0])
    assert np.all(pts <= scene.aabb[1])
    spread = pts.max(0) - pts.min(0)
    assert np.all(spread < 0.9 * (scene.aabb[1] - scene.aabb[0]))  # a shape, not the whole box


def test_sphere_shapes_get_the_photometric_geometry_stage(dnmp_run, tmp_path):
    """Density shapes skip the photometric geometry stage (geo_frac 0); spheres, which have nothing
    else to shape them, get a tenth of the steps there, and it moves their latents."""
    from fieldfit.cli import main
    from fieldfit.runs import Run

    assert "dnmp geometry stage: 0 steps" in (dnmp_run / "log").read_text()
    out = tmp_path / "sphere"
    assert main(["blocks", "--method", "dnmp", "--shapes", "sphere", "--steps", "40", "--downscale", "2",
                 "--batch", "2048", "--resolution", "32", "--out", str(out)]) == 0
    assert "dnmp geometry stage: 4 steps" in (out / "log").read_text()
    lat = Run.open(out).load_checkpoint()[0]["model.levels.0.latents"]
    assert (lat - lat[:1]).abs().max() > 0  # no longer the one sphere code for all
    with open(out / "metrics.csv", newline="") as f:  # the geometry stage's rows, then the radiance stage's
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps))
    assert steps[0] == 1
    assert 4 in steps
    assert steps[-1] == 40
    with open(dnmp_run / "points" / "metrics.csv", newline="") as f:  # the rbf point fit's, in the run kept of it
        assert int(list(csv.DictReader(f))[-1]["step"]) > 0


def test_points_from_a_finished_rbf_run(dnmp_run, tmp_path, capsys):
    """--points RUN: the density of an rbf run already made on the scene, no second fit (here with
    outline supersampling on); other runs are refused."""
    from fieldfit.cli import main

    rbf = tmp_path / "rbf"
    assert main(["blocks", "--method", "rbf", "--steps", "60", "--downscale", "2", "--resolution", "32",
                 "--out", str(rbf)]) == 0
    out = tmp_path / "dnmp"
    assert main(["blocks", "--method", "dnmp", "--points", str(rbf), "--steps", "20", "--antialias", "on",
                 "--downscale", "2", "--batch", "2048", "--resolution", "32", "--out", str(out)]) == 0
    log = (out / "log").read_text()
    assert f"points from the rbf run {rbf}" in log
    assert "rbf point fit" not in log
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["points"] == f"rbf run {rbf}"
    assert cfg["antialias"] is True
    before = json.loads((out / "metrics.json").read_text())["test"]["psnr"]
    assert main(["eval", str(out)]) == 0  # the reloaded run renders with the same outline samples
    assert abs(json.loads((out / "metrics.json").read_text())["test"]["psnr"] - before) < 1e-3
    capsys.readouterr()
    assert main(["blocks", "--method", "dnmp", "--points", str(dnmp_run), "--steps", "5",
                 "--out", str(tmp_path / "bad")]) != 0
    said = capsys.readouterr()
    assert "rbf radiance run" in said.out + said.err
