"""rbf: Gaussian RBF networks (METHODS.md 1): a feature grid, one layer of anisotropic Gaussian RBF units and a
linear head, fitted to images (``image``), signed distance (``sdf``) and radiance (``radiance``)."""

from .config import ImageConfig, RadianceConfig, SDFConfig

TASKS = ("image", "sdf", "radiance")
CONFIGS = {"image": ImageConfig, "sdf": SDFConfig, "radiance": RadianceConfig}


def _module(task: str):
    from . import image, radiance, sdf

    return {"image": image, "sdf": sdf, "radiance": radiance}[task]


def fit(job) -> dict:
    """Fit the input of ``job`` (``fieldfit.registry.Job``) with the task's module."""
    return _module(job.input.task).fit(job)


def load(run, device="cpu", trained: bool = True):
    """The run loaded as a ``fieldfit.model.Model`` (``trained=False``: untrained weights, for a live view)."""
    return _module(run.config()["task"]).load(run, device, trained)


__all__ = ["CONFIGS", "TASKS", "ImageConfig", "RadianceConfig", "SDFConfig", "fit", "load"]
