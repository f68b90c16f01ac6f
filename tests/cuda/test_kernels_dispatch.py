"""fieldfit.cuda plumbing: backend choice, import safety, __all__, and the CUDA-skip safety net."""

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import fieldfit.cuda
from conftest import requires_cuda
from fieldfit.cuda import _dispatch, backend_for, rbf_layer
from fieldfit.cuda._torch_ref import rbf_layer_ref
from fieldfit.cuda.rbf import gaussian_torch

REPO = Path(__file__).resolve().parents[1]
FAKE_CUDA = types.SimpleNamespace(device=torch.device("cuda"))  # a "tensor" that reports a CUDA device


def test_default_backend_cpu_is_reference(monkeypatch):
    monkeypatch.delenv("FIELDFIT_KERNELS", raising=False)
    assert backend_for(torch.zeros(1)) == "torch"
    x, c, lp = torch.randn(7, 3), torch.randn(4, 3), torch.zeros(4, 3)
    assert torch.equal(rbf_layer(x, c, lp, "inverse_quadratic"), rbf_layer_ref(x, c, lp, "inverse_quadratic"))
    assert torch.equal(rbf_layer(x, c, lp), gaussian_torch(x, c, lp))  # the reference in fewer passes
    torch.testing.assert_close(rbf_layer(x, c, lp), rbf_layer_ref(x, c, lp))


@pytest.mark.parametrize("value", ["torch", "TORCH", " torch "])
def test_forced_torch(monkeypatch, value):
    monkeypatch.setenv("FIELDFIT_KERNELS", value)
    assert backend_for(torch.zeros(1)) == "torch"
    assert backend_for(FAKE_CUDA) == "torch"


def test_forced_triton_on_cpu_needs_interpreter(monkeypatch):
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend_for(torch.zeros(1)) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        backend_for(torch.zeros(1))


def test_unknown_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("FIELDFIT_KERNELS", "cuda")
    with pytest.raises(ValueError, match="FIELDFIT_KERNELS"):
        backend_for(torch.zeros(1))
    with pytest.raises(ValueError, match="FIELDFIT_KERNELS"):
        rbf_layer(torch.zeros(2, 3), torch.zeros(1, 3), torch.zeros(1, 3))


def test_missing_triton_falls_back_with_one_log_line(monkeypatch, caplog):
    monkeypatch.delenv("FIELDFIT_KERNELS", raising=False)
    monkeypatch.setattr(_dispatch, "_TRITON_STATE", None)
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` raise ImportError
    with caplog.at_level(logging.INFO, logger="fieldfit"):
        assert backend_for(FAKE_CUDA) == "torch"
        assert backend_for(FAKE_CUDA) == "torch"  # cached: no second attempt, no second line
    assert len([r for r in caplog.records if "triton unavailable" in r.getMessage()]) == 1
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")  # forcing it names the variable instead
    with pytest.raises(RuntimeError, match="FIELDFIT_KERNELS"):
        backend_for(FAKE_CUDA)


def _run(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_is_lazy(tmp_path):
    # importing the package (and calling an op on CPU) imports no triton and compiles nothing
    proc = _run("import sys, torch, fieldfit.cuda as k; k.rbf_layer(torch.zeros(2, 3), torch.zeros(1, 3), "
                "torch.zeros(1, 3)); assert 'triton' not in sys.modules, 'triton imported'", tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_repo_root_cuda_folder_does_not_break_torch():
    # `python -c`/`python -m pytest` in the repo root put the root on sys.path, where cuda/ shadows
    # NVIDIA's `cuda` package that `import torch` probes; the folder must refuse that import cleanly
    proc = _run("import torch, torch.cuda; print('ok')", REPO)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout, proc.stderr


def test_all_names_resolve():
    for name in fieldfit.cuda.__all__:
        assert getattr(fieldfit.cuda, name) is not None, name
    namespace = {}
    exec("from fieldfit.cuda import *", namespace)  # noqa: S102 - star import needs exec; the string is a constant
    assert set(fieldfit.cuda.__all__) <= set(namespace)


def test_requires_cuda_marker_is_a_called_check():
    (mark,) = requires_cuda.mark.args
    assert isinstance(mark, bool)
    assert mark == (not torch.cuda.is_available())


@requires_cuda
def test_requires_cuda_really_skips():
    # meta-test: on a machine without CUDA this body must never run (it would fail)
    assert torch.cuda.is_available()


def test_int_arguments_are_checked_by_name():
    from fieldfit.cuda.composite import composite_packed
    from fieldfit.cuda.raster import raster_faces

    tri = torch.zeros(1, 3, 3)
    with pytest.raises(ValueError, match="raster_faces: argument 'width' must be >= 1, got 0"):
        raster_faces(tri, 0, 4, 1)
    with pytest.raises(TypeError, match="raster_faces: argument 'k' must be an int"):
        raster_faces(tri, 4, 4, 1.5)
    s = torch.zeros(2)
    with pytest.raises(ValueError, match="composite_packed: argument 'n_rays' must be >= 0, got -1"):
        composite_packed(s, s, s, torch.zeros(2, dtype=torch.int64), -1)


def test_host_int_helpers_match_triton():
    # cdiv / next_pow2 replace triton's constexpr functions in launch code (cheaper per call): same values
    triton = pytest.importorskip("triton")
    from fieldfit.cuda._dispatch import cdiv, next_pow2

    assert all(next_pow2(n) == triton.next_power_of_2(n) for n in [*range(1, 130), 1000, 1024, 1025, 2**20 + 1])
    assert all(cdiv(a, b) == triton.cdiv(a, b) for a in range(0, 300) for b in (1, 2, 3, 7, 32, 128))
