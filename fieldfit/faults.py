"""Faults during a fit: a copy of the last finite state to go back to, and signals that stop a fit cleanly.

``Snapshot`` keeps the tensors of a fit's ``state()`` (the weights and optimizer state a checkpoint holds) in host
memory, taken only when every one of them is finite, and writes them back into the live tensors to roll back.
``StopSignals`` turns the first SIGINT or SIGTERM into a request the training loop answers after its current step;
a second one stops at once. A signal the process ignores (SIGINT of a job started in the background) stays ignored.
"""

import copy
import shlex
import signal
import threading
import time

import torch

from .errors import FitError, Stopped


def non_finite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None when all are finite."""
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            return name
    return None


class Snapshot:
    """The tensors of ``state()`` (as ``runs.model_state`` gives them), copied to host memory while all are finite.

    ``state()`` must return the live tensors: ``model.state_dict()`` and an optimizer's state share storage with
    the parameters and moments, so ``restore`` writes the copies back into them, whatever the method. Plain numbers
    in the meta (Adam's step counts, ``RowAdam.t``) are not rolled back; they only shift Adam's bias correction.
    """

    def __init__(self, state):
        self.state = state
        self.tensors: dict = {}
        self.meta: dict = {}
        self.step = -1
        self.elapsed = 0.0
        self.seconds = 0.0  # what the last copy took
        self.bad: str | None = None  # the tensor that was not finite when the last ``take`` refused

    @torch.no_grad()
    def take(self, step: int, elapsed: float) -> bool:
        """Copy the state when it is finite (True); otherwise keep the previous copy (False, ``bad`` names why)."""
        t0 = time.perf_counter()
        tensors, meta = self.state()
        self.bad = non_finite(tensors)
        if self.bad is not None:
            return False
        copies = {}
        for name, t in tensors.items():
            buf = self.tensors.get(name)  # the previous copy's buffer, reused when it fits
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                buf = torch.empty(t.shape, dtype=t.dtype, device="cpu")
            copies[name] = buf.copy_(t)
        self.tensors, self.meta = copies, copy.deepcopy(meta)
        self.step, self.elapsed = step, elapsed
        self.seconds = time.perf_counter() - t0
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Write the copy back into the live tensors. State made since (an optimizer's moments before its first
        step) is zeroed."""
        live, _ = self.state()
        for name, t in live.items():
            saved = self.tensors.get(name)
            if saved is None:
                t.zero_()
            elif saved.shape != t.shape:
                raise FitError(f"cannot roll back: {name} changed shape from {tuple(saved.shape)} to "
                               f"{tuple(t.shape)} since step {self.step}")
            else:
                t.copy_(saved)


class StopSignals:
    """SIGINT and SIGTERM while the block runs: the first sets ``signum`` (the loop saves and stops after its step),
    a second raises ``Stopped`` at once. Handlers are installed only in the main thread (elsewhere Python refuses
    them: a fit in a worker thread keeps the default behaviour); the previous ones come back after the block."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run=None):
        self.run = run
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:  # ignored (a background job's SIGINT): left so
                    self.previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            if signal.getsignal(s) == self._handle:  # still ours (a rank that lost its peers ignores SIGTERM: kept)
                signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: it was not set from Python
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            return
        kept = self.run is not None and self.run.has_checkpoint()
        raise Stopped(f"stopped at once ({signal.Signals(signum).name} again); "
                      + (f"the last checkpoint is kept: resume with: {resume_command(self.run)}" if kept else
                         "no checkpoint yet: nothing to resume"), signum)


def resume_command(run) -> str:
    """The command that continues ``run``."""
    return f"fieldfit --resume {shlex.quote(str(run.path))}"


__all__ = ["Snapshot", "StopSignals", "non_finite", "resume_command"]
