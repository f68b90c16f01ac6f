"""LPIPS in the test-view metrics: measured where the ``lpips`` package and its weights load, otherwise
``test.lpips`` is null beside ``test.lpips_unavailable`` (the reason), and the log says it once."""

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fieldfit.render import metrics
from fieldfit.runs import Run
from fieldfit.tasks.views import evaluate_views


def fake_lpips(value=None, error=None):
    """A stand-in for the ``lpips`` package: LPIPS(...) gives ``value`` for any pair, or raises ``error`` (as
    the real one does when the backbone's weights cannot be fetched)."""

    class LPIPS(torch.nn.Module):
        def __init__(self, net="alex", verbose=True):
            super().__init__()
            if error is not None:
                raise error
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, a, b):
            assert a.shape == b.shape
            assert a.shape[:2] == (1, 3)
            assert float(a.min()) >= -1
            assert float(a.max()) <= 1
            return torch.full((1, 1, 1, 1), value)

    return types.SimpleNamespace(LPIPS=LPIPS)


@pytest.fixture
def fresh(monkeypatch):
    """An empty LPIPS cache (it keeps a failure for the process)."""
    monkeypatch.setattr(metrics, "_LPIPS_CACHE", {})


def two_views():
    """A scene stub with two 6x5 test views and a renderer that is off by 0.1 everywhere."""
    rng = np.random.default_rng(0)
    images = [rng.random((5, 6, 3)).astype(np.float32) * 0.8 for _ in range(2)]
    cam = SimpleNamespace(width=6, height=5, pixels=30)
    scene = SimpleNamespace(split=lambda name: [0, 1] if name == "test" else [], image=lambda i: images[i],
                            frames=[SimpleNamespace(camera=cam)] * 2)
    views = iter(images)
    return scene, lambda camera: (next(views) + 0.1, 30)


def test_without_the_package_the_reason_is_reported_and_logged_once(tmp_path, fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    assert metrics.lpips_fn() is None
    fn, why = metrics.load_lpips()
    assert fn is None
    assert why.startswith("lpips package not installed")
    run = Run.create(tmp_path / "run")
    scene, render = two_views()
    test = evaluate_views(render, scene, run)["test"]
    assert test["lpips"] is None
    assert test["lpips_unavailable"] == why
    assert test["psnr"] == pytest.approx(20.0, abs=1e-3)  # the other metrics are measured as ever
    assert (run.path / "log").read_text().count("lpips not measured: lpips package not installed") == 1


def test_weights_that_cannot_be_loaded_are_the_reason(fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", fake_lpips(error=OSError("urlopen error: no network")))
    fn, why = metrics.load_lpips()
    assert fn is None
    assert why == "weights could not be loaded: OSError: urlopen error: no network"
    assert metrics.load_lpips() == (None, why)  # tried once: the failure is kept


def test_lpips_where_it_loads_is_reported(tmp_path, fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", fake_lpips(value=0.25))
    run = Run.create(tmp_path / "run")
    scene, render = two_views()
    test = evaluate_views(render, scene, run)["test"]
    assert test["lpips"] == pytest.approx(0.25)
    assert "lpips_unavailable" not in test
    assert "lpips" not in (run.path / "log").read_text()
