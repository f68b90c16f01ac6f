"""pronerf: projection-aware ray sampling (ProNeRF, METHODS.md 3): a sampler network places a few samples per ray
from colours re-projected into nearby training views; the radiance field is queried only there."""

from .config import ProNeRFConfig

TASKS = ("radiance",)
CONFIGS = {"radiance": ProNeRFConfig}


def fit(job) -> dict:
    from .pipeline import fit as _fit

    return _fit(job)


def load(run, device="cpu", trained: bool = True):
    from .pipeline import load as _load

    return _load(run, device, trained)


__all__ = ["CONFIGS", "ProNeRFConfig", "TASKS", "fit", "load"]
