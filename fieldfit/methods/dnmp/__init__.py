"""dnmp: deformable neural mesh primitives (DNMP, METHODS.md 2): one small deformable mesh per occupied voxel,
rasterized with the shared K-buffer rasterizer (``render.raster``) and shaded by a view-dependent MLP."""

from .config import DNMPConfig

TASKS = ("radiance",)
CONFIGS = {"radiance": DNMPConfig}


def fit(job) -> dict:
    from .pipeline import fit as _fit

    return _fit(job)


def load(run, device="cpu", trained: bool = True):
    from .pipeline import load as _load

    return _load(run, device, trained)


def resumable(run) -> bool:
    from .pipeline import resumable as _resumable

    return _resumable(run)


__all__ = ["CONFIGS", "DNMPConfig", "TASKS", "fit", "load", "resumable"]
