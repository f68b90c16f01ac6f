"""Method registry: method name -> the package that implements it (imported on first use), and the Job a fit is.

A method package (``fieldfit/methods/<name>/``) provides:
  TASKS: the tasks it fits ("image", "sdf", "radiance");
  CONFIGS: task -> its Config dataclass (fields = flags, ``fieldfit.config``; class attribute
           ``DEFAULT_SECONDS``: the time budget when none is given);
  fit(job: Job) -> dict         fit, write the run folder, return metrics;
  load(run: Run, device) -> fieldfit.model.Model   a finished (or running) run, loaded;
  resumable(run) -> bool        (optional) whether ``--resume`` has something to go on from.
"""

import importlib
from dataclasses import dataclass, field

from .errors import InputError
from .runs import Run
from .trainer import Budget

METHODS = {
    "rbf": "fieldfit.methods.rbf",
    "bsp": "fieldfit.methods.bsp",
    "dnmp": "fieldfit.methods.dnmp",
    "pronerf": "fieldfit.methods.pronerf",
    "blocks": "fieldfit.methods.blocks",  # a parent of rbf runs (fieldfit blocks SCENE --grid AxB)
}


@dataclass
class Job:
    """One fit: the input, the user's options (checked against the method's Config of the input's task), the
    budget, the run folder it writes, the device and the seed. ``resume``: go on from the run's checkpoint."""

    input: object  # fieldfit.scenes.inputs.Input
    options: dict
    budget: Budget
    run: Run
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    saved: dict = field(default_factory=dict)  # resume: the run's config.json
    fresh: bool = False  # the run folder was made for this fit (removed again when bad input stops it)


def get_method(name: str):
    """The package of method ``name``; InputError for an unknown name."""
    if name not in METHODS:
        raise InputError(f"--method {name}", "unknown method", f"choose one of {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


def config_class(method, name: str, task: str):
    """The Config dataclass of ``method`` (a package, called ``name``) for ``task``; InputError when the method
    does not fit that task."""
    if task not in method.TASKS:
        raise InputError(f"--method {name}", f"does not fit {task} inputs", f"it fits: {', '.join(method.TASKS)}")
    return method.CONFIGS[task]


__all__ = ["METHODS", "Job", "config_class", "get_method"]
