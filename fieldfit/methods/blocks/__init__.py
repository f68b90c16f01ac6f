"""blocks: a large world-space scene as A x B overlapping blocks (Block-NeRF's idea), each its own rbf run, under one
parent run that renders, evaluates, views and exports as one (``blend``: per-sample blending). The blocks train
together through the blended field (``together``, the default) or apart, one after another (``pipeline``).

``fieldfit SCENE --blocks AxB`` (``command``) makes one (registered as method ``blocks``, so that
the parent run loads like any other)."""

from .config import BlocksConfig

TASKS = ("radiance",)
CONFIGS = {"radiance": BlocksConfig}


def fit(job) -> dict:
    from .pipeline import fit_job

    return fit_job(job)


def resumable(run) -> bool:
    """A parent run can always go on: together from its checkpoint; apart, finished blocks are kept, the others
    fitted or resumed."""
    return (run.path / "config.json").is_file()


def load(run, device="cpu", trained: bool = True):
    from .model import BlocksRun

    return BlocksRun(run, run.config(), device)


__all__ = ["CONFIGS", "TASKS", "BlocksConfig", "fit", "load", "resumable"]
