"""Experiment logs (``fieldfit.logs``): RUN/metrics.csv on every fit, TensorBoard events on request, and the
install and accelerator messages around them (tensorboard or imageio-ffmpeg missing, tinycudann missing)."""

import csv
import json
import sys

import pytest
import torch

from conftest import run_main
from fieldfit import logs
from fieldfit.optim import make_adam, set_lr
from fieldfit.runs import Run, model_state
from fieldfit.trainer import Budget, fit_loop

TINY = ("rings", "--levels", "2", "--max-res", "32", "--units", "8")  # a rbf image fit of a second or two


@pytest.fixture
def every_step(monkeypatch):
    """A metrics.csv row after every step (instead of every second of training)."""
    monkeypatch.setattr(logs, "LOG_EVERY_S", 0.0)


def rows(run) -> tuple[list[str], list[dict]]:
    """(the header line's columns, the rows) of RUN/metrics.csv, checking the header appears once."""
    text = (run / "metrics.csv").read_text()
    header = text.splitlines()[0]
    assert text.count(header) == 1, text
    with open(run / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def one_error_line(res, *names):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])


def test_metrics_csv_has_one_header_increasing_steps_and_a_resume_appends(tmp_path, every_step):
    run = tmp_path / "run"
    assert run_main(*TINY, "--steps", "6", "--out", run).returncode == 0
    columns, first = rows(run)
    assert columns == ["step", "seconds", "loss", "psnr", "lr", "pixels_per_s", "eval_psnr"]
    assert [int(r["step"]) for r in first] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss"]) > 0 and float(r["pixels_per_s"]) > 0 and float(r["lr"]) > 0 for r in first)
    assert all(float(r["psnr"]) > 0 for r in first)  # an image fit's batch has colours
    assert first[-1]["eval_psnr"]  # the evaluation at the end is in the last row
    assert float(first[-1]["eval_psnr"]) == pytest.approx(json.loads((run / "metrics.json").read_text())["psnr"],
                                                          abs=0.5)
    # a row written after the checkpoint by a fit that was killed: the resume trains that step again
    with open(run / "metrics.csv", "a") as f:
        f.write("7,999.000,1,,,,\n")
    assert run_main("--resume", run, "--steps", "9").returncode == 0
    _, after = rows(run)
    steps = [int(r["step"]) for r in after]
    assert steps == list(range(1, 10))
    assert after[:6] == first  # the rows before the checkpoint are kept as they were
    assert all(r["seconds"] != "999.000" for r in after)
    seconds = [float(r["seconds"]) for r in after]
    assert seconds == sorted(seconds)  # training seconds go on from the checkpoint's


class Poisoned:
    """A linear fit whose loss is NaN once, at step 4 (the trainer rolls back to its last copy)."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.opt = make_adam([{"params": self.model.parameters(), "lr": 0.05}])
        self.x, self.poison = torch.randn(32, 3), {4}

    def __call__(self, i, progress):
        lr = set_lr(self.opt, progress, 0.1)
        loss = (self.model(self.x) ** 2).mean()
        if i in self.poison:
            self.poison.discard(i)
            loss = loss * float("nan")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "batch": len(self.x), "lr": lr}


def test_a_rollback_drops_the_rows_past_the_step_it_goes_back_to(tmp_path, every_step, monkeypatch):
    import fieldfit.trainer as trainer

    monkeypatch.setattr(trainer, "SNAPSHOT_EVERY_S", 1e9)  # one copy: the state at the start (step 0)
    run = Run.create(tmp_path / "run")
    run.log_options = logs.LogOptions()  # as api.prepare sets it for the fit that writes the run
    fit = Poisoned()
    fit_loop(fit, Budget(steps=8), run, state=model_state(fit.model, fit.opt), metric_name="iou", unit="points")
    columns, written = rows(run.path)
    assert columns[5:] == ["points_per_s", "eval_iou"]
    assert "rolled back to step 0" in (run.path / "log").read_text()
    assert [int(r["step"]) for r in written] == list(range(1, 9))  # steps 1-4 of the first try are gone
    assert all(r["psnr"] == "" and r["eval_iou"] == "" for r in written)  # no colours, no evaluation


def test_a_loop_on_a_run_no_fit_prepared_writes_no_logs(tmp_path, every_step):
    """A run opened to read, or trained into by another command (export --via bsp), keeps the fit's logs as they
    are: only the fit that api.prepare made the run for (run.log_options) writes them."""
    run = Run.create(tmp_path / "run")
    (run.path / "metrics.csv").write_text("step,seconds\n1,0.5\n")
    fit = Poisoned()
    fit.poison.clear()
    fit_loop(fit, Budget(steps=3), run, state=model_state(fit.model, fit.opt))
    assert (run.path / "metrics.csv").read_text() == "step,seconds\n1,0.5\n"
    assert not (run.path / "tensorboard").exists()


def test_tensorboard_events_hold_the_scalars_and_a_test_view(tmp_path, every_step):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert run_main(*TINY, "--steps", "4", "--out", run, "--log", "tensorboard").returncode == 0
    assert len(rows(run)[1]) == 4  # metrics.csv is written too
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "psnr/train", "lr", "throughput/pixels_per_s", "eval/psnr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]
    pictures = events.Images("test_view")
    assert [p.step for p in pictures] == [1, 4]  # the first row's and the end's (every 60 s otherwise)
    assert (pictures[0].width, pictures[0].height) == (256, 256)  # the rings image, whole


def test_log_tensorboard_without_tensorboard_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import fails, as without the package
    res = run_main(*TINY, "--steps", "3", "--log", "tensorboard", cwd=tmp_path)
    one_error_line(res, "--log tensorboard", "pip install 'fieldfit[tensorboard]'")
    assert not (tmp_path / "runs").exists()  # no run folder, no training
    assert "step" not in res.stdout


def test_a_bad_log_option_is_one_line(tmp_path):
    one_error_line(run_main(*TINY, "--log", "wandb", cwd=tmp_path), "--log", "wandb")
    one_error_line(run_main(*TINY, "--log-image-every", "0", cwd=tmp_path), "--log-image-every 0")
    assert not (tmp_path / "runs").exists()


def test_grid_tcnn_without_tinycudann_says_so_and_records_the_grid_built(tmp_path, capsys):
    from fieldfit.cli import main
    from fieldfit.fields.components.encodings import tcnn_unavailable

    if tcnn_unavailable("cpu") is None:
        pytest.skip("tinycudann runs here")  # never on a CPU (it needs a CUDA device)
    run = tmp_path / "run"
    assert main([*TINY, "--steps", "2", "--grid", "tcnn", "--table-log2", "8", "--out", str(run)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "tinycudann" in err[0], err
    assert "using fieldfit's torch hash grid (same encoding" in err[0], err
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["grid"] == "tcnn"  # what was asked
    assert config["field"]["grid"]["kind"] == "hash"  # what was built, so the run loads anywhere
    assert config["grid_fallback"].startswith("tcnn -> hash: tinycudann")
    assert json.loads((run / "metrics.json").read_text())["grid_fallback"] == config["grid_fallback"]
    assert "warning: tinycudann" in (run / "log").read_text()
    assert run_main("eval", run).returncode == 0  # and it loads


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("logs") / "run"
    assert run_main(*TINY, "--steps", "2", "--out", run).returncode == 0
    return run


def test_render_to_mp4_without_imageio_ffmpeg_refuses_instead_of_writing_a_gif(image_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    out = tmp_path / "x.mp4"
    one_error_line(run_main("render", image_run, "--out", out), "x.mp4", "imageio-ffmpeg", "fieldfit[video]", ".gif")
    assert list(tmp_path.iterdir()) == []  # neither x.mp4 nor x.gif


def test_write_video_refuses_a_video_suffix_without_imageio_ffmpeg(tmp_path, monkeypatch):
    import numpy as np

    from fieldfit.errors import InputError
    from fieldfit.render.video import write_video

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    frames = [np.zeros((4, 4, 3), np.uint8)] * 2
    with pytest.raises(InputError, match="imageio-ffmpeg"):
        write_video(frames, tmp_path / "v.mp4")
    assert write_video(frames, tmp_path / "v.gif")[0] == tmp_path / "v.gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif"]
