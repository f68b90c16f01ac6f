"""Run folders: the unit of output, readable without fieldfit's internals.

A run folder holds ``config.json`` (enough to rebuild the model), ``checkpoint.safetensors``
(weights and optimizer state; loading it executes no code), ``metrics.json``, ``log``,
``curve.png`` and the task's outputs (``reconstruction.png``, ``mesh.ply``, ``renders/``).
Every file is written atomically: written beside its target, then renamed over it.
"""

import json
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from .errors import InputError

FORMAT = 2  # config.json layout: 2 = typed method configs (the "config" entry)
CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.json"
LOG = "log"
CURVE = "curve.png"


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


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


class Run:
    """A run folder. ``Run.create`` makes a new one, ``Run.open`` an existing one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._t0 = time.time()
        self.header: dict = {}  # written first into config.json (input argument, command line)
        self.step_hook = None  # fit_loop calls step_hook(step, state) after each step (the live viewer)

    @classmethod
    def create(cls, path: Path) -> "Run":
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise InputError(path, f"not a run folder (no {CONFIG})", "pass the folder a fit wrote, e.g. runs/<name>")
        return cls(path)

    # -- config and metrics -------------------------------------------------
    def write_config(self, config: dict) -> None:
        write_json(self.path / CONFIG, {"format": FORMAT, **self.header, **config})

    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def metrics(self) -> dict:
        p = self.path / METRICS
        return read_json(p) if p.is_file() else {}

    # -- log ----------------------------------------------------------------
    def log(self, msg: str, echo: bool = True) -> None:
        stamp = f"[{time.time() - self._t0:7.1f}s] "
        with open(self.path / LOG, "a") as f:
            f.write(stamp + msg + "\n")
        if echo:
            print(msg, flush=True)

    # -- checkpoint -----------------------------------------------------------
    def save_checkpoint(self, tensors: dict, meta: dict) -> None:
        """Weights (and optimizer state) as safetensors; ``meta`` as string metadata."""
        from safetensors.torch import save_file

        flat = {k: _own(v.detach().contiguous().cpu()) for k, v in tensors.items()}
        meta = {k: json.dumps(v) for k, v in meta.items()}
        atomic_write(self.path / CHECKPOINT, lambda tmp: save_file(flat, tmp, metadata=meta))

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).is_file()

    def load_checkpoint(self, device="cpu") -> tuple[dict, dict]:
        """Return (tensors, meta). safetensors never executes code while loading."""
        return self._read_checkpoint(device, tensors=True)

    def checkpoint_meta(self) -> dict:
        """The checkpoint's meta (step, elapsed, ...) without reading its tensors."""
        return self._read_checkpoint("cpu", tensors=False)[1]

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
    opt.load_state_dict(sd)
    for group in opt.param_groups:  # state laid out as its parameter (grids may sit channels-last on a GPU):
        for p in group["params"]:   # fused Adam refuses tensors whose strides differ
            st = opt.state.get(p, {})
            for name, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    st[name] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def model_state(model: torch.nn.Module, opt: torch.optim.Optimizer | None):
    """(tensors, meta) for Run.save_checkpoint: weights under 'model.', optimizer under 'optim.'."""

    def state():
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        meta = {}
        if opt is not None:
            t, meta = optimizer_tensors(opt)
            tensors.update(t)
        return tensors, meta

    return state


def load_model(run: Run, model: torch.nn.Module, device="cpu") -> dict:
    tensors, meta = run.load_checkpoint(device)
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(sd)
    meta["_tensors"] = tensors
    return meta
