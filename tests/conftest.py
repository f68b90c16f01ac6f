"""Shared test helpers, in one place: the shared data folder, a CUDA marker that really skips, the CLI runner, and
the kernel tests' devices, dtypes and comparisons.

Kernel tests run each kernel on two "devices": ``cpu-interpret`` (CPU tensors through Triton's interpreter) and
``cuda`` (the compiled kernels; skipped without a GPU); the reference is evaluated in float64 as truth. Triton
reads TRITON_INTERPRET when a kernel is defined (fieldfit.cuda defines its kernels on first use), so this module
defaults it to 1 before any test runs. An explicit value wins: bench/gpu_check.sh runs ``TRITON_INTERPRET=
pytest`` to compile the real kernels, and then the cpu-interpret cases skip.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one process per core (pytest -n): one thread each, for them and the
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # fits they start; oversubscribed threads wait on each other

import subprocess  # TRITON_INTERPRET must be set first
import sys
from pathlib import Path

import pytest
import torch

from fieldfit.cuda._dispatch import interpreter_enabled

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# Modules whose fixtures fit for tens of seconds, slowest first: collected first, so that pytest -n 2 --dist
# loadscope hands them out before the short modules (longest-first scheduling; the last minute is not one module
# alone on one core while the other waits). Measured from --durations of the CI run.
FIRST = ("methods/test_dnmp_fit.py", "cli/test_matrix.py", "distributed/test_distributed.py",
         "cuda/test_kernels_fused.py", "cuda/test_kernels_compile.py", "methods/test_rbf_unbounded.py",
         "methods/test_dnmp_device.py", "viewer/test_web.py", "viewer/test_viewer_runs.py", "methods/test_blocks.py",
         "cli/test_cli.py", "reliability/test_kill.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = Path(str(item.fspath)).as_posix()
        return next((k for k, name in enumerate(FIRST) if path.endswith("tests/" + name)), len(FIRST))

    items.sort(key=rank)  # stable: the order within a module and among the rest is kept


# skipif on the CALLED is_available() (nerfacc's uncalled `torch.cuda.is_available` never skips);
# tests/cuda/test_kernels_dispatch.py has the meta-test that this really skips on CPU.
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def data_path(*parts) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests that read real data need ../shared/data beside the repo)")
    return p


def write_blocks_photos(root: Path, *, alpha: bool = True, sky=None, exposure=None) -> None:
    """The built-in blocks scene (downscale 2: 32x32) written as a nerfstudio folder of PNG photos, frames in the
    blocks order. ``alpha``: RGBA photos; else RGB on ``sky(dirs [N,3]) -> [N,3]`` (the colour at infinity).
    ``exposure(i) -> float`` scales photo i's colours."""
    import json

    import imageio.v3 as iio
    import numpy as np

    from fieldfit.scenes import load_scene
    from fieldfit.scenes.builtin import blocks_scene_dir

    src = load_scene(blocks_scene_dir(), downscale=2)
    (root / "images").mkdir(parents=True)
    frames = []
    for i, f in enumerate(src.frames):
        a = src.alpha(i)
        rgb = (src.image(i) - (1 - a)[..., None] * np.asarray(src.background)) / np.maximum(a, 1e-6)[..., None]
        rgb = np.clip(rgb * (exposure(i) if exposure else 1.0), 0, 1)
        if alpha:
            img = np.concatenate([rgb, a[..., None]], -1)
        else:
            img = a[..., None] * rgb + (1 - a[..., None]) * sky(f.camera.rays()[1].numpy()).reshape(rgb.shape)
        name = f"images/{i:03d}.png"
        iio.imwrite(root / name, (img * 255 + 0.5).astype(np.uint8))
        c = f.camera
        c2w = np.vstack([c.c2w, [0, 0, 0, 1]])
        frames.append({"file_path": name, "transform_matrix": c2w.tolist(), "fl_x": c.fx, "fl_y": c.fy,
                       "cx": c.cx, "cy": c.cy, "w": c.width, "h": c.height})
    (root / "transforms.json").write_text(json.dumps({"frames": frames}))


def fit_one_thread(tmp_path_factory, name: str, args) -> Path:
    """``fieldfit ARGS --out NEW`` in this process on one thread (module fixtures run before the function-scoped
    ``one_thread``); returns the run folder."""
    from fieldfit.cli import main

    out = tmp_path_factory.mktemp(name) / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(n)
    return out


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m fieldfit ARGS` in a subprocess; return CompletedProcess (text)."""
    env = dict(os.environ, FIELDFIT_NO_TCMALLOC="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fieldfit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_main(*args, cwd=None):
    """``fieldfit.cli.main(ARGS)`` in this process (no interpreter start-up: a second or two less than
    ``run_cli``), its output captured; returns a CompletedProcess (text) like ``run_cli``. An uncaught exception
    propagates, so a test sees any traceback a user would."""
    import contextlib
    import io

    from fieldfit.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["fieldfit", *map(str, args)], code, out.getvalue(), err.getvalue())


# -- kernel tests ---------------------------------------------------------------------------------
def _old_interpreter_shim():
    """Triton <= 3.6's interpreter passes int kernel arguments as 1-element arrays and takes
    ``int(array)`` where a loop bound needs an index (``range(0, F, BF)``); NumPy >= 2.4 refuses
    that, so every kernel with a runtime loop bound failed there (torch 2.11's CUDA wheels pin
    triton 3.6). Newer Triton squeezes first; this does the same on the old one, nothing else."""
    try:
        import inspect  # noqa: PLC0415 - only this shim uses it

        from triton.runtime import interpreter  # noqa: PLC0415 - triton is optional: without it, return below
    except Exception:  # noqa: BLE001 - no triton: the kernel tests skip or fail on their own
        return
    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    if patch_tensor is None or "int(self.handle.data))" not in inspect.getsource(patch_tensor):
        return

    def patched(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


if interpreter_enabled():
    _old_interpreter_shim()

DEVICES = [
    pytest.param("cpu", id="cpu-interpret",
                 marks=pytest.mark.skipif(not interpreter_enabled(), reason="TRITON_INTERPRET is not 1")),
    pytest.param("cuda", id="cuda", marks=[requires_cuda, pytest.mark.requires_cuda]),
]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small matmuls: no barrier stalls on a shared machine); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def triton_kernels(monkeypatch):
    """Force fieldfit.cuda onto the Triton kernels for the duration of a test."""
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")


def assert_close(actual, expected, *, rtol: float, atol_rel: float, name: str):
    """Elementwise |a - e| <= atol_rel * max|e| + rtol * |e| (atol scaled to the quantity's size)."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    expected = expected.to(actual.device, torch.float64)
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol_rel * scale + 1e-300,
                               msg=lambda m: f"{name}: {m}")


def vjp(fn, inputs, cotangents):
    """Outputs and input-grads of fn(*inputs) for the given output cotangents (None for unused inputs)."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = torch.autograd.grad(outs, inputs, cotangents, allow_unused=True)
    return [o.detach() for o in outs], list(grads)


def as64(tensors):
    return [t.double() if t.is_floating_point() else t for t in tensors]
