"""Data-parallel fits on torch.distributed, started by torchrun (``torchrun --nproc_per_node N -m fieldfit SCENE``,
or ``fieldfit SCENE --gpus N``, which execs the same through torch's launcher).

Conventions:
- A fit is distributed when torchrun's ``WORLD_SIZE`` > 1: ``setup`` joins the process group (NCCL on CUDA, each
  rank on ``cuda:LOCAL_RANK``; gloo on the CPU) with ``timeout()`` seconds on every collective. Without it every
  function here is the one-process identity, so a one-process fit is unchanged bit for bit.
- Every rank runs the same code on the same model (built from the same seed; ``fit_loop`` broadcasts rank 0's
  state once more before the first step, a resume included). What differs between ranks: the batch each draws
  (``sample_seed``: rank 0 keeps the fit's seed, rank r adds ``r * RANK_SEED``; ``share``: each draws its share of
  the method's batch, so the total batch is the one-process batch), and the run folder: rank 0 writes the run;
  the others write into a scratch copy (``fieldfit.runs.Run.mirror``) that is removed at the end.
- Gradients: ``attach(optimizer)`` averages every parameter's gradient over the ranks before each step (one flat
  all-reduce per device and dtype; a parameter with a gradient on some rank gets zeros on the others).
- Buffers that are not parameters: the occupancy grid is refreshed on rank 0 and broadcast
  (``render.estimators.occupancy``); ``fit_loop`` agrees each step on the budget's clock (the slowest rank's),
  a stop signal and a non-finite loss (``agree``), so every rank stops, rolls back and checkpoints at the same
  step and none is left waiting in a collective.
- Faults: a collective that fails (a rank died, or ``timeout()`` passed) raises ``FitError`` with one line; torchrun
  then stops the other ranks. ``FIELDFIT_DIST_TIMEOUT`` sets the time-out (default 600 s: the longest a rank may
  wait for the others, e.g. while rank 0 writes a checkpoint).
"""

import datetime
import os
import signal
import threading

import torch
import torch.distributed as tdist

from .errors import FitError

RANK_SEED = 1_000_003  # rank r samples with seed + r * RANK_SEED
DEFAULT_TIMEOUT_S = 600.0


def timeout() -> float:
    """Seconds a collective may wait (``FIELDFIT_DIST_TIMEOUT``, default 600)."""
    try:
        value = float(os.environ.get("FIELDFIT_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def launched() -> int:
    """The world size torchrun asked for (1 when not started by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def active() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def world() -> int:
    return tdist.get_world_size() if active() else 1


def rank() -> int:
    return tdist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def setup(device: str) -> str:
    """Join the process group when torchrun started several ranks; returns this rank's device (``cuda`` ->
    ``cuda:LOCAL_RANK``). Nothing for one process."""
    if launched() <= 1 or active():
        return _local_device(device) if active() else device
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(_local_device(device))
    try:
        tdist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout()))
    except (RuntimeError, ValueError) as e:
        raise FitError(f"could not join the other ranks ({_first_line(e)}); start with torchrun "
                       "--nproc_per_node N -m fieldfit ...") from None
    return _local_device(device)


def teardown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def _local_device(device: str) -> str:
    d = torch.device(device)
    if d.type != "cuda" or launched() <= 1:
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def _first_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


class RankLost(FitError):
    """A collective failed: another rank died or did not answer within ``timeout()`` seconds."""


def _collective(fn, *args, **kw):
    """A collective whose failure (a rank died, the time-out passed) is one line (``RankLost``)."""
    try:
        return fn(*args, **kw)
    except (RuntimeError, tdist.DistError) as e:
        # the launcher stops the other ranks with SIGTERM when one dies; this one says why in one line first
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise RankLost(f"rank {rank()} of {world()}: the other ranks stopped answering ({_first_line(e)}); "
                       f"a rank died or waited more than {timeout():g} s (FIELDFIT_DIST_TIMEOUT)") from None


def sample_seed(seed: int) -> int:
    """The seed of this rank's batches (rank 0: ``seed`` itself)."""
    return int(seed) + rank() * RANK_SEED


def share(total: int, least: int = 1) -> int:
    """This rank's part of a batch of ``total`` items (the ranks' parts add up to ``total``; at least ``least``)."""
    n, r = world(), rank()
    return max(int(least), int(total) // n + (1 if r < int(total) % n else 0))


def fork_generator(gen: torch.Generator | None, seed: int) -> None:
    """Reseed ``gen`` with ``sample_seed(seed)`` on ranks other than 0 (rank 0's stream stays as it is)."""
    if gen is not None and rank() > 0:
        gen.manual_seed(sample_seed(seed))


_FORKED = []  # fork_rng ran in this process (a fit of several stages calls it once per stage)


def fork_rng() -> None:
    """Give the ranks other than 0 their own torch random stream (random backgrounds, jitter), once per process:
    rank r continues from the fit's seed + r * RANK_SEED; rank 0 keeps its stream."""
    if active() and rank() > 0 and not _FORKED:
        torch.manual_seed(torch.initial_seed() + rank() * RANK_SEED)
        _FORKED.append(True)


def broadcast_tensors(tensors: dict) -> None:
    """Overwrite every tensor of ``tensors`` (in place, in key order) with rank 0's."""
    if not active():
        return
    for key in sorted(tensors):
        t = tensors[key]
        if torch.is_tensor(t) and t.numel():
            _broadcast_inplace(t)


def _broadcast_inplace(t: torch.Tensor) -> None:
    if t.dtype == torch.bool:  # gloo and NCCL send numbers
        u = t.to(torch.uint8)
        _collective(tdist.broadcast, u, 0)
        t.copy_(u.bool())
    elif t.is_contiguous():
        _collective(tdist.broadcast, t, 0)
    else:
        c = t.contiguous()
        _collective(tdist.broadcast, c, 0)
        t.copy_(c)


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks (in place). Every rank must pass the same list."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8)
    if params and params[0].device.type == "cuda":
        has = has.to(params[0].device)
    _collective(tdist.all_reduce, has, op=tdist.ReduceOp.MAX)
    groups: dict = {}
    for p, h in zip(params, has.tolist(), strict=True):
        if not h:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif p.grad.is_sparse:
            p.grad = p.grad.to_dense()
        groups.setdefault((p.grad.device, p.grad.dtype), []).append(p)
    n = world()
    for ps in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        _collective(tdist.all_reduce, flat)
        flat /= n
        k = 0
        for p in ps:
            m = p.grad.numel()
            p.grad.copy_(flat[k:k + m].view_as(p.grad))
            k += m


def sum_(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, in place."""
    if active():
        _collective(tdist.all_reduce, t)
    return t


def max_(t: torch.Tensor) -> torch.Tensor:
    """``t``'s elementwise maximum over the ranks, in place."""
    if active():
        _collective(tdist.all_reduce, t, op=tdist.ReduceOp.MAX)
    return t


def attach(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Average gradients over the ranks before each ``opt.step()`` (nothing for one process). Returns ``opt``."""
    if active():
        def before_step(optimizer, args, kwargs):
            average_gradients([p for g in optimizer.param_groups for p in g["params"]])

        opt.register_step_pre_hook(before_step)
    return opt


def agree(elapsed: float, signum, finite: bool, snapshot: bool) -> tuple[float, int | None, bool, bool]:
    """One step's decisions, the same on every rank: (the slowest rank's elapsed seconds, a stop signal any
    rank got, whether every rank's loss was finite, whether any rank wants a copy of the state now)."""
    if not active():
        return elapsed, signum, finite, snapshot
    v = torch.tensor([float(elapsed), float(signum or 0), 0.0 if finite else 1.0, 1.0 if snapshot else 0.0],
                     dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        v = v.cuda()
    _collective(tdist.all_reduce, v, op=tdist.ReduceOp.MAX)
    e, s, bad, snap = v.tolist()
    return e, (int(s) or None), bad == 0.0, snap > 0.0


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank."""
    if not active():
        return bool(flag)
    v = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        v = v.cuda()
    _collective(tdist.all_reduce, v, op=tdist.ReduceOp.MAX)
    return v.item() == 0.0


def barrier() -> None:
    if active():
        _collective(tdist.barrier)


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (numbers, strings, lists, dicts of them: pickled by torch between the ranks
    of one job, never read from a file)."""
    if not active():
        return obj
    box = [obj]
    _collective(tdist.broadcast_object_list, box, 0)
    return box[0]


def deal(items: list) -> list:
    """This rank's items of ``items`` (dealt round-robin: rank r gets r, r + world, ...; one process: all)."""
    return list(items)[rank()::world()]


def collect(mine: list, total: int, to_all: bool = True) -> list | None:
    """The results of ``deal``'s items from every rank, in the order of the items dealt (``total`` of them):
    on every rank, or with ``to_all`` False on rank 0 only (None on the others). One process: ``mine``."""
    if not active():
        return list(mine)
    n = world()
    parts = [None] * n
    if to_all:
        _collective(tdist.all_gather_object, parts, mine)
    else:
        _collective(tdist.gather_object, mine, parts if rank() == 0 else None, 0)
        if rank() != 0:
            return None
    return [parts[k % n][k // n] for k in range(total)]


__all__ = ["RANK_SEED", "RankLost", "active", "agree", "all_true", "attach", "average_gradients", "barrier",
           "broadcast_object", "broadcast_tensors", "collect", "deal", "fork_generator", "fork_rng", "is_main",
           "launched", "max_", "rank", "sample_seed", "setup", "share", "sum_", "teardown", "timeout",
           "world"]
