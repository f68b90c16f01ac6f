"""The Python API: ``fieldfit.fit`` and ``fieldfit.load`` (the command line is a thin layer over them).

Examples:
    >>> import fieldfit
    >>> model = fieldfit.fit("rings", method="rbf", steps=50, out="runs/rings-demo")  # doctest: +SKIP
    >>> model.metrics["psnr"]  # doctest: +SKIP
    >>> model = fieldfit.load("runs/rings-demo")  # doctest: +SKIP
"""

import os
import time
from pathlib import Path

from .config import flag_name, given_options, shape_changes
from .errors import InputError, Silent
from .fingerprint import input_record, same_input
from .logs import LogOptions
from .registry import Job, config_class, get_method
from .runs import CONFIG, FORMAT, METRICS, Run
from .trainer import Budget


def resolve_device(name: str = "auto") -> str:
    """auto | cpu | cuda | cuda:N -> a device torch can use; InputError for one that is not there."""
    import torch

    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}", "no CUDA device is available", "use --device cpu or auto")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise InputError(f"--device {name}", f"no such GPU ({torch.cuda.device_count()} present)",
                             "use --device cuda or cuda:0")
        return name
    raise InputError(f"--device {name}", "unknown device", "use auto, cpu or cuda")


def open_run(path) -> Run:
    """An existing run folder written by this version of fieldfit; InputError otherwise (naming config.json when
    it is not a JSON object)."""
    run = Run.open(path)
    cfg = run.config()
    if not isinstance(cfg, dict):
        raise InputError(run.path / CONFIG, f"expected a JSON object, got a {type(cfg).__name__}",
                         "restore it or fit again")
    if cfg.get("format") != FORMAT or "method" not in cfg or "task" not in cfg:
        raise InputError(run.path, "written by an older fieldfit (before typed configs) or not a run folder "
                         "(config.json has no format, method or task)", "fit the scene again with this version")
    return run


def _method_of(run: Run, cfg: dict):
    """The package of the method ``cfg`` (the run's config.json) names; InputError naming config.json for a method
    or task fieldfit does not have."""
    from .registry import METHODS

    method, task = cfg["method"], cfg["task"]
    if not isinstance(method, str) or method not in METHODS:
        raise InputError(run.path / CONFIG, f"unknown method {method!r}",
                         f"fieldfit has {', '.join(METHODS)}; restore the file")
    package = get_method(method)
    if task not in package.TASKS:
        raise InputError(run.path / CONFIG, f"{method} has no task {task!r}", "restore the file or fit again")
    return package


def check_seed(seed) -> int:
    """A seed numpy, torch and random all take: a whole number in 0 .. 2^32 - 1; InputError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, float, str)):
        raise InputError(f"seed {seed!r}", "must be a whole number", "e.g. seed=0")
    try:
        value = int(seed)
    except ValueError:
        raise InputError(f"--seed {seed}", "must be a whole number", "e.g. --seed 0") from None
    if value != float(seed) or not 0 <= value < 2**32:
        raise InputError(f"--seed {seed}", "must be a whole number between 0 and 2^32 - 1", "e.g. --seed 0")
    return value


def prepare(scene=None, method: str | None = None, *, time_budget=None, steps=None, device="auto", seed: int = 0,
            out=None, resume=None, overwrite: bool = False, options: dict | None = None, command: str = "",
            log: str = "csv", log_image_every=60.0) -> tuple:
    """(method package, Job) of a fit: the input classified, the options checked against the method's Config for
    its task, the budget, the logs (``fieldfit.logs.LogOptions``: ``log`` csv | tensorboard, a test-view picture
    every ``log_image_every`` seconds) and the run folder, locked for writing (``job.run.release()`` when done): a
    new one (``Run.create_unique`` / ``Run.claim``, see ``fieldfit.runs``) or, with ``resume``, the run to
    continue, checked before anything is written into it (input, shape-setting options, checkpoint). Nothing is
    trained yet.

    Started by torchrun with several ranks (``fieldfit.dist``): the ranks join, rank 0 prepares the run and the
    others a mirror of it (``Run.mirror``); when rank 0's preparation fails, the others raise ``Silent``."""
    from . import dist

    kw = dict(time_budget=time_budget, steps=steps, device=device, seed=seed, out=out, resume=resume,
              overwrite=overwrite, options=options, command=command, log=log, log_image_every=log_image_every)
    if dist.launched() <= 1:
        return _prepare(scene, method, **kw)
    kw["device"] = dist.setup(resolve_device(device))
    if dist.is_main():
        try:
            package, job = _prepare(scene, method, **kw)
        except BaseException:
            dist.broadcast_object(None)
            raise
        dist.broadcast_object(str(job.run.path))
        return package, job
    path = dist.broadcast_object(None)
    if path is None:
        raise Silent(2)
    return _prepare(scene, method, mirror=Path(path), **kw)


def _prepare(scene=None, method: str | None = None, *, time_budget=None, steps=None, device="auto", seed: int = 0,
             out=None, resume=None, overwrite: bool = False, options: dict | None = None, command: str = "",
             log: str = "csv", log_image_every=60.0, mirror: Path | None = None) -> tuple:
    """``prepare`` in one process (``mirror``: rank 0's run folder, for the other ranks)."""
    from fieldfit.scenes.inputs import classify

    options = {k: v for k, v in (options or {}).items() if v is not None}
    seed = check_seed(seed)
    logging = LogOptions.of(log, log_image_every)  # tensorboard missing: said before any folder or training
    if resume is not None:
        package, job = _prepare_resume(scene, method, resume, time_budget=time_budget, steps=steps, device=device,
                                       seed=seed, out=out, overwrite=overwrite, options=options, command=command,
                                       mirror=mirror)
        job.run.log_options = logging
        return package, job
    method = method or "rbf"
    package = get_method(method)
    if not scene:
        raise InputError("SCENE", "missing", "try: fieldfit csg --method rbf   (fieldfit scenes lists built-ins)")
    inp = classify(str(scene))
    cls = config_class(package, method, inp.task)
    parsed = given_options(cls, options, f"--method {method} on {inp.task} inputs")
    budget = Budget.of(time_budget, steps, cls.DEFAULT_SECONDS)
    device = resolve_device(device)
    record = input_record(inp)
    if mirror is not None:
        run = Run.mirror(mirror)
    elif out:
        run = Run.claim(Path(out), overwrite)
    else:
        name = f"{inp.name}-{method}-{time.strftime('%Y%m%d-%H%M%S')}" + (f"-seed{int(seed)}" if int(seed) else "")
        run = Run.create_unique(Path("runs"), name)
    run.header = {**record, "method": method, "command": command}
    run.log_options = logging
    return package, Job(_absolute(inp), parsed, budget, run, device, int(seed), False, {}, run.fresh)


def _absolute(inp):
    """``inp`` with an absolute path: what a method records (``source``) is found from any working folder."""
    from dataclasses import replace

    return inp if inp.path is None else replace(inp, path=Path(os.path.abspath(inp.path)))


def _prepare_resume(scene, method, resume, *, time_budget, steps, device, seed, out, overwrite, options, command,
                    mirror=None):
    """``prepare`` for ``--resume RUN``: every check before the run is written to, under its lock (``mirror``:
    rank 0 holds the lock; this rank reads the run and writes into a ``Run.mirror`` of it)."""
    run = open_run(resume)
    if out is not None and os.path.realpath(out) != os.path.realpath(run.path):
        raise InputError(f"--out {out}", "a resume writes into the run it continues", "leave --out out")
    if overwrite:
        raise InputError("--overwrite", "a resume continues the run", "leave --overwrite out, or start a new fit")
    if mirror is None:
        run.acquire()
    try:
        saved = run.config()
        if method is not None and method != saved["method"]:
            raise InputError(f"--method {method}", f"the run to resume was fitted with --method {saved['method']}",
                             "leave --method out when resuming")
        method = saved["method"]
        package = get_method(method)
        inp = _resume_input(scene, saved, run)
        cls = config_class(package, method, inp.task)
        parsed = given_options(cls, options, f"--method {method} on {inp.task} inputs")
        for name, was in shape_changes(cls, saved.get("config", {}), parsed):
            flag = flag_name(name)
            raise InputError(f"{flag} {parsed[name]}", f"changes the shape of the saved weights or optimizer (the run "
                             f"has {flag} {was})", "leave it out to resume, or start a new fit")
        budget = Budget.of(time_budget, steps, cls.DEFAULT_SECONDS)
        device = resolve_device(device)
        resumable = getattr(package, "resumable", Run.has_checkpoint)
        if not resumable(run):
            raise InputError(run.path, "nothing to resume: the run has no checkpoint yet", "start a new fit")
        if run.has_checkpoint():
            run.checkpoint_meta()  # its layout is checked here; the method checks its tensors before writing
        header = {**input_record(inp), "method": method, "command": command}
    except BaseException:
        run.release()
        raise
    run = run if mirror is None else Run.mirror(run.path)
    run.header = header
    return package, Job(_absolute(inp), parsed, budget, run, device, int(seed), True, saved, False)


def _resume_input(scene, saved: dict, run: Run):
    """The input of a resume: SCENE when given (it must be the run's input, by content), else the input the run
    recorded (it must still be there, unchanged)."""
    from fieldfit.scenes.inputs import classify

    recorded = saved.get("input")
    if scene:
        inp = classify(str(scene))
        if inp.task != saved.get("task") or not same_input(inp, saved):
            raise InputError(scene, f"is not the input {run.path} was fitted to ({recorded})",
                             "leave SCENE out to resume that run, or start a new fit without --resume")
        return inp
    if not recorded:
        raise InputError(run.path / "config.json", "records no input", "pass it: fieldfit SCENE --resume RUN")
    try:
        inp = classify(str(recorded))
    except InputError:
        raise InputError(recorded, "the input this run was fitted to is not there any more",
                         f"pass its new place: fieldfit SCENE --resume {run.path}") from None
    if not same_input(inp, saved):
        raise InputError(recorded, "changed since the run was fitted (its content hash differs)",
                         "restore it, or start a new fit")
    return inp


def fit(scene, method: str = "rbf", *, time_budget=None, steps=None, device="auto", seed: int = 0, out=None,
        resume=None, overwrite: bool = False, log: str = "csv", log_image_every: float = 60.0, **options):
    """Fit ``scene`` (an image, a mesh, a posed-image folder or a built-in name) and return the loaded run
    (``fieldfit.model.Model``; its folder is ``.run.path``).

    Args:
        method: rbf | bsp | dnmp | pronerf.
        time_budget: seconds of optimisation (default: the method's, e.g. 60 for rbf images); ``steps``
            instead: a number of steps.
        device: auto | cpu | cuda | cuda:N.
        out: the run folder (default runs/<scene>-<method>-<time>, with a suffix when taken); an existing one
            must be empty, unless ``overwrite`` (the files a fit writes are removed from it first).
        resume: a run folder to continue (the same input; options that set weight shapes stay as they were).
        log: csv (RUN/metrics.csv, always written) | tensorboard (also event files in RUN/tensorboard, with a
            test-view picture every ``log_image_every`` seconds of training; needs ``fieldfit[tensorboard]``).
        options: the method's Config fields for the input's task (``fieldfit.methods.<method>.CONFIGS``), e.g.
            ``max_res=256``; an unknown name raises InputError listing the valid ones.
    """
    package, job = prepare(scene, method if resume is None else None, time_budget=time_budget, steps=steps,
                           device=device, seed=seed, out=out, resume=resume, overwrite=overwrite, options=options,
                           command=f"fieldfit.fit({scene!r}, method={method!r})", log=log,
                           log_image_every=log_image_every)
    try:
        package.fit(job)
    finally:
        job.run.release()
    return package.load(job.run, job.device)


def load(run_dir, device="auto", trained: bool = True):
    """The run in ``run_dir`` as a ``fieldfit.model.Model``: ``metrics``, ``render(camera)``, ``export_mesh(path)``,
    ``evaluate()``, ``cameras(split)``. ``trained=False`` builds the model without reading the checkpoint."""
    run = open_run(run_dir)
    package = _method_of(run, run.config())
    device = resolve_device(device)
    metrics = run.metrics()  # read here so a damaged one stops every command before any work
    if not isinstance(metrics, dict):
        raise InputError(run.path / METRICS, f"expected a JSON object, got a {type(metrics).__name__}",
                         "delete it: fieldfit eval RUN writes it again")
    try:
        return package.load(run, device, trained)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # an entry missing or mistyped
        raise InputError(run.path / CONFIG, f"does not describe the run's {run.config()['method']} model "
                         f"({type(e).__name__}: {e})", "restore it or fit again") from None


__all__ = ["fit", "load", "open_run", "prepare", "resolve_device"]
