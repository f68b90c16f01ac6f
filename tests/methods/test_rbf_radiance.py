"""End to end: `fieldfit blocks --method rbf` (the built-in radiance scene), then eval, render, export.

One short fit (module fixture) serves every test: its test PSNR must clearly beat the best
constant colour, its outputs must follow the run-folder contract, and the subcommands must work
on it.
"""

import importlib.util
import json

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.cli import main
from fieldfit.render.metrics import psnr
from fieldfit.scenes import load_scene
from fieldfit.scenes.builtin import blocks_scene_dir

STEPS = 120
DOWNSCALE = 2  # 32 x 32 views: a fit of about 15 s on 2 CPU cores


@pytest.fixture(scope="module")
def blocks_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("radiance") / "blocks"
    log = "tensorboard" if importlib.util.find_spec("tensorboard") else "csv"
    rc = main(["blocks", "--method", "rbf", "--steps", str(STEPS), "--downscale", str(DOWNSCALE), "--levels", "2",
               "--max-res", "32", "--resolution", "48", "--out", str(out), "--log", log])
    assert rc == 0
    return out


def test_logs_of_a_radiance_fit(blocks_run):
    """metrics.csv counts rays; TensorBoard holds a test view; LPIPS is measured or its absence explained."""
    import csv

    with open(blocks_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["step"]) == STEPS
    assert float(rows[-1]["rays_per_s"]) > 0
    assert float(rows[-1]["eval_psnr"]) > 0
    test = json.loads((blocks_run / "metrics.json").read_text())["test"]
    assert test["lpips"] is not None or test["lpips_unavailable"], test  # never a silent null
    if (blocks_run / "tensorboard").is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(blocks_run / "tensorboard"), size_guidance={"images": 0})
        events.Reload()
        last = events.Images("test_view")[-1]
        assert (last.step, last.width, last.height) == (STEPS, 32, 32)  # the first test view, at its size


def mean_colour_baseline() -> float:
    """PSNR of the test views predicted by the mean training colour (on the scene's background)."""
    scene = load_scene(blocks_scene_dir(), downscale=DOWNSCALE)
    mean = np.mean([scene.image(i).reshape(-1, 3) for i in scene.split("train")], axis=(0, 1))
    return float(np.mean([psnr(np.broadcast_to(mean, scene.image(i).shape).copy(), scene.image(i))
                          for i in scene.split("test")]))


def test_fit_beats_the_mean_colour(blocks_run):
    m = json.loads((blocks_run / "metrics.json").read_text())
    base = mean_colour_baseline()
    assert m["test"]["psnr"] > base + 6.0, (m["test"]["psnr"], base)
    assert 0.0 < m["test"]["ssim"] <= 1.0


def test_run_folder_contract(blocks_run):
    m = json.loads((blocks_run / "metrics.json").read_text())
    assert m["task"] == "radiance"
    for key in ("train_seconds", "render_ms_per_frame", "rays_per_second", "prepare_seconds", "export_seconds",
                "params", "samples_per_ray"):
        assert isinstance(m[key], (int, float)), key
        assert m[key] > 0, key
    scene = load_scene(blocks_scene_dir(), downscale=DOWNSCALE)
    test = scene.split("test")
    assert m["test"]["views"] == len(test)
    for k, i in enumerate(test):
        img = iio.imread(blocks_run / "renders" / f"test_{k:03d}.png")
        cam = scene.frames[i].camera
        assert img.shape == (cam.height, cam.width, 3)
        assert img.dtype == np.uint8
    assert not (blocks_run / "renders" / f"test_{len(test):03d}.png").exists()
    cfg = json.loads((blocks_run / "config.json").read_text())
    assert cfg["task"] == "radiance"
    assert cfg["method"] == "rbf"
    assert (blocks_run / "checkpoint.safetensors").is_file()
    assert (blocks_run / "mesh.ply").is_file()


def test_eval_subcommand_reproduces_the_metrics(blocks_run, capsys):
    before = json.loads((blocks_run / "metrics.json").read_text())["test"]["psnr"]
    assert main(["eval", str(blocks_run), "--device", "cpu"]) == 0
    after = json.loads((blocks_run / "metrics.json").read_text())
    assert after["test"]["psnr"] == pytest.approx(before, abs=1e-3)  # same weights, same (unjittered) rays
    assert after["train_seconds"] > 0  # training entries are kept
    assert "test.psnr" in capsys.readouterr().out


def test_render_subcommand_writes_a_video(blocks_run, tmp_path):
    pytest.importorskip("imageio_ffmpeg")  # in the test extra; without it .mp4 is refused (tests/cli/test_logs.py)
    out = tmp_path / "orbit.mp4"
    assert main(["render", str(blocks_run), "--path", "orbit", "--frames", "4", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orbit.mp4"]
    assert iio.imread(out, plugin="FFMPEG").shape[0] == 4


def test_export_subcommand_gives_a_watertight_coloured_mesh(blocks_run, tmp_path):
    import trimesh

    out = tmp_path / "blocks.ply"
    assert main(["export", str(blocks_run), "--mesh", str(out), "--resolution", "48"]) == 0
    mesh = trimesh.load(out, process=False)
    assert len(mesh.faces) > 100
    assert mesh.is_watertight
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert colours.std() > 5  # coloured by the field, not a constant


def test_resume_continues_from_the_checkpoint(blocks_run):
    # last in this file: it rewrites the run folder
    assert main(["--resume", str(blocks_run), "--steps", str(STEPS + 10)]) == 0
    m = json.loads((blocks_run / "metrics.json").read_text())
    assert m["steps"] == STEPS + 10
    assert "resumed from step" in (blocks_run / "log").read_text()


def test_training_background_follows_alpha_and_is_checked(blocks_run, capsys):
    from types import SimpleNamespace

    from fieldfit.methods.rbf.config import NDC_MAX_RES, RadianceConfig

    alpha, opaque = SimpleNamespace(has_alpha=True, ndc=False), SimpleNamespace(has_alpha=False, ndc=False)
    assert RadianceConfig().with_scene(alpha).background == "random"  # blocks has alpha: learns it
    ndc = RadianceConfig().with_scene(SimpleNamespace(has_alpha=False, ndc=True))
    assert ndc.background == "random"
    assert (ndc.max_res, RadianceConfig().with_scene(alpha).max_res) == (NDC_MAX_RES, 128)  # NDC: finer planes
    # a box-bounded world scene (not contracted): black, no floaters in front of cameras; contracted photos train
    # on random colours (tests/methods/test_rbf_unbounded.py)
    assert RadianceConfig(contract="off").with_scene(opaque).background == "black"
    assert RadianceConfig(background="random", contract="off").with_scene(opaque).background == "random"
    assert json.loads((blocks_run / "config.json").read_text())["config"]["background"] == "random"
    rc = main(["blocks", "--method", "rbf", "--steps", "1", "--background", "grey",
               "--out", str(blocks_run.parent / "x")])
    assert rc == 2
    assert "--background" in capsys.readouterr().err


def test_grid_defaults_follow_the_device():
    from types import SimpleNamespace

    from fieldfit.methods.rbf.config import RadianceConfig
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import load_radiance_scene

    scene = load_radiance_scene(Input("radiance", None, "blocks", "blocks"))
    shape = lambda c: (c.grid, c.levels, c.features)  # noqa: E731 - a one-line view of a config's grid
    gpu = RadianceConfig().with_device("cuda", scene)  # a world-space scene on a GPU: instant-ngp's hash grid
    assert shape(gpu) == ("hash", 16, 2)
    assert 128 <= gpu.max_res <= 2048
    cpu = RadianceConfig().with_device("cpu", scene)
    assert shape(cpu) == ("triplane", 4, 4)
    assert cpu.max_res is None
    assert RadianceConfig.for_scene(scene, "cpu").max_res == 128
    tri = RadianceConfig(grid="triplane").with_device("cuda", scene)  # --grid wins
    assert shape(tri) == ("triplane", 4, 4)
    assert tri.max_res == min(512, max(128, gpu.max_res // 2))
    assert shape(RadianceConfig().with_device("cuda", SimpleNamespace(ndc=True))) == ("triplane", 4, 4)
    assert shape(RadianceConfig(grid="hash", levels=8).with_device("cpu", scene)) == ("hash", 8, 2)
    assert RadianceConfig(max_res=300).with_device("cuda", scene).max_res == 300


def test_refine_poses_trains_a_correction_per_photo_and_resumes(tmp_path):
    out = tmp_path / "run"
    tiny = ["--downscale", "4", "--levels", "2", "--max-res", "16", "--resolution", "16"]
    assert main(["blocks", "--steps", "12", *tiny, "--refine-poses", "on", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    train = len(load_scene(blocks_scene_dir(), downscale=4).split("train"))
    assert cfg["pose_images"] == train
    from safetensors import safe_open

    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        delta = f.get_tensor("model.poses.delta")
    assert delta.shape == (train, 6)
    assert float(delta.abs().max()) > 0  # trained
    assert float(delta.mean(0).abs().max()) < 1e-5  # the gauge: no shared correction
    assert "pose_corrections" in json.loads((out / "metrics.json").read_text())
    assert main(["--resume", str(out), "--steps", "16"]) == 0
    assert main(["blocks", "--refine-poses", "maybe", "--out", str(tmp_path / "bad")]) == 2
