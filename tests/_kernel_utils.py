"""Helpers of the kernel tests (tests/test_kernels_*.py): devices, backend switch, comparisons.

Each kernel test runs on two "devices": ``cpu-interpret`` (CPU tensors through Triton's
interpreter) and ``cuda`` (the compiled kernels; skipped without a GPU). The reference is always
evaluated in float64 as truth.

Triton reads TRITON_INTERPRET when a kernel is defined (fieldfit.cuda defines its kernels on first
use), so this module, imported by every kernel test module at collection time, defaults it to 1
before any test runs. An explicit value wins: bench/gpu_check.sh runs ``TRITON_INTERPRET= pytest``
to compile the real kernels, and then the cpu-interpret cases skip.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from fieldfit.cuda._dispatch import interpreter_enabled  # noqa: E402


def _old_interpreter_shim():
    """Triton <= 3.6's interpreter passes int kernel arguments as 1-element arrays and takes
    ``int(array)`` where a loop bound needs an index (``range(0, F, BF)``); NumPy >= 2.4 refuses
    that, so every kernel with a runtime loop bound failed there (torch 2.11's CUDA wheels pin
    triton 3.6). Newer Triton squeezes first; this does the same on the old one, nothing else."""
    try:
        import inspect  # noqa: PLC0415

        from triton.runtime import interpreter  # noqa: PLC0415
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

# skipif on the CALLED is_available() (nerfacc's uncalled `torch.cuda.is_available` never skips);
# tests/test_kernels_dispatch.py has the meta-test that this really skips on CPU.
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICES = [
    pytest.param("cpu", id="cpu-interpret",
                 marks=pytest.mark.skipif(not interpreter_enabled(), reason="TRITON_INTERPRET is not 1")),
    pytest.param("cuda", id="cuda", marks=[requires_cuda, pytest.mark.requires_cuda]),
]
DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


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
