"""The viewer finds a run's view through the registry, importing only that view (lazily)."""

import json
import subprocess
import sys

import pytest

from fieldfit.errors import InputError
from fieldfit.runs import Run
from fieldfit.viewer import registry


def test_importing_the_registry_imports_no_view_and_no_method():
    code = ("import sys, fieldfit.viewer.registry as r; "
            "print(sorted(m for m in sys.modules if m.startswith(('fieldfit.viewer.views', 'fieldfit.methods'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_resolve_imports_only_the_named_view():
    code = ("import sys, fieldfit.viewer.registry as r; cls = r.resolve('rbf/image'); "
            "print(cls.__name__, sorted(m for m in sys.modules if m.startswith('fieldfit.viewer.views.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "ImageView"
    assert "mesh" not in out and "radiance" not in out


@pytest.mark.parametrize("key", sorted(registry.VIEWS))
def test_every_entry_resolves_to_a_view(key):
    cls = registry.resolve(key)
    assert cls.modes and hasattr(cls, "open") and hasattr(cls, "render")


def test_register_decorator_and_unknown_runs(tmp_path):
    @registry.register("test/toy")
    class Toy:
        modes = ("flat",)

        @classmethod
        def open(cls, run, device="cpu", live=False):
            return cls()

    (tmp_path / "config.json").write_text(json.dumps({"method": "test", "task": "toy"}))
    assert isinstance(registry.open_view(Run.open(tmp_path)), Toy)
    (tmp_path / "config.json").write_text(json.dumps({"method": "nerf", "task": "radiance"}))
    with pytest.raises(InputError, match="cannot draw nerf/radiance runs.*rbf/image"):
        registry.open_view(Run.open(tmp_path))
    registry._registered.pop("test/toy")
