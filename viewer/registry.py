"""Which view draws a run: "method/task" -> a view class, resolved lazily.

``VIEWS`` names each view by "module:Class" so that finding a run's view imports only that
view's module (and, through it, only that method). A view module registers its classes with
``@register("method/task")``; the table then only says which module to import. A view class
provides ``open(run, device, live=False) -> view``; the view then answers the contract of
``fieldfit.viewer.views.base.View``.
"""

import importlib

from fieldfit.errors import InputError

VIEWS = {
    "rbf/image": "fieldfit.viewer.views.image:ImageView",
    "rbf/sdf": "fieldfit.viewer.views.mesh:SDFView",
    "rbf/radiance": "fieldfit.viewer.views.radiance:RadianceView",
    "bsp/sdf": "fieldfit.viewer.views.mesh:BSPView",
    "pronerf/radiance": "fieldfit.viewer.views.pronerf:ProNeRFView",
    "dnmp/radiance": "fieldfit.viewer.views.dnmp:DNMPView",
}

_registered: dict[str, type] = {}


def register(key: str):
    """Class decorator: ``@register("rbf/sdf")`` makes the class the view of that (method, task)."""

    def deco(cls):
        _registered[key] = cls
        return cls

    return deco


def resolve(key: str) -> type:
    """The view class for "method/task"; imports its module on first use."""
    if key in _registered:
        return _registered[key]
    if key not in VIEWS:
        raise KeyError(key)
    module, _, name = VIEWS[key].partition(":")
    mod = importlib.import_module(module)
    return _registered.get(key) or getattr(mod, name)


def view_key(config: dict) -> str:
    return f"{config.get('method', '?')}/{config.get('task', '?')}"


def open_view(run, device="cpu", live: bool = False):
    """The view of ``run`` (a fieldfit.runs.Run). InputError when no view knows the run."""
    key = view_key(run.config())
    try:
        cls = resolve(key)
    except KeyError:
        known = ", ".join(sorted(set(VIEWS) | set(_registered)))
        raise InputError(run.path, f"the viewer cannot draw {key} runs", f"it draws: {known}") from None
    return cls.open(run, device, live=live)
