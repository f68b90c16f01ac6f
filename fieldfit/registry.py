"""Method registry: method name -> the module that implements it (imported on first use).

A method module provides:
  TASKS: tuple of the tasks it fits ("image", "sdf", "radiance");
  fit(inp: scenes.inputs.Input, opts: Options, run: Run) -> dict   (metrics; writes the run folder);
  export_mesh(run: Run, out: Path, opts: dict) -> dict             (optional);
  evaluate(run: Run, opts: dict) -> dict                           (optional);
  render_path(run: Run, path: str, out: Path, opts: dict) -> Path (optional, radiance).
"""

import importlib
from dataclasses import dataclass, field

from .errors import InputError

METHODS = {
    "rbf": "fieldfit.methods.rbf",
    "bsp": "fieldfit.methods.bsp",
    "dnmp": "fieldfit.methods.dnmp",
    "pronerf": "fieldfit.methods.pronerf",
}


@dataclass
class Options:
    """Options every method understands; method-specific ones travel in ``extra``."""

    time_budget: float | None = None
    steps: int | None = None
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    extra: dict = field(default_factory=dict)


def get_method(name: str):
    if name not in METHODS:
        raise InputError(f"--method {name}", "unknown method", f"choose one of {', '.join(METHODS)}")
    try:
        return importlib.import_module(METHODS[name])
    except ModuleNotFoundError as e:
        if e.name == METHODS[name]:
            raise InputError(f"--method {name}", "not implemented yet in this version",
                             "use --method rbf") from None
        raise
