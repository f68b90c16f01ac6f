"""The training loop shared by every method: budget, progress, checkpoints, resume, curve, faults.

A method supplies a ``step(i, progress) -> dict`` closure (one optimisation step; ``progress``
in [0, 1] drives learning-rate schedules, so a time budget always runs the full schedule),
an optional ``evaluate() -> dict`` (the task's quality metric, e.g. psnr or iou) and a
``state() -> (tensors, meta)`` for checkpoints. The loop stops at ``steps`` or after
``time_budget`` seconds of optimisation, whichever comes first.

Faults (``fit_loop``): a step whose loss is not finite, or a state found not finite when it is copied, rolls back
to the last finite copy and goes on at a lower learning rate; checkpoints hold only finite tensors; SIGINT and
SIGTERM save a checkpoint after the current step and stop (``errors.Stopped``).

Logs (``fieldfit.logs``): RUN/metrics.csv, and TensorBoard events with ``--log tensorboard``, written by
``fit_loop`` through one ``MetricLog`` for every method.
"""

import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import dist
from .errors import FitError, InputError, Stopped
from .faults import Snapshot, StopSignals, non_finite, resume_command
from .logs import MetricLog
from .optim import lower_lr, lr_scale, scaled_lr
from .runs import CHECKPOINT, CURVE, Run, load_model, restore_optimizer


def _seconds(name: str, default: float) -> float:
    """A number of seconds from the environment variable ``name`` (tests shorten the cadences), else ``default``."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


CHECKPOINT_EVERY_S = _seconds("FIELDFIT_CHECKPOINT_EVERY_S", 60.0)  # seconds of training between checkpoints
SNAPSHOT_EVERY_S = 5.0  # at least this many seconds of training between copies of the state (to roll back to)
SNAPSHOT_SHARE = 0.02  # ... and at most this share of the training time spent copying
MAX_ROLLBACKS = 3  # rollbacks in a row that do not get past the failing step before the fit stops
LR_BACKOFF = 0.5  # the learning rate's factor after each rollback


@dataclass(frozen=True)
class Budget:
    """How long a fit trains: ``steps`` optimisation steps, or ``time_budget`` seconds of optimisation (time spent
    evaluating, checkpointing or drawing does not count). One object for every method: the command line and
    ``fieldfit.fit`` make it (``Budget.of``); a method with stages gives each a ``share`` of it.

    Examples:
        >>> Budget.of(time_budget=None, steps=None, default_seconds=60.0)
        Budget(steps=None, time_budget=60.0)
        >>> Budget(steps=1000).share(0.25)
        Budget(steps=250, time_budget=None)
    """

    steps: int | None = None
    time_budget: float | None = None

    @classmethod
    def of(cls, time_budget=None, steps=None, default_seconds: float = 60.0) -> "Budget":
        """The budget of a fit: ``steps`` when given, else ``time_budget`` seconds, else ``default_seconds``.
        InputError for a non-positive or non-finite value (they would mean "forever" or "nothing")."""
        if time_budget is not None:  # checked even when steps win: a bad value is never silently dropped
            t = float(time_budget)
            if not math.isfinite(t) or t <= 0:
                raise InputError(f"--time-budget {time_budget}", "must be a finite number of seconds > 0",
                                 "e.g. --time-budget 60")
        if steps is not None:
            if isinstance(steps, bool) or not math.isfinite(float(steps)) or int(steps) != steps or int(steps) < 1:
                raise InputError(f"--steps {steps}", "must be a whole number >= 1", "e.g. --steps 2000")
            return cls(steps=int(steps))
        return cls(time_budget=float(time_budget if time_budget is not None else default_seconds))

    @property
    def seconds(self) -> float | None:
        return self.time_budget

    def share(self, fraction: float, at_least_steps: int = 1) -> "Budget":
        """``fraction`` of this budget (a stage of a fit)."""
        if self.steps is not None:
            return Budget(steps=max(int(at_least_steps), int(round(self.steps * fraction))))
        return Budget(time_budget=max(self.time_budget * fraction, 1e-6))

    def left(self, steps_done: int = 0, seconds_spent: float = 0.0) -> "Budget":
        """What is left after ``steps_done`` steps or ``seconds_spent`` seconds (at least one step / 1 s)."""
        if self.steps is not None:
            return Budget(steps=max(1, self.steps - int(steps_done)))
        return Budget(time_budget=max(1.0, self.time_budget - float(seconds_spent)))

    def progress(self, step: int, elapsed: float) -> float:
        p = 0.0
        if self.steps:
            p = max(p, step / self.steps)
        if self.time_budget:
            p = max(p, elapsed / self.time_budget)
        return min(p, 1.0)

    def done(self, step: int, elapsed: float) -> bool:
        return self.progress(step, elapsed) >= 1.0

    def eval_every(self, parts: int = 10) -> float:
        """Seconds between validations: about ``parts`` per fit, at least 5 s apart (a step budget counts as 60 s)."""
        return max(5.0, (self.time_budget or 60.0) / parts)

    def describe(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.time_budget:g} s"


@dataclass
class History:
    steps: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    metric_steps: list = field(default_factory=list)
    metric_seconds: list = field(default_factory=list)
    metric: list = field(default_factory=list)

    def as_meta(self) -> dict:
        return dict(self.__dict__)

    def upto(self, step: int) -> "History":
        """The entries of steps up to ``step`` (a copy)."""
        n = sum(1 for s in self.steps if s <= step)
        m = sum(1 for s in self.metric_steps if s <= step)
        return History(self.steps[:n], self.seconds[:n], self.loss[:n], self.metric_steps[:m],
                       self.metric_seconds[:m], self.metric[:m])

    def truncate(self, step: int) -> None:
        """Drop the entries of steps after ``step`` (a rollback to it)."""
        kept = self.upto(step)
        for name, values in kept.__dict__.items():
            del getattr(self, name)[len(values):]

    @classmethod
    def from_meta(cls, meta: dict) -> "History":
        h = cls()
        for k, v in (meta or {}).items():
            if hasattr(h, k):
                setattr(h, k, list(v))
        return h


class Progress:
    """One status line on a terminal (rewritten in place), one log line now and then (into the run's log,
    or printed when there is no run)."""

    def __init__(self, run: Run | None, metric_name: str = "", log_every_s: float = 10.0):
        self.run, self.metric_name = run, metric_name
        self.tty = sys.stdout.isatty() and dist.is_main()
        self.last_log = -1e9
        self.log_every_s = log_every_s

    def update(self, step: int, loss: float, metric, elapsed: float, progress: float, final=False):
        left = elapsed / progress - elapsed if progress > 1e-6 else float("nan")
        m = f" | {self.metric_name} {metric:.4g}" if metric is not None else ""
        bar = "#" * int(progress * 20)
        self.show(f"[{bar:<20}] step {step:6d} | loss {loss:.3e}{m} | {elapsed:6.1f}s | left {left:5.0f}s", elapsed,
                  final)

    def show(self, line: str, elapsed: float, final=False):
        if self.tty:
            sys.stdout.write("\r" + line + ("\n" if final else ""))
            sys.stdout.flush()
        if final or elapsed - self.last_log >= self.log_every_s:
            self.last_log = elapsed
            if self.run is not None:
                self.run.log(line, echo=not self.tty)
            elif not self.tty:
                print(line, flush=True)


def counted(items, label: str, run: Run | None = None, every_s: float = 10.0):
    """Yield the items of a sized sequence while showing "label k/n | elapsed | left" (``Progress``'s line:
    rewritten in place on a terminal, else logged every ``every_s`` seconds and at the end). For the long
    loops after training (test renders, videos)."""
    n, t0, status = len(items), time.perf_counter(), Progress(run, log_every_s=every_s)
    for k, item in enumerate(items):
        yield item
        elapsed = time.perf_counter() - t0
        status.show(f"{label} {k + 1}/{n} | {elapsed:6.1f}s | left {elapsed / (k + 1) * (n - k - 1):5.0f}s",
                    elapsed, final=k + 1 == n)


class _Clock:
    """Seconds of training: what evaluation, copies, checkpoints and the step hook take is left out."""

    def __init__(self, start: float):
        self.t0 = time.perf_counter() - start

    def now(self) -> float:
        return time.perf_counter() - self.t0

    @contextmanager
    def paused(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - t


class _Guard:
    """fit_loop's faults: the finite copy of the state to go back to, the rollbacks, the checkpoints written from
    that copy (so never a non-finite one) and the stop on a signal."""

    def __init__(self, run: Run, state, history: History):
        self.run, self.history = run, history
        self.snap = Snapshot(state) if state is not None else None
        self.rollbacks = 0  # in a row, none of them past the furthest failing step yet
        self.failed_at = -1  # the furthest step that failed

    def due(self, i: int, elapsed: float) -> bool:
        """Whether to copy the state now: every few seconds (longer when copies are slow), and once the fit gets
        past the step that failed."""
        s = self.snap
        if s is None:
            return False
        if self.rollbacks and i > self.failed_at:
            return True
        return elapsed - s.elapsed >= max(SNAPSHOT_EVERY_S, s.seconds / SNAPSHOT_SHARE)

    def take(self, i: int, elapsed: float) -> bool:
        ok = self.snap.take(i, elapsed)
        if ok and i > self.failed_at:
            self.rollbacks = 0
        return ok

    def rollback(self, i: int, what: str) -> int:
        """Go back to the copy with a lower learning rate; returns its step. FitError when there is none, or after
        ``MAX_ROLLBACKS`` in a row (the copy is saved as the checkpoint first)."""
        s = self.snap
        if s is None:
            raise FitError(f"training diverged: {what} at step {i} (this fit keeps no state to go back to)")
        if self.rollbacks >= MAX_ROLLBACKS:
            self.save()
            msg = (f"training diverged: {what} at step {i}, after {self.rollbacks} rollbacks to step {s.step} with "
                   f"the learning rate down to x{lr_scale():g} of its schedule; the last finite state (step "
                   f"{s.step}) is saved in {self.run.path / CHECKPOINT}")
            self.run.log(msg, echo=False)
            raise FitError(msg)
        self.rollbacks += 1
        self.failed_at = max(self.failed_at, i)
        scale = lower_lr(LR_BACKOFF)
        s.restore()
        self.history.truncate(s.step)
        self.run.log(f"step {i}: {what}; rolled back to step {s.step}, learning rate x{scale:g} of its schedule "
                     f"(rollback {self.rollbacks} of {MAX_ROLLBACKS})")
        return s.step

    def save(self) -> int:
        """Write the copy as the run's checkpoint; returns its step."""
        s = self.snap
        _write(self.run, s.tensors, s.meta, s.step, s.elapsed, self.history.upto(s.step))
        return s.step

    def stop(self, i: int, elapsed: float, signum: int):
        """Save the state after step ``i`` (the last finite copy when it is not finite) and raise Stopped."""
        if self.snap is None:
            raise Stopped(f"stopped at step {i} (this fit keeps no checkpoint: nothing to resume)", signum)
        if self.snap.step != i:
            self.snap.take(i, elapsed)
        step = self.save()
        msg = f"stopped at step {step}; resume with: {resume_command(self.run)}"
        self.run.log(msg, echo=False)
        raise Stopped(msg, signum)


def fit_loop(step, budget: Budget, run: Run, *, evaluate=None, state=None, metric_name="metric",
             eval_every_s=5.0, start_step=0, start_elapsed=0.0, history: History | None = None, unit: str = "items",
             preview=None, step_offset: int = 0, seconds_offset: float = 0.0) -> History:
    """Run ``step`` until the budget is spent. Returns the loss/metric history.

    ``step(i, progress)`` returns ``{"loss": ...}`` and, for the logs (``fieldfit.logs``: RUN/metrics.csv, and
    TensorBoard with ``--log tensorboard``), optionally ``mse`` (the batch's colour error: its PSNR is logged),
    ``batch`` (the ``unit``s it trained: rays, pixels or points) and ``lr``. ``preview() -> [H,W,3]`` draws a
    test view for TensorBoard; ``step_offset`` and ``seconds_offset`` are added to the steps and seconds the logs
    write (a stage after another).

    A step whose loss is not finite (or that raises FloatingPointError), or a state found not finite when it is
    copied (every few seconds, before each checkpoint, at the end), rolls back to the last finite copy and goes on
    with the learning rate halved (``optim.lower_lr``); ``MAX_ROLLBACKS`` in a row that do not get past the failing
    step stop the fit (FitError, the last finite state saved). The first SIGINT or SIGTERM (main thread only)
    finishes the current step, saves a checkpoint and raises ``Stopped``; a second one raises it at once."""
    history = history or History()
    prog = Progress(run, metric_name)
    i, elapsed, metric, loss = start_step, start_elapsed, None, float("nan")
    clock = _Clock(start_elapsed)
    last_eval = last_ckpt = elapsed
    if state is not None:  # several ranks (fieldfit.dist): all start from rank 0's state
        dist.broadcast_tensors(state()[0])
    dist.fork_rng()
    guard = _Guard(run, state, history)
    logs = MetricLog(run, metric_name, unit, start_step=start_step, start_seconds=start_elapsed,
                     step_offset=step_offset, seconds_offset=seconds_offset, preview=preview)

    def now() -> float:
        """Seconds of training, the same on every rank (the slowest rank's clock)."""
        return dist.agree(clock.now(), None, True, False)[0]

    def back(what: str) -> tuple[int, float]:
        """Roll back (``_Guard.rollback``), the logs too; the step and seconds to go on from."""
        to = guard.rollback(i, what)
        t = now()
        logs.rewind(to, t)
        return to, t

    def take() -> bool:
        with clock.paused():
            return dist.all_true(guard.take(i, elapsed))

    with StopSignals(run) as stop, scaled_lr(), logs:
        if guard.snap is not None and not take():
            raise FitError(f"the state to train from (step {i}) is not finite ({guard.snap.bad}): start a new run")
        signum = dist.agree(elapsed, stop.signum, True, False)[1]
        while True:
            if signum is not None:
                guard.stop(i, elapsed, signum)
            if budget.done(i, elapsed):
                if guard.snap is None or guard.snap.step == i or take():
                    break
                i, elapsed = back(f"{guard.snap.bad} not finite")
                continue
            try:
                out = step(i, budget.progress(i, elapsed))
                loss = float(out["loss"])
                what = f"loss {loss}"
            except FloatingPointError as e:  # a step's own check (e.g. gradients not finite)
                loss, what = math.nan, str(e)
            t = clock.now()  # the step's decisions, agreed by every rank (one process: as they are)
            t, signum, finite, due = dist.agree(t, stop.signum, math.isfinite(loss), guard.due(i + 1, t))
            if not finite:
                i, elapsed = back(what if not math.isfinite(loss) else "another rank's loss not finite")
                continue
            i += 1
            logs.add(dict(out, loss=loss))
            hook = getattr(run, "step_hook", None)
            if hook is not None:  # e.g. the viewer drawing between steps; its time is not training time
                with clock.paused():
                    hook(i, state)
            elapsed = clock.now() if not dist.active() else t
            if i % 10 == 0 or i < 10:
                history.steps.append(i)
                history.seconds.append(elapsed)
                history.loss.append(loss)
            evaluated = None
            if evaluate is not None and elapsed - last_eval >= eval_every_s:
                with clock.paused():  # evaluation time does not count against the budget
                    metric = evaluated = evaluate()
                history.metric_steps.append(i)
                history.metric_seconds.append(elapsed)
                history.metric.append(metric)
                last_eval = elapsed
            checkpoint = state is not None and elapsed - last_ckpt >= CHECKPOINT_EVERY_S
            if checkpoint or (guard.due(i, elapsed) if not dist.active() else due):
                ok = take()
                if ok and checkpoint:
                    with clock.paused():
                        guard.save()
                    last_ckpt = elapsed
                if not ok:
                    i, elapsed = back(f"{guard.snap.bad} not finite")
                    continue
            if (evaluated is not None or logs.due(elapsed)) and not budget.done(i, elapsed):  # the last: below
                with clock.paused():
                    logs.row(i, elapsed, evaluated)
            prog.update(i, loss, metric, elapsed, budget.progress(i, elapsed))
        if evaluate is not None:
            metric = evaluate()
            history.metric_steps.append(i)
            history.metric_seconds.append(elapsed)
            history.metric.append(metric)
        logs.row(i, elapsed, metric if evaluate is not None else None, final=True)
        prog.update(i, loss, metric, elapsed, 1.0, final=True)
        if state is not None:
            guard.save()
        if stop.signum is not None:  # a signal during the final evaluation: the checkpoint is written
            guard.stop(i, elapsed, stop.signum)
    return history


@contextmanager
def cpu_threads(run: Run, device):
    """Intra-op threads for CPU work: one when the machine is already busy (OMP_NUM_THREADS unset).

    On a CPU whose cores are all taken by other processes, torch's OpenMP threads wait on each other at every op;
    one thread then trains 5-15x faster than two (measured on 2 cores, load 6). The previous count is restored.
    """
    before = torch.get_num_threads()
    change = (torch.device(device).type == "cpu" and not os.environ.get("OMP_NUM_THREADS") and before > 1
              and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1))
    if change:
        torch.set_num_threads(1)
        run.log(f"machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: 1 thread "
                "(set OMP_NUM_THREADS to choose)")
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def resume_state(run: Run, model, opt, device, average=None) -> tuple[int, float, History]:
    """Load weights + optimizer from the run's checkpoint; return (step, elapsed, history) to go on from.

    With ``average`` (``optim.WeightAverage``; see ``runs.model_state``): the average goes on from the saved one and
    the model from the trained weights; a checkpoint saved without an average starts one from its weights."""
    meta = load_model(run, model, device)
    tensors = meta.pop("_tensors")
    if average is not None:
        average.reset()
        trained = {k[len("train."):]: v for k, v in tensors.items() if k.startswith("train.")}
        if trained:
            model.load_state_dict(trained)
            average.updates = int(meta.get("average_updates", 0))
    restore_optimizer(opt, tensors, meta)
    run.log(f"resumed from step {meta.get('step', 0)} ({meta.get('elapsed', 0):.0f}s of training)")
    return int(meta.get("step", 0)), float(meta.get("elapsed", 0.0)), History.from_meta(meta.get("history"))


def save(run: Run, state, step: int, elapsed: float, history: History) -> None:
    """Write ``state()`` as the run's checkpoint; FitError (nothing written, the previous checkpoint kept) when a
    tensor is not finite."""
    tensors, meta = state()
    bad = non_finite(tensors)
    if bad is not None:
        raise FitError(f"not saved: {bad} is not finite at step {step}; the previous checkpoint is kept")
    _write(run, tensors, meta, step, elapsed, history)


def _write(run: Run, tensors: dict, meta: dict, step: int, elapsed: float, history: History) -> None:
    run.save_checkpoint(tensors, dict(meta, step=step, elapsed=elapsed, history=history.as_meta()))


def plot_curve(run: Run, history: History, metric_name: str) -> None:
    """Training curve (loss, and the task's metric) as curve.png."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if history.seconds:
        ax.semilogy(history.seconds, history.loss, color="tab:blue", lw=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("loss", color="tab:blue")
    if history.metric:
        pts = [(x, m) for x, m in zip(history.metric_seconds, history.metric, strict=True) if m is not None]
        if pts:
            ax2 = ax.twinx()
            ax2.plot(*zip(*pts, strict=True), color="tab:orange", marker=".", lw=1)
            ax2.set_ylabel(metric_name, color="tab:orange")
    ax.set_title(run.path.name, fontsize=8)
    fig.tight_layout()
    from .runs import atomic_write

    atomic_write(run.path / CURVE, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
