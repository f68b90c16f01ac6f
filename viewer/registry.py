"""Which view draws a run: its task -> a view class, resolved lazily.

Runs are opened through the public API only (``fieldfit.load(run_dir, device, trained=not live)``: a
``fieldfit.model.Model``), and the view is picked by the run's task, whatever the method: image runs are
drawn by the image view, sdf runs (rbf, bsp) by the mesh view, radiance runs (rbf, pronerf, dnmp) by the
radiance view. ``VIEWS`` names each view by "module:Class" so that finding a run's view imports only that
view's module (and no method until the run is loaded). A view module registers its classes with
``@register("task")``; the table then only says which module to import. A view class provides
``open(model, live=False) -> view``; the view then answers the contract of
``fieldfit.viewer.views.base.View``.
"""

import importlib

from fieldfit.errors import InputError

VIEWS = {
    "image": "fieldfit.viewer.views.image:ImageView",
    "sdf": "fieldfit.viewer.views.mesh:MeshView",
    "radiance": "fieldfit.viewer.views.radiance:RadianceView",
}

_registered: dict[str, type] = {}


def register(task: str):
    """Class decorator: ``@register("sdf")`` makes the class the view of that task's runs."""

    def deco(cls):
        _registered[task] = cls
        return cls

    return deco


def resolve(task: str) -> type:
    """The view class for ``task``; imports its module on first use."""
    if task in _registered:
        return _registered[task]
    if task not in VIEWS:
        raise KeyError(task)
    module, _, name = VIEWS[task].partition(":")
    mod = importlib.import_module(module)
    return _registered.get(task) or getattr(mod, name)


def load_model(path, device="cpu", live: bool = False):
    """The run at ``path`` as a Model: trained (the checkpoint's weights), or untrained for a live view."""
    import fieldfit

    return fieldfit.load(path, device, trained=not live)


def view_of(model, live: bool = False):
    """The view of a loaded run (a ``fieldfit.model.Model``). InputError when no view knows its task."""
    try:
        cls = resolve(model.task)
    except KeyError:
        known = ", ".join(sorted(set(VIEWS) | set(_registered)))
        raise InputError(model.run.path, f"the viewer cannot draw {model.method}/{model.task} runs",
                         f"it draws {known} runs") from None
    return cls.open(model, live=live)


def open_view(run, device="cpu", live: bool = False):
    """The view of the run folder ``run`` (a path or a ``fieldfit.runs.Run``). ``live``: untrained weights
    that a fit still training sends through ``view.sync``. InputError when the run is not one the viewer
    draws (checked from config.json before anything is loaded)."""
    from fieldfit.api import open_run

    path = getattr(run, "path", run)
    cfg = open_run(path).config()
    task = cfg.get("task", "?")
    if task not in VIEWS and task not in _registered:
        known = ", ".join(sorted(set(VIEWS) | set(_registered)))
        raise InputError(path, f"the viewer cannot draw {cfg.get('method', '?')}/{task} runs",
                         f"it draws {known} runs")
    return view_of(load_model(path, device, live), live)


__all__ = ["VIEWS", "load_model", "open_view", "register", "resolve", "view_of"]
