"""The Python API: ``fieldfit.fit`` and ``fieldfit.load`` (the command line is a thin layer over them).

Examples:
    >>> import fieldfit
    >>> model = fieldfit.fit("rings", method="rbf", steps=50, out="runs/rings-demo")  # doctest: +SKIP
    >>> model.metrics["psnr"]  # doctest: +SKIP
    >>> model = fieldfit.load("runs/rings-demo")  # doctest: +SKIP
"""

import time
from pathlib import Path

from .config import given_options
from .errors import InputError
from .registry import Job, config_class, get_method
from .runs import FORMAT, Run
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
    """An existing run folder written by this version of fieldfit; InputError otherwise."""
    run = Run.open(path)
    cfg = run.config()
    if cfg.get("format") != FORMAT or "method" not in cfg or "task" not in cfg:
        raise InputError(run.path, "written by an older fieldfit (before typed configs) or not a run folder",
                         "fit the scene again with this version")
    return run


def prepare(scene=None, method: str | None = None, *, time_budget=None, steps=None, device="auto", seed: int = 0,
            out=None, resume=None, options: dict | None = None, command: str = "") -> tuple:
    """(method package, Job) of a fit: the input classified, the options checked against the method's Config for
    its task, the budget, a fresh run folder (or the resumed one). Nothing is trained yet."""
    from fieldfit.scenes.inputs import classify

    options = {k: v for k, v in (options or {}).items() if v is not None}
    saved = {}
    if resume is not None:
        run = open_run(resume)
        saved = run.config()
        if method is not None and method != saved["method"]:
            raise InputError(f"--method {method}", f"the run to resume was fitted with --method {saved['method']}",
                             "leave --method out when resuming")
        method = saved["method"]
        scene = scene or saved.get("input")
    method = method or "rbf"
    package = get_method(method)
    if not scene:
        raise InputError("SCENE", "missing", "try: fieldfit csg --method rbf   (fieldfit scenes lists built-ins)")
    inp = classify(str(scene))
    cls = config_class(package, method, inp.task)
    parsed = given_options(cls, options, f"--method {method} on {inp.task} inputs")
    budget = Budget.of(time_budget, steps, cls.DEFAULT_SECONDS)
    fresh = False
    if resume is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(out) if out else Path("runs") / f"{inp.name}-{method}-{stamp}"
        fresh = not path.exists()
        run = Run.create(path)
    run.header = {"input": str(scene), "method": method, "command": command}
    job = Job(inp, parsed, budget, run, resolve_device(device), int(seed), resume is not None, saved, fresh)
    return package, job


def fit(scene, method: str = "rbf", *, time_budget=None, steps=None, device="auto", seed: int = 0, out=None,
        resume=None, **options):
    """Fit ``scene`` (an image, a mesh, a posed-image folder or a built-in name) and return the loaded run
    (``fieldfit.model.Model``; its folder is ``.run.path``).

    Args:
        method: rbf | bsp | dnmp | pronerf.
        time_budget: seconds of optimisation (default: the method's, e.g. 60 for rbf images); ``steps``
            instead: a number of steps.
        device: auto | cpu | cuda | cuda:N.
        out: the run folder (default runs/<scene>-<method>-<time>).
        resume: a run folder to continue.
        options: the method's Config fields for the input's task (``fieldfit.methods.<method>.CONFIGS``), e.g.
            ``max_res=256``; an unknown name raises InputError listing the valid ones.
    """
    package, job = prepare(scene, method if resume is None else None, time_budget=time_budget, steps=steps,
                           device=device, seed=seed, out=out, resume=resume, options=options,
                           command=f"fieldfit.fit({scene!r}, method={method!r})")
    package.fit(job)
    return package.load(job.run, job.device)


def load(run_dir, device="auto", trained: bool = True):
    """The run in ``run_dir`` as a ``fieldfit.model.Model``: ``metrics``, ``render(camera)``, ``export_mesh(path)``,
    ``evaluate()``, ``cameras(split)``. ``trained=False`` builds the model without reading the checkpoint."""
    run = open_run(run_dir)
    return get_method(run.config()["method"]).load(run, resolve_device(device), trained)


__all__ = ["fit", "load", "open_run", "prepare", "resolve_device"]
