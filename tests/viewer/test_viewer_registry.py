"""The viewer finds a run's view by its task through the registry, importing only that view (lazily), and opens
runs through the public API (``fieldfit.load``)."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fieldfit.errors import InputError
from fieldfit.runs import FORMAT, Run
from fieldfit.viewer import registry


def test_importing_the_registry_imports_no_view_and_no_method():
    code = ("import sys, fieldfit.viewer.registry as r; "
            "print(sorted(m for m in sys.modules if m.startswith(('fieldfit.viewer.views', 'fieldfit.methods'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_resolve_imports_only_the_named_view_and_no_method():
    code = ("import sys, fieldfit.viewer.registry as r; cls = r.resolve('image'); "
            "print(cls.__name__, sorted(m for m in sys.modules if m.startswith(('fieldfit.viewer.views.', "
            "'fieldfit.methods'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "ImageView"
    assert "mesh" not in out
    assert "radiance" not in out
    assert "methods" not in out


def test_one_view_per_task():
    assert set(registry.VIEWS) == {"image", "sdf", "radiance"}


@pytest.mark.parametrize("task", sorted(registry.VIEWS))
def test_every_entry_resolves_to_a_view(task):
    cls = registry.resolve(task)
    assert registry.resolve(task) is cls
    for name in ("open", "render", "home", "presets", "sync", "modes"):
        assert hasattr(cls, name), name


def test_register_decorator_and_unknown_runs(tmp_path, monkeypatch):
    @registry.register("toy")
    class Toy:
        modes = ("flat",)

        def __init__(self, model, live):
            self.model, self.live = model, live

        @classmethod
        def open(cls, model, live=False):
            return cls(model, live)

    loaded = []

    def fake_load(path, device="cpu", live=False):  # fieldfit.load(path, device, trained=not live)
        loaded.append((str(path), device, live))
        return SimpleNamespace(task="toy", method="test", run=Run.open(path))

    monkeypatch.setattr(registry, "load_model", fake_load)
    try:
        (tmp_path / "config.json").write_text(json.dumps({"format": FORMAT, "method": "test", "task": "toy"}))
        view = registry.open_view(Run.open(tmp_path), "cpu", live=True)  # a Run, or its path
        assert isinstance(view, Toy)
        assert view.live
        assert loaded == [(str(tmp_path), "cpu", True)]
        assert isinstance(registry.open_view(tmp_path), Toy)
        assert loaded[-1][2] is False
        (tmp_path / "config.json").write_text(json.dumps({"format": FORMAT, "method": "nerf", "task": "volume"}))
        with pytest.raises(InputError, match="cannot draw nerf/volume runs.*image, radiance, sdf"):
            registry.open_view(tmp_path)
        assert len(loaded) == 2  # refused from config.json, before loading anything
        with pytest.raises(InputError, match="cannot draw nerf/volume runs"):
            registry.view_of(SimpleNamespace(task="volume", method="nerf", run=Run.open(tmp_path)))
        (tmp_path / "config.json").write_text(json.dumps({"method": "rbf", "task": "image"}))
        with pytest.raises(InputError, match="older fieldfit"):  # runs of the old format: fieldfit.api.open_run's error
            registry.open_view(tmp_path)
    finally:
        registry._registered.pop("toy")
