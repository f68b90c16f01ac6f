"""The training loop shared by every method: budget, progress, checkpoints, resume, curve.

A method supplies a ``step(i, progress) -> dict`` closure (one optimisation step; ``progress``
in [0, 1] drives learning-rate schedules, so a time budget always runs the full schedule),
an optional ``evaluate() -> dict`` (the task's quality metric, e.g. psnr or iou) and a
``state() -> (tensors, meta)`` for checkpoints. The loop stops at ``steps`` or after
``time_budget`` seconds of optimisation, whichever comes first.
"""

import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .errors import InputError
from .runs import CURVE, Run, load_model, restore_optimizer

CHECKPOINT_EVERY_S = 60.0


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
        if steps is not None:
            if isinstance(steps, bool) or int(steps) != steps or int(steps) < 1:
                raise InputError(f"--steps {steps}", "must be a whole number >= 1", "e.g. --steps 2000")
            return cls(steps=int(steps))
        if time_budget is not None:
            t = float(time_budget)
            if not math.isfinite(t) or t <= 0:
                raise InputError(f"--time-budget {time_budget}", "must be a finite number of seconds > 0",
                                 "e.g. --time-budget 60")
            return cls(time_budget=t)
        return cls(time_budget=float(default_seconds))

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
        self.tty = sys.stdout.isatty()
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


def fit_loop(step, budget: Budget, run: Run, *, evaluate=None, state=None, metric_name="metric",
             eval_every_s=5.0, start_step=0, start_elapsed=0.0, history: History | None = None) -> History:
    """Run ``step`` until the budget is spent. Returns the loss/metric history."""
    history = history or History()
    prog = Progress(run, metric_name)
    i, elapsed = start_step, start_elapsed
    t_start = time.perf_counter() - start_elapsed
    last_eval, last_ckpt, metric, loss = elapsed, elapsed, None, float("nan")
    while not budget.done(i, elapsed):
        out = step(i, budget.progress(i, elapsed))
        loss = float(out["loss"])
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {i}; the last good checkpoint is kept")
        i += 1
        hook = getattr(run, "step_hook", None)
        if hook is not None:  # e.g. the viewer drawing between steps; its time is not training time
            t_hook = time.perf_counter()
            hook(i, state)
            t_start += time.perf_counter() - t_hook
        elapsed = time.perf_counter() - t_start
        if i % 10 == 0 or i < 10:
            history.steps.append(i)
            history.seconds.append(elapsed)
            history.loss.append(loss)
        if evaluate is not None and elapsed - last_eval >= eval_every_s:
            metric = evaluate()
            history.metric_steps.append(i)
            history.metric_seconds.append(elapsed)
            history.metric.append(metric)
            last_eval = time.perf_counter() - t_start
            t_start += last_eval - elapsed  # evaluation time does not count against the budget
            elapsed = time.perf_counter() - t_start
        if state is not None and elapsed - last_ckpt >= CHECKPOINT_EVERY_S:
            save(run, state, i, elapsed, history)
            last_ckpt = elapsed
        prog.update(i, loss, metric, elapsed, budget.progress(i, elapsed))
    if evaluate is not None:
        metric = evaluate()
        history.metric_steps.append(i)
        history.metric_seconds.append(elapsed)
        history.metric.append(metric)
    prog.update(i, loss, metric, elapsed, 1.0, final=True)
    if state is not None:
        save(run, state, i, elapsed, history)
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


def resume_state(run: Run, model, opt, device) -> tuple[int, float, History]:
    """Load weights + optimizer from the run's checkpoint; return (step, elapsed, history) to go on from."""
    meta = load_model(run, model, device)
    restore_optimizer(opt, meta.pop("_tensors"), meta)
    run.log(f"resumed from step {meta.get('step', 0)} ({meta.get('elapsed', 0):.0f}s of training)")
    return int(meta.get("step", 0)), float(meta.get("elapsed", 0.0)), History.from_meta(meta.get("history"))


def save(run: Run, state, step: int, elapsed: float, history: History) -> None:
    tensors, meta = state()
    meta = dict(meta, step=step, elapsed=elapsed, history=history.as_meta())
    run.save_checkpoint(tensors, meta)


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
