"""Optimisation pieces every method shares: seeding, Adam, a learning rate driven by training progress.

Every method sets its learning rates each step through ``set_lr`` (a schedule over progress). ``set_lr`` also
applies a factor, ``lr_scale()``, which is 1 unless the trainer lowered it (``lower_lr``, inside ``scaled_lr``)
after rolling back a step that went non-finite: the schedule goes on, at that fraction of its rate.
"""

import random
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def lr_at(base: float, progress: float, final_ratio: float, warmup: float = 0.0) -> float:
    """Exponential decay from ``base`` to ``base * final_ratio`` over progress in [0,1]."""
    w = min(1.0, progress / warmup) if warmup > 0 else 1.0
    return base * w * final_ratio**progress


_LR_SCALE = ContextVar("fieldfit_lr_scale", default=1.0)  # per thread: a fit in another thread keeps its own


def lr_scale() -> float:
    """The factor ``set_lr`` applies to every schedule (1.0 unless lowered by ``lower_lr``)."""
    return _LR_SCALE.get()


@contextmanager
def scaled_lr():
    """A block (one fit) in which ``lower_lr`` may lower the learning rates; the factor before it comes back
    after it."""
    token = _LR_SCALE.set(_LR_SCALE.get())
    try:
        yield
    finally:
        _LR_SCALE.reset(token)


def lower_lr(factor: float) -> float:
    """Multiply the learning-rate factor by ``factor`` from the next ``set_lr`` on; returns the new factor."""
    _LR_SCALE.set(_LR_SCALE.get() * float(factor))
    return _LR_SCALE.get()


def set_lr(opt: torch.optim.Optimizer, progress: float, final_ratio: float) -> float:
    """Each group's rate: its ``base_lr`` on the ``lr_at`` schedule, times ``lr_scale()``. Returns the first
    group's (what the logs show)."""
    scale = _LR_SCALE.get()
    for g in opt.param_groups:
        g["lr"] = lr_at(g["base_lr"], progress, final_ratio) * scale
    return opt.param_groups[0]["lr"] if opt.param_groups else 0.0


def make_adam(groups: list[dict], betas=(0.9, 0.99), eps=1e-15) -> torch.optim.Optimizer:
    """Adam, fused when torch supports it for the device (3x faster on CPU for big grids). In a distributed fit
    its gradients are averaged over the ranks before each step (``fieldfit.dist.attach``)."""
    from . import dist

    for g in groups:
        g["base_lr"] = g["lr"]
    try:
        opt = torch.optim.Adam(groups, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(groups, betas=betas, eps=eps)
    return dist.attach(opt)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["count_params", "lower_lr", "lr_at", "lr_scale", "make_adam", "scaled_lr", "seed_everything", "set_lr"]
