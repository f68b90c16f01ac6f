"""The command line end to end: bad inputs, tiny fits of each task, export, resume."""

import json

import numpy as np
import pytest

from conftest import data_path, run_cli, run_main
from fieldfit.runs import Run


def _one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("fieldfit: error:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_file(tmp_path):
    _one_line_error(run_cli(tmp_path / "nope.png"), "nope.png", "no such file")


def test_unknown_extension(tmp_path):
    p = tmp_path / "shape.xyz"
    p.write_text("1 2 3\n")
    _one_line_error(run_cli(p), "shape.xyz", "unknown file type")


def test_empty_image(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _one_line_error(run_main(p), "empty.png", "empty")


def test_unreadable_image(tmp_path):
    p = tmp_path / "junk.png"
    p.write_bytes(b"not a png at all" * 10)
    _one_line_error(run_main(p, cwd=tmp_path), "junk.png", "cannot decode")
    assert not any((tmp_path / "runs").glob("*"))  # no empty run folder left behind


def test_bad_input_keeps_an_existing_out_folder(tmp_path):
    p, out = tmp_path / "junk.png", tmp_path / "mine"
    p.write_bytes(b"not a png at all" * 10)
    out.mkdir()
    _one_line_error(run_main(p, "--out", out), "junk.png", "cannot decode")
    assert out.is_dir()  # the folder was the user's: left in place


def test_empty_mesh(tmp_path):
    p = tmp_path / "empty.obj"
    p.write_text("# nothing\n")
    _one_line_error(run_main(p), "empty.obj")


def test_nan_vertices(tmp_path):
    p = tmp_path / "nan.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    _one_line_error(run_main(p), "nan.obj", "NaN")


def test_directory_with_nothing_usable(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    _one_line_error(run_main(tmp_path), str(tmp_path.name), "nothing fieldfit can use")


def test_unknown_method(tmp_path):
    _one_line_error(run_main("csg", "--method", "nerf"), "--method nerf", "unknown method")


def test_builtin_list():
    res = run_main("scenes")
    assert res.returncode == 0
    assert "csg" in res.stdout
    assert "rings" in res.stdout


def test_image_fit_end_to_end(tmp_path):
    import imageio.v3 as iio

    img = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "noise.png", img)
    out = tmp_path / "run"
    res = run_main(tmp_path / "noise.png", "--method", "rbf", "--steps", "300", "--out", out, "--batch", "960")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "image"
    assert m["params"] > 0
    assert m["train_seconds"] > 0
    assert m["psnr"] > 25.0  # per-pixel grid memorises white noise well above the 11 dB of a constant
    rec = iio.imread(out / "reconstruction.png")
    assert rec.shape == img.shape
    for name in ("config.json", "checkpoint.safetensors", "log", "curve.png"):
        assert (out / name).is_file(), name
    assert "results:" in res.stdout
    # eval: the checkpoint against the input again gives the fit's numbers
    res = run_main("eval", out)
    assert res.returncode == 0, res.stderr
    again = json.loads((out / "metrics.json").read_text())
    assert abs(again["psnr"] - m["psnr"]) < 1e-6
    assert again["train_seconds"] == m["train_seconds"]
    iio.imwrite(tmp_path / "noise.png", img[:20])  # the input changed size since the fit
    _one_line_error(run_main("eval", out), "noise.png", "the run fitted 40x24x3")


def test_image_fit_with_a_grid_ratio(tmp_path):
    import imageio.v3 as iio

    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], -1) * 0.5 + 0.5
    iio.imwrite(tmp_path / "waves.png", (img * 255).astype(np.uint8))
    out = tmp_path / "run"
    res = run_main(tmp_path / "waves.png", "--steps", "150", "--out", out, "--grid-ratio", "0.25",
                  "--levels", "3", "--base-res", "8")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["grid_params"] <= 0.25 * m["image_values"]
    assert m["psnr"] > 25.0, m  # smooth waves fit well on a quarter-size grid
    saved = Run.open(out).load_checkpoint()[0]
    assert any(k.startswith("train.") for k in saved)  # the trained weights beside their average ('model.')
    res = run_main("eval", out)  # the checkpoint's model is the average the fit measured
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "metrics.json").read_text())["psnr"] == pytest.approx(m["psnr"], abs=1e-6)
    # the optimizer has a group per level (their rates: the levels'); a resume keeps them and refuses another P
    _one_line_error(run_main("--resume", out, "--steps", "160", "--level-lr", "0"), "--level-lr 0",
                    "the run has --level-lr 0.3")
    res = run_main("--resume", out, "--steps", "155")
    assert res.returncode == 0, res.stderr
    lrs = [g["base_lr"] for g in Run.open(out).checkpoint_meta()["optim_groups"]]
    assert lrs[0] == lrs[-1] == 2e-2  # the decoder's and the finest level's
    assert lrs[1] < lrs[2] < lrs[3]  # levels coarse to fine
    res = run_main(tmp_path / "waves.png", "--steps", "5", "--out", tmp_path / "r2", "--grid-ratio", "0.0001")
    _one_line_error(res, "--grid-ratio", "too small")


def test_sdf_fit_builtin_export_and_resume(tmp_path):
    out = tmp_path / "csg"
    res = run_main("csg", "--steps", "200", "--batch", "16384", "--out", out, "--train-points", "100000",
                   "--resolution", "64", "--iou-points", "100000", "--levels", "3", "--max-res", "48")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "sdf"
    assert m["watertight"] is True
    assert m["iou"] > 0.6, m  # 200 steps on a small grid: coarse, but clearly the part
    for k in ("chamfer_l2", "normal_consistency", "params", "prepare_seconds", "export_seconds", "convention"):
        assert k in m
    exp = tmp_path / "again.obj"
    res = run_main("export", out, "--mesh", exp, "--resolution", "48")
    assert res.returncode == 0, res.stderr
    assert exp.is_file()
    res = run_main("--resume", out, "--steps", "230")
    assert res.returncode == 0, res.stderr
    assert "resumed from step 200" in (out / "log").read_text()
    assert json.loads((out / "metrics.json").read_text())["steps"] >= 230
    # a turntable of the shaded surface: frames differ as the camera turns, the part stands out of the background
    import imageio.v3 as iio

    gif = tmp_path / "turn.gif"
    res = run_main("render", out, "--out", gif, "--frames", "4")
    assert res.returncode == 0, res.stderr
    frames = iio.imread(gif)[..., :3].astype(int)
    assert frames.shape == (4, 512, 512, 3)
    assert np.abs(frames[0] - frames[1]).mean() > 1.0
    assert frames[0].std() > 10
    _one_line_error(run_main("render", out, "--path", "spiral", "--out", gif), "--path spiral", "use --path orbit")
    before = json.loads((out / "metrics.json").read_text())
    res = run_main("eval", out)
    assert res.returncode == 0, res.stderr
    after = json.loads((out / "metrics.json").read_text())
    assert after["iou"] == before["iou"]
    assert after["chamfer_l2"] == before["chamfer_l2"]


def test_export_of_a_missing_run(tmp_path):
    _one_line_error(run_main("export", tmp_path, "--mesh", tmp_path / "x.ply"), "not a run folder")


def test_export_of_a_radiance_run_without_density_says_so(tmp_path):
    """Two steps leave the field empty: export fails with the reason, not 'wrote x.ply' and no file."""
    out = tmp_path / "run"
    assert run_main("blocks", "--steps", "2", "--resolution", "16", "--out", out).returncode == 0
    mesh = tmp_path / "x.ply"
    _one_line_error(run_main("export", out, "--mesh", mesh, "--resolution", "32"), "no mesh written", "train longer")
    assert not mesh.exists()


@pytest.mark.data
def test_broken_shared_mesh_fits(tmp_path):
    mesh = data_path("meshes", "bunny_zipper_res2.ply")
    out = tmp_path / "bz"
    res = run_main(mesh, "--steps", "200", "--batch", "16384", "--out", out, "--train-points", "100000",
                   "--resolution", "64", "--iou-points", "100000", "--levels", "3", "--max-res", "48")
    assert res.returncode == 0, res.stderr
    log = (out / "log").read_text()
    assert "non-manifold" in log  # the log says what was wrong with the input
    assert json.loads((out / "metrics.json").read_text())["watertight"] is True


def test_long_loops_after_training_show_progress(capsys, tmp_path):
    """Test renders and videos print 'label k/n | elapsed | left' (here not a terminal: a line at the end)."""
    from fieldfit.runs import Run
    from fieldfit.trainer import counted

    assert list(counted([1, 2, 3], "frames")) == [1, 2, 3]
    assert "frames 3/3 |" in capsys.readouterr().out
    run = Run.create(tmp_path / "run")
    assert list(counted("ab", "test views", run)) == ["a", "b"]
    assert "test views 2/2 |" in (run.path / "log").read_text()


def test_ctrl_c_says_whether_there_is_a_checkpoint(tmp_path, monkeypatch, capsys):
    from fieldfit.cli import main
    from fieldfit.methods import rbf

    def stopped(job, checkpoint):
        if checkpoint:
            job.run.save_checkpoint({"model.w": __import__("torch").zeros(1)}, {"step": 3})
        raise KeyboardInterrupt

    for checkpoint, says in ((False, "nothing to resume"), (True, "continue with fieldfit --resume")):
        monkeypatch.setattr(rbf, "fit", lambda job, c=checkpoint: stopped(job, c))
        assert main(["rings", "--steps", "3", "--out", str(tmp_path / f"run{checkpoint}")]) == 130
        assert says in capsys.readouterr().err


def test_video_frames_never_go_into_a_folder_with_other_files(tmp_path):
    from fieldfit.errors import InputError
    from fieldfit.render.video import write_video

    frames = [np.zeros((4, 6, 3), np.uint8)] * 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="holds other files"):
        write_video(frames, run)
    out, note = write_video(frames, tmp_path / "run.render")  # a name with an unknown suffix is a folder
    assert out == tmp_path / "run.render"
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png",
                                                                                          "frame_0001.png"]
    assert "PNG frames" in note
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.safetensors"]
    assert write_video(frames, out)[0] == out  # frames again into a folder of frames: fine
    assert write_video(frames, tmp_path / "v.gif")[0].is_file()
