"""fieldfit: fit neural fields to images, shapes and posed photos.

    model = fieldfit.fit("lego/", method="rbf", time_budget=60)   # fit; a fieldfit.model.Model
    model = fieldfit.load("runs/lego-rbf-...")                    # a finished run
    model.render(model.cameras("test")[0]).rgb                    # [H,W,3]
    model.export_mesh("lego.ply")

The import package gathers the repository's folders as subpackages: ``fieldfit.fields``, ``fieldfit.render``,
``fieldfit.mesh``, ``fieldfit.cuda``, ``fieldfit.viewer``, ``fieldfit.scenes``. Importing it compiles nothing
and touches no global state (``fit`` and ``load`` import the rest on first use).
"""

__version__ = "0.2.0"
__all__ = ["__version__", "fit", "load"]


def fit(scene, method: str = "rbf", **kwargs):
    """Fit ``scene`` with ``method``; see ``fieldfit.api.fit``."""
    from .api import fit as _fit

    return _fit(scene, method, **kwargs)


def load(run_dir, device: str = "auto", trained: bool = True):
    """Load a run folder; see ``fieldfit.api.load``."""
    from .api import load as _load

    return _load(run_dir, device, trained)
