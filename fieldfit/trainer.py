"""The training loop shared by every method: budget, progress, checkpoints, resume, curve.

A method supplies a ``step(i, progress) -> dict`` closure (one optimisation step; ``progress``
in [0, 1] drives learning-rate schedules, so a time budget always runs the full schedule),
an optional ``evaluate() -> dict`` (the task's quality metric, e.g. psnr or iou) and a
``state() -> (tensors, meta)`` for checkpoints. The loop stops at ``steps`` or after
``time_budget`` seconds of optimisation, whichever comes first.
"""

import math
import sys
import time
from dataclasses import dataclass, field

from .runs import CURVE, Run

CHECKPOINT_EVERY_S = 60.0


@dataclass
class Budget:
    steps: int | None = None
    time_budget: float | None = None

    def progress(self, step: int, elapsed: float) -> float:
        p = 0.0
        if self.steps:
            p = max(p, step / self.steps)
        if self.time_budget:
            p = max(p, elapsed / self.time_budget)
        return min(p, 1.0)

    def done(self, step: int, elapsed: float) -> bool:
        return self.progress(step, elapsed) >= 1.0


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
        pts = [(x, m) for x, m in zip(history.metric_seconds, history.metric) if m is not None]
        if pts:
            ax2 = ax.twinx()
            ax2.plot(*zip(*pts), color="tab:orange", marker=".", lw=1)
            ax2.set_ylabel(metric_name, color="tab:orange")
    ax.set_title(run.path.name, fontsize=8)
    fig.tight_layout()
    from .runs import atomic_write

    atomic_write(run.path / CURVE, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
