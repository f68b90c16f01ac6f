"""Run folders: the unit of output, readable without fieldfit's internals.

A run folder holds ``config.json`` (enough to rebuild the model), ``checkpoint.safetensors``
(weights and optimizer state; loading it executes no code), ``metrics.json``, ``log``, ``metrics.csv`` (and
``tensorboard/``: ``fieldfit.logs``), ``curve.png`` and the task's outputs (``reconstruction.png``, ``mesh.ply``,
``renders/``).

Ownership: a new run gets a folder of its own (``Run.create_unique`` makes it exclusively, with a suffix when
the name is taken; ``Run.claim`` takes a ``--out`` folder only when it is new or empty, or with ``overwrite``).
A process that writes into a run (a fit, a resume, an export into it) holds an advisory lock on
``RUN/.fieldfit.lock`` (``Run.acquire`` / ``Run.release``); a second writer is refused in one line. Readers take
no lock.

Durability: every file is written by ``atomic_write``: into a temporary file beside its target (named
``.<target>.<pid>.<random><suffix>``), flushed to disk, renamed over the target, and the folder's entry
flushed too, so a crash leaves either the old file or the new one. A write the disk refuses (full, read-only)
is an ``InputError`` naming the file and the reason, the old file intact. Temporary files a killed process left
are removed by the next writer that opens the run.
"""

import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import torch

from .errors import InputError

try:
    import fcntl
except ImportError:  # not on Windows: runs are not locked there
    fcntl = None

FORMAT = 2  # config.json layout: 2 = typed method configs (the "config" entry)
CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.json"
LOG = "log"
CURVE = "curve.png"
LOCK = ".fieldfit.lock"
# What a fit writes into its folder: ``Run.claim(overwrite=True)`` removes these first (nothing else), so an old
# run's checkpoint, metrics or meshes never sit beside the new run's config.
RUN_FILES = (CONFIG, CHECKPOINT, METRICS, LOG, CURVE, "metrics.csv", "tensorboard", "reconstruction.png", "mesh.ply",
             "mesh.obj", "convexes.ply", "renders", "points")
# A temporary file of atomic_write (.NAME.PID.RANDOM[SUFFIX]) or of another writer (.NAME.RANDOM[SUFFIX]).
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}(?P<suffix>\.[^.]+)?$")
STALE_TEMP_S = 600.0  # a temporary file without a writer's pid is left alone while younger than this
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(path, e: OSError) -> InputError:
    """The one-line error of a write the system refused (``e``), naming ``path`` and the reason."""
    reason = os.strerror(e.errno) if e.errno else str(e)
    if e.errno in DISK_FULL:
        fix = "free some disk space and run it again; the previous version of the file is kept"
    elif e.errno in NOT_WRITABLE:
        fix = "make the folder writable or write elsewhere (--out); the previous version of the file is kept"
    else:
        fix = "check the disk; the previous version of the file is kept"
    return InputError(path, f"cannot write ({reason})", fix)


def sync_file(path) -> None:
    """Flush ``path``'s data to the disk (fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a file system that cannot is left as it is."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)``, flush the file to disk, rename it over ``path`` and flush the folder.

    A failure leaves ``path`` as it was and no temporary file; an OSError of the system (disk full, read-only
    folder) becomes an ``InputError`` naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        sync_file(tmp)
        os.replace(tmp, path)
        sync_dir(path.parent)
    except OSError as e:
        if e.errno is None:  # a writer's own complaint (e.g. an image mode a format lacks), not the system's
            raise
        raise write_error(path, e) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            with suppress(OSError):
                os.unlink(tmp)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    """``data`` into ``path`` through ``atomic_write``."""

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, data: dict) -> Path:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(data), indent=2, default=_json_default, allow_nan=False)
    return write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found", "is this a fieldfit run folder?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"malformed JSON ({e})", "restore it or re-run the fit") from None


def _own(t):
    """``t``, or a copy when it is a view into a larger storage (safetensors refuses shared storage)."""
    return t.clone() if t.untyped_storage().nbytes() != t.numel() * t.element_size() else t


def is_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file of an interrupted write (see ``_TEMP``)."""
    m = _TEMP.match(name)
    return bool(m) and m["suffix"] in (None, ".tmp", Path(m["name"]).suffix or None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def entries(path: Path) -> list[str]:
    """What a folder holds, leaving out the lock and temporary files."""
    return sorted(n for n in os.listdir(path) if n != LOCK and not is_temp(n))


class Run:
    """A run folder. ``Run.create_unique`` / ``Run.claim`` make a new run (locked for writing), ``Run.open`` an
    existing one (not locked: ``acquire`` before writing into it); ``Run.create`` makes a folder with no checks
    (a run inside another, tests)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._t0 = time.time()
        self.header: dict = {}  # written first into config.json (input argument, command line)
        self.step_hook = None  # fit_loop calls step_hook(step, state) after each step (the live viewer)
        self.log_options = None  # fieldfit.logs.LogOptions of the fit writing this run (None: csv only)
        self.notes: dict = {}  # what the fit fell back to (``warn``), recorded in config.json and metrics.json
        self.fresh = False  # the folder was made for this run (bad input may remove it again)
        self.quiet = False  # never print the log (a mirror: rank 0 speaks for the fit)
        self.scratch = False  # a mirror's temporary folder: removed by ``release``
        self._lock_fd = None

    @classmethod
    def create(cls, path: Path) -> "Run":
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def create_unique(cls, parent: Path, name: str) -> "Run":
        """A new folder ``parent/name`` (``name-2``, ``name-3``, ... when taken), made exclusively and locked:
        fits started together never share one."""
        parent = Path(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(parent, e) from None
        for k in range(1, 10_000):
            path = parent / (name if k == 1 else f"{name}-{k}")
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            except OSError as e:
                raise write_error(path, e) from None
            run = cls(path)
            run.fresh = True
            run.acquire()
            return run
        raise InputError(parent / name, "every run folder name of this second is taken", "pass --out")

    @classmethod
    def claim(cls, path: Path, overwrite: bool = False) -> "Run":
        """The folder ``path`` for a new run (``--out``), locked: made when missing; an existing one must be empty
        unless ``overwrite``, which removes the files a fit writes (``RUN_FILES``) and leaves any other alone."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(path, "is a file, not a folder", "pass a folder to --out")
        fresh = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path)
            fresh = True
        except FileExistsError:
            pass
        except OSError as e:
            raise write_error(path, e) from None
        if not fresh and not overwrite:
            _refuse_if_not_empty(path)  # before anything is created in a user's folder
        run = cls(path)
        run.fresh = fresh
        run.acquire()
        try:  # again under the lock: another fit may have filled it meanwhile
            if not overwrite:
                _refuse_if_not_empty(path)
            else:
                run.clear()
        except BaseException:
            run.release()
            raise
        return run

    @classmethod
    def open(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise InputError(path, f"not a run folder (no {CONFIG})", "pass the folder a fit wrote, e.g. runs/<name>")
        return cls(path)

    @classmethod
    def mirror(cls, path: Path) -> "Run":
        """A stand-in for the run ``path`` on a rank other than 0 of a distributed fit (``fieldfit.dist``): a
        temporary folder in which the run's config.json, checkpoint and metrics.json are linked (reads see rank
        0's), while its own writes replace the links and never reach ``path``; not echoed; removed by
        ``release``."""
        scratch = Path(tempfile.mkdtemp(prefix="fieldfit-mirror-"))
        for name in (CONFIG, CHECKPOINT, METRICS):
            if (Path(path) / name).exists():
                os.symlink(os.path.abspath(Path(path) / name), scratch / name)
        run = cls(scratch)
        run.quiet = run.scratch = True
        return run

    # -- ownership ------------------------------------------------------------
    def acquire(self) -> "Run":
        """Lock the run for writing (non-blocking; InputError naming the holder's pid when another process
        holds it), then remove the temporary files interrupted writes left. Released by ``release`` or when
        the process ends, however it ends."""
        if fcntl is None or self._lock_fd is not None:
            return self
        lock = self.path / LOCK
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise write_error(lock, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise write_error(lock, e) from None
                pid = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                who = f" (pid {pid})" if pid.isdigit() else ""
                raise InputError(self.path, f"is in use by another fieldfit process{who}",
                                 "wait for it to end, or write elsewhere with --out") from None
            try:  # the holder before us may have removed the file as it let go: then lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self.remove_temp_files()
        return self

    def release(self) -> None:
        """Let go of the lock (removing the lock file); nothing when not held. A mirror's folder is removed."""
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with suppress(OSError):
            os.unlink(self.path / LOCK)
        os.close(fd)

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def __enter__(self) -> "Run":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def remove_temp_files(self) -> list[Path]:
        """Remove the temporary files of writes that never finished (their process is gone, or, for writers
        that do not name their pid, older than ``STALE_TEMP_S``); returns what was removed."""
        removed, now = [], time.time()
        for root, _dirs, files in os.walk(self.path):
            for name in files:
                m = _TEMP.match(name)
                if not m or not is_temp(name):
                    continue
                p = Path(root) / name
                pid = int(m["pid"]) if m["pid"] else None
                with suppress(OSError):
                    stale = (not _alive(pid)) if pid is not None else now - p.stat().st_mtime > STALE_TEMP_S
                    if stale and pid != os.getpid():
                        p.unlink()
                        removed.append(p)
        return removed

    def clear(self) -> None:
        """Remove what a fit writes into its folder (``RUN_FILES``), nothing else."""
        for name in RUN_FILES:
            p = self.path / name
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
            except OSError as e:
                raise write_error(p, e) from None
        sync_dir(self.path)

    # -- config and metrics -------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json(self.path / CONFIG, {"format": FORMAT, **self.header, **config, **self.notes})

    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, {**metrics, **self.notes})

    def metrics(self) -> dict:
        p = self.path / METRICS
        return read_json(p) if p.is_file() else {}

    # -- log ----------------------------------------------------------------
    def log(self, msg: str, echo: bool = True) -> None:
        """Append ``msg`` to the run's log (best effort: a run read from a read-only place still works) and
        print it when ``echo``."""
        stamp = f"[{time.time() - self._t0:7.1f}s] "
        with suppress(OSError):
            with open(self.path / LOG, "a") as f:
                f.write(stamp + msg + "\n")
        if echo and not self.quiet:
            print(msg, flush=True)

    def warn(self, msg: str, **record) -> None:
        """Say ``msg`` on stderr (one line) and in the log; ``record`` (e.g. grid_fallback="...") goes into the
        run's config.json and metrics.json when they are written."""
        if not self.quiet:
            print(f"fieldfit: warning: {msg}", file=sys.stderr, flush=True)
        self.log(f"warning: {msg}", echo=False)
        self.notes.update(record)

    # -- checkpoint -----------------------------------------------------------
    def save_checkpoint(self, tensors: dict, meta: dict) -> None:
        """Weights (and optimizer state) as safetensors; ``meta`` as string metadata. Written through
        ``atomic_write``: a failed write keeps the previous checkpoint."""
        from safetensors.torch import save

        flat = {k: _own(v.detach().contiguous().cpu()) for k, v in tensors.items()}
        meta = {k: json.dumps(v) for k, v in meta.items()}
        write_bytes(self.path / CHECKPOINT, save(flat, metadata=meta))

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def load_checkpoint(self, device="cpu") -> tuple[dict, dict]:
        """Return (tensors, meta). safetensors never executes code while loading."""
        return self._read_checkpoint(device, tensors=True)

    def checkpoint_meta(self) -> dict:
        """The checkpoint's meta (step, elapsed, ...) without reading its tensors (its layout is checked)."""
        return self._read_checkpoint("cpu", tensors=False)[1]

    def checkpoint_shapes(self) -> dict:
        """name -> shape of every tensor in the checkpoint, read from its header only."""
        from safetensors import SafetensorError, safe_open

        p = self.path / CHECKPOINT
        try:
            with safe_open(str(p), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(p, f"unreadable checkpoint ({e})", "re-run the fit") from None

    def _read_checkpoint(self, device, tensors: bool) -> tuple[dict, dict]:
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        p = self.path / CHECKPOINT
        if not p.is_file():
            raise InputError(p, "checkpoint missing", "the fit did not save one; run it again")
        try:
            out = load_file(str(p), device=str(device)) if tensors else {}
            with safe_open(str(p), framework="pt") as f:
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(p, f"unreadable checkpoint ({e})", "re-run the fit") from None
        return out, meta


def _refuse_if_not_empty(path: Path) -> None:
    names = entries(path)
    if not names:
        return
    what = "a fieldfit run" if CONFIG in names else f"{len(names)} entries: {', '.join(names[:3])}" + \
        (", ..." if len(names) > 3 else "")
    raise InputError(path, f"is not empty ({what})",
                     "pass --overwrite to replace the run files in it, or another --out")


def check_weights(run: Run, model: torch.nn.Module) -> None:
    """InputError unless the checkpoint holds every weight of ``model`` at its shape (read from the header: a
    resume checks this before it writes anything)."""
    saved = {k[len("model."):]: s for k, s in run.checkpoint_shapes().items() if k.startswith("model.")}
    for name, t in model.state_dict().items():
        if name not in saved:
            raise InputError(run.path / CHECKPOINT, f"has no weight {name!r} for this run's model",
                             "the run's files are from different fits: fit it again")
        if saved[name] != tuple(t.shape):
            raise InputError(run.path / CHECKPOINT, f"weight {name!r} is {list(saved[name])}, the model needs "
                             f"{list(t.shape)}", "the run's files are from different fits: fit it again")


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Flatten an optimizer's state into tensors + JSON meta (for safetensors)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            key = f"{pid}.{name}"
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"optim.{key}"] = v
            else:
                scalars[key] = float(v)
    meta = {"optim_scalars": scalars,
            "optim_groups": [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]}
    return tensors, meta


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    state = {}
    for key, val in meta.get("optim_scalars", {}).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = torch.tensor(val)
    for key, val in tensors.items():
        if key.startswith("optim."):
            pid, name = key[len("optim."):].split(".", 1)
            state.setdefault(int(pid), {})[name] = val
    groups = meta.get("optim_groups", [])
    for g, saved in zip(sd["param_groups"], groups, strict=False):  # a saved group the optimizer lacks is dropped
        g.update({k: v for k, v in saved.items() if k in g})
    sd["state"] = state
    try:
        opt.load_state_dict(sd)
    except (ValueError, KeyError, RuntimeError) as e:
        raise InputError(CHECKPOINT, f"optimizer state does not fit the model ({e})",
                         "the run's files are from different fits: fit it again") from None
    for group in opt.param_groups:  # state laid out as its parameter (grids may sit channels-last on a GPU):
        for p in group["params"]:   # fused Adam refuses tensors whose strides differ
            st = opt.state.get(p, {})
            for name, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[name] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def model_state(model: torch.nn.Module, opt: torch.optim.Optimizer | None, average=None):
    """(tensors, meta) for Run.save_checkpoint: weights under 'model.', optimizer under 'optim.'.

    With ``average`` (an ``optim.WeightAverage`` of ``model``), 'model.' holds the averaged weights (what loading
    the run renders) and 'train.' the weights being trained (what a resumed fit goes on from)."""

    def state():
        shown = model if average is None else average.module
        tensors = {f"model.{k}": v for k, v in shown.state_dict().items()}
        meta = {}
        if opt is not None:
            t, meta = optimizer_tensors(opt)
            tensors.update(t)
        if average is not None:
            tensors.update({f"train.{k}": v for k, v in model.state_dict().items()})
            meta["average_updates"] = average.updates
        return tensors, meta

    return state


def load_model(run: Run, model: torch.nn.Module, device="cpu") -> dict:
    tensors, meta = run.load_checkpoint(device)
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        first = str(e).strip().splitlines()[-1].strip()
        raise InputError(run.path / CHECKPOINT, f"does not fit the run's model ({first})",
                         "the run's files are from different fits: fit it again") from None
    meta["_tensors"] = tensors
    return meta
