"""bsp: BSP-Net convex decompositions (METHODS.md 4): a shape as a union of convexes cut by shared planes,
exported as ONE watertight, manifold, low-poly mesh; also a low-poly proxy of any run (``proxy``)."""

from .config import BSPConfig

TASKS = ("sdf",)
CONFIGS = {"sdf": BSPConfig}


def fit(job) -> dict:
    from .pipeline import fit_job

    return fit_job(job)


def load(run, device="cpu", trained: bool = True):
    from .pipeline import BSPRun

    return BSPRun(run, run.config(), device, trained)


__all__ = ["BSPConfig", "CONFIGS", "TASKS", "fit", "load"]
