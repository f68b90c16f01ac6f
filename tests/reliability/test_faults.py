"""Faults in training: non-finite losses and weights roll back at a lower learning rate, checkpoints are always
finite, repeated failures stop in one line, SIGINT / SIGTERM save a checkpoint and say how to resume."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import REPO, run_main
from fieldfit.errors import FitError, Stopped
from fieldfit.faults import Snapshot, non_finite
from fieldfit.fields.gaussian_rbf import ImageRBF
from fieldfit.optim import lr_at, lr_scale, make_adam, set_lr
from fieldfit.runs import CHECKPOINT, Run, load_model, model_state
from fieldfit.trainer import Budget, History, fit_loop, save

NAN = float("nan")
RINGS = ["rings", "--levels", "2", "--max-res", "32"]  # a tiny rbf image fit


class Tiny:
    """A linear fit whose step can be poisoned: a NaN loss (NaN gradients, so NaN weights and moments after Adam's
    step) at the steps in ``nan_at`` (each once, or at every step from ``nan_from`` on), an infinite weight after the
    steps in ``inf_at`` (its loss still finite)."""

    def __init__(self, nan_at=(), nan_from=None, inf_at=(), base_lr=0.05):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.opt = make_adam([{"params": self.model.parameters(), "lr": base_lr}])
        self.base_lr = base_lr
        self.x = torch.randn(64, 4)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.nan_at, self.nan_from, self.inf_at = set(nan_at), nan_from, set(inf_at)
        self.lrs = []  # (step, lr set, the schedule's lr)

    def state(self):
        return model_state(self.model, self.opt)

    def loss(self) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(self.model(self.x), self.y))

    def __call__(self, i, progress):
        set_lr(self.opt, progress, 0.1)
        self.lrs.append((i, self.opt.param_groups[0]["lr"], lr_at(self.base_lr, progress, 0.1)))
        loss = torch.nn.functional.mse_loss(self.model(self.x), self.y)
        if i in self.nan_at or (self.nan_from is not None and i >= self.nan_from):
            self.nan_at.discard(i)
            loss = loss * NAN
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if i in self.inf_at:
            self.inf_at.discard(i)
            with torch.no_grad():
                self.model.weight[0, 0] = float("inf")
        return {"loss": loss.detach()}


def finite_checkpoint(run: Run) -> dict:
    """The checkpoint's meta, after checking every tensor in it is finite."""
    tensors, meta = run.load_checkpoint()
    assert non_finite(tensors) is None
    return meta


@pytest.fixture
def every_step(monkeypatch):
    """Copies of the state (and checkpoints) after every step."""
    import fieldfit.trainer as trainer

    monkeypatch.setattr(trainer, "SNAPSHOT_EVERY_S", 0.0)
    monkeypatch.setattr(trainer, "SNAPSHOT_SHARE", 1e9)
    monkeypatch.setattr(trainer, "CHECKPOINT_EVERY_S", 0.0)


def test_a_nan_loss_rolls_back_and_goes_on_at_half_the_learning_rate(tmp_path, every_step):
    run = Run.create(tmp_path / "run")
    fit = Tiny(nan_at={6})
    start = fit.loss()
    written = []
    save_checkpoint = run.save_checkpoint
    run.save_checkpoint = lambda tensors, meta: (written.append(non_finite(tensors)), save_checkpoint(tensors, meta))
    history = fit_loop(fit, Budget(steps=20), run, state=fit.state())
    assert non_finite(fit.state()()[0]) is None
    assert fit.loss() < start
    assert written
    assert written == [None] * len(written)
    assert finite_checkpoint(run)["step"] == 20
    assert history.steps == sorted(set(history.steps))  # the failed branch left no entries
    log = (run.path / "log").read_text()
    assert "step 6: loss nan; rolled back to step 6, learning rate x0.5" in log
    steps = [i for i, _, _ in fit.lrs]
    assert steps.count(6) == 2  # step 6 again, after the rollback
    second = steps.index(6, steps.index(6) + 1)
    assert all(lr == pytest.approx(want) for _, lr, want in fit.lrs[:second])
    assert all(lr == pytest.approx(0.5 * want) for _, lr, want in fit.lrs[second:])
    assert lr_scale() == 1.0  # the factor belongs to that fit only


def test_an_infinite_weight_with_a_finite_loss_is_caught_when_the_state_is_copied(tmp_path, every_step):
    run = Run.create(tmp_path / "run")
    fit = Tiny(inf_at={4})
    written = []
    save_checkpoint = run.save_checkpoint
    run.save_checkpoint = lambda tensors, meta: (written.append(non_finite(tensors)), save_checkpoint(tensors, meta))
    fit_loop(fit, Budget(steps=12), run, state=fit.state())
    assert "step 5: model.weight not finite; rolled back to step 4" in (run.path / "log").read_text()
    assert written == [None] * len(written)
    assert finite_checkpoint(run)["step"] == 12
    assert non_finite(fit.state()()[0]) is None


def test_nan_at_every_step_stops_with_one_clear_error_and_a_finite_checkpoint(tmp_path, every_step):
    run = Run.create(tmp_path / "run")
    fit = Tiny(nan_from=5)
    with pytest.raises(FitError) as err:
        fit_loop(fit, Budget(steps=50), run, state=fit.state())
    msg = str(err.value)
    assert "\n" not in msg
    assert "loss nan at step 5, after 3 rollbacks to step 5" in msg
    assert "x0.125" in msg  # the learning rate went 1 -> 1/2 -> 1/4 -> 1/8
    assert "last finite state (step 5) is saved" in msg
    assert (run.path / "log").read_text().count("rolled back to step 5") == 3
    assert finite_checkpoint(run)["step"] == 5
    fresh = torch.nn.Linear(4, 1)
    load_model(run, fresh)
    assert torch.isfinite(fresh.weight).all()
    assert lr_scale() == 1.0


def test_save_refuses_a_non_finite_state_and_keeps_the_previous_checkpoint(tmp_path):
    run = Run.create(tmp_path / "run")
    fit = Tiny()
    save(run, fit.state(), 1, 0.1, History())
    before = (run.path / CHECKPOINT).read_bytes()
    with torch.no_grad():
        fit.model.bias.fill_(NAN)
    with pytest.raises(FitError, match="model.bias is not finite"):
        save(run, fit.state(), 2, 0.2, History())
    assert (run.path / CHECKPOINT).read_bytes() == before


def test_a_snapshot_restores_dense_and_row_optimizers_in_place():
    """One restore for every method: weights, Adam's moments and RowAdam's (dnmp) written back in place; moments
    made after the copy are zeroed."""
    from fieldfit.methods.dnmp.rows import RowAdam

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.features = torch.nn.Parameter(torch.randn(10, 3))
    model.head = torch.nn.Linear(3, 1)
    adam = make_adam([{"params": model.head.parameters(), "lr": 0.1}])
    rows = RowAdam([model.features], 0.1)
    dense = model_state(model, adam)

    def state():
        tensors, meta = dense()
        tensors["rows.m.0"], tensors["rows.v.0"] = rows.m[0], rows.v[0]
        return tensors, dict(meta, rows_t=rows.t)

    def step(scale=1.0):
        idx = torch.tensor([1, 4, 4, 7])
        loss = model.head(rows.gather(0, idx)).square().mean() * scale
        adam.zero_grad()
        rows.zero_grad()
        loss.backward()
        adam.step()
        rows.step()

    snap = Snapshot(state)
    assert snap.take(0, 0.0)
    first = {k: v.clone() for k, v in state()[0].items()}
    step()
    step()
    snap.restore()
    now = state()[0]
    assert set(now) > set(first)  # Adam's moments appeared after the copy ...
    for k, v in now.items():
        assert torch.equal(v, first[k]) if k in first else not v.any(), k  # ... and are zeroed
    step()
    assert snap.take(3, 0.0)
    kept = {k: v.clone() for k, v in state()[0].items()}
    step(NAN)
    assert non_finite(state()[0]) is not None
    assert not snap.take(4, 0.0)
    assert snap.step == 3
    assert snap.bad is not None
    snap.restore()
    assert all(torch.equal(v, kept[k]) for k, v in state()[0].items())


@pytest.fixture
def interruptible():
    """SIGINT as an interactive Python has it (a test run started in the background inherits it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_ignored_sigint_stays_ignored(tmp_path):
    run = Run.create(tmp_path / "run")
    fit, seen = Tiny(), []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        def step(i, progress):
            seen.append(signal.getsignal(signal.SIGINT))
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # ignored: the fit goes on to its budget
            return fit(i, progress)

        fit_loop(step, Budget(steps=5), run, state=fit.state())
        assert seen == [signal.SIG_IGN] * 5
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finite_checkpoint(run)["step"] == 5


def test_sigint_finishes_the_step_saves_and_exits_130(tmp_path, monkeypatch, interruptible):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    calls, rgb = [], ImageRBF.rgb

    def interrupted(self, uv):
        if torch.is_grad_enabled():
            calls.append(len(calls))
            if len(calls) == 4:  # during step 3
                os.kill(os.getpid(), signal.SIGINT)
        return rgb(self, uv)

    monkeypatch.setattr(ImageRBF, "rgb", interrupted)
    out = tmp_path / "run"
    res = run_main(*RINGS, "--steps", "1000", "--out", out)
    assert res.returncode == 130
    assert res.stderr.strip().splitlines() == [f"fieldfit: stopped at step 4; resume with: fieldfit --resume {out}"]
    assert len(calls) == 4  # no step after the one the signal came in
    assert finite_checkpoint(Run.open(out))["step"] == 4
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_second_sigint_stops_at_once(tmp_path, interruptible):
    run = Run.create(tmp_path / "run")
    fit, reached = Tiny(), []

    def step(i, progress):
        out = fit(i, progress)
        if i == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            reached.append(i)  # not reached: the second signal raises here
        return out

    with pytest.raises(Stopped, match=r"stopped at once \(SIGINT again\); no checkpoint yet") as err:
        fit_loop(step, Budget(steps=50), run, state=fit.state())
    assert err.value.exit_code == 130
    assert not reached
    assert not (run.path / CHECKPOINT).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_fit_in_another_thread_leaves_the_signal_handlers_alone(tmp_path):
    run = Run.create(tmp_path / "run")
    fit, errors = Tiny(), []

    def work():
        try:
            fit_loop(fit, Budget(steps=3), run, state=fit.state())
        except Exception as e:  # a ValueError here would mean it tried to install handlers
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors == []
    assert finite_checkpoint(run)["step"] == 3


def test_the_cli_rolls_back_a_nan_and_finishes(tmp_path, monkeypatch):
    calls, rgb = [], ImageRBF.rgb

    def nan_once(self, uv):
        out = rgb(self, uv)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == 5:
                return out * NAN
        return out

    monkeypatch.setattr(ImageRBF, "rgb", nan_once)
    out = tmp_path / "run"
    res = run_main(*RINGS, "--steps", "12", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "step 4: loss nan; rolled back to step 0, learning rate x0.5" in (out / "log").read_text()
    assert finite_checkpoint(Run.open(out))["step"] == 12
    assert (out / "reconstruction.png").is_file()


def test_the_cli_stops_a_fit_that_always_diverges_in_one_line(tmp_path, monkeypatch):
    import fieldfit

    rgb = ImageRBF.rgb
    monkeypatch.setattr(ImageRBF, "rgb", lambda self, uv: rgb(self, uv) * (NAN if torch.is_grad_enabled() else 1))
    out = tmp_path / "run"
    res = run_main(*RINGS, "--steps", "12", "--out", out)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("fieldfit: error: training diverged: loss nan at step 0, after 3 rollbacks")
    assert finite_checkpoint(Run.open(out))["step"] == 0
    assert fieldfit.load(out).render().rgb.isfinite().all()


def test_sigterm_saves_a_checkpoint_exits_143_and_the_resume_goes_on(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, FIELDFIT_NO_TCMALLOC="1", FIELDFIT_CHECKPOINT_EVERY_S="0.05", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fieldfit", *RINGS, "--steps", "100000", "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / CHECKPOINT).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first checkpoint: training has started
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    last = err.strip().splitlines()
    assert len(last) == 1
    assert "Traceback" not in err
    step = finite_checkpoint(Run.open(out))["step"]
    assert last[0] == f"fieldfit: stopped at step {step}; resume with: fieldfit --resume {out}"
    res = run_main("--resume", out, "--steps", step + 3)
    assert res.returncode == 0, res.stderr
    assert f"resumed from step {step} " in res.stdout
    assert finite_checkpoint(Run.open(out))["step"] == step + 3
