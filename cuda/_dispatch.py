"""Choose between the Triton kernels and the pure-torch references, per call.

Rules (``backend_for``):

- ``FIELDFIT_KERNELS`` unset, empty or ``auto``: CUDA tensors use the Triton kernels, everything
  else uses the torch path (the reference, or a faster torch form with the same results: the
  Gaussian RBF layer, the occupancy traversal). If Triton cannot be imported, CUDA falls back to
  the torch path too, with ONE log line on the ``fieldfit`` logger (the failed import is cached).
- ``FIELDFIT_KERNELS=torch``: always the torch path.
- ``FIELDFIT_KERNELS=triton``: always the kernels. On CPU tensors this needs
  ``TRITON_INTERPRET=1`` in the environment before the first kernel is used (Triton reads it when
  a kernel is defined); that is how the tests run the kernels on CPU. A forced backend that cannot
  run raises an error naming the variable instead of falling back silently.
- Any other value raises ``ValueError`` naming ``FIELDFIT_KERNELS``.

Nothing here imports Triton at module import; ``triton_available`` imports it on first use.
"""

import logging
import os

import torch

ENV_VAR = "FIELDFIT_KERNELS"
_MODES = ("auto", "torch", "triton")
_TRUE = ("1", "true", "yes", "on")

log = logging.getLogger("fieldfit")

# None: not tried yet; otherwise (ok, error message). Cached so a failing import is tried once.
_TRITON_STATE = None


def triton_available() -> bool:
    """Import triton once; cache success or failure (the failure is logged once)."""
    global _TRITON_STATE
    if _TRITON_STATE is None:
        try:
            import triton  # noqa: F401, PLC0415 - optional, imported lazily on purpose

            _TRITON_STATE = (True, "")
        except Exception as exc:  # noqa: BLE001 - any import failure means "no triton"
            _TRITON_STATE = (False, f"{type(exc).__name__}: {exc}")
            log.warning("fieldfit.cuda: triton unavailable (%s); using the torch reference ops", _TRITON_STATE[1])
    return _TRITON_STATE[0]


def kernel_mode() -> str:
    """The requested mode from FIELDFIT_KERNELS: 'auto', 'torch' or 'triton'."""
    raw = os.environ.get(ENV_VAR, "")
    value = raw.strip().lower() or "auto"
    if value not in _MODES:
        raise ValueError(f"{ENV_VAR}={raw!r} is not recognised; set it to 'torch', 'triton' or 'auto' (or unset it)")
    return value


def interpreter_enabled() -> bool:
    """True when TRITON_INTERPRET asks Triton to run kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def backend_for(tensor: torch.Tensor) -> str:
    """'triton' or 'torch' for an op whose main input is ``tensor`` (see the module docstring)."""
    return backend_for_device(tensor.device)


def backend_for_device(device) -> str:
    """'triton' or 'torch' for an op whose main input is on ``device`` (see the module docstring)."""
    mode = kernel_mode()
    if mode == "torch":
        return "torch"
    kind = torch.device(device).type
    on_cuda = kind == "cuda"
    if mode == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if not on_cuda and not interpreter_enabled():
        raise RuntimeError(
            f"{ENV_VAR}=triton with {kind} tensors needs TRITON_INTERPRET=1 "
            f"(set before the first kernel call); or set {ENV_VAR}=torch"
        )
    if not triton_available():
        raise RuntimeError(f"{ENV_VAR}=triton but triton cannot be imported ({_TRITON_STATE[1]}); "
                           f"install triton or set {ENV_VAR}=torch")
    return "triton"


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) of ints (``triton.cdiv`` is a constexpr function: about 2 us per host call with Triton 3.9)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1), as ``triton.next_power_of_2`` without its host-call cost."""
    return 1 << max(int(n) - 1, 0).bit_length()


def num_programs_hint(device: torch.device) -> int:
    """About how many programs fill the device (4 per SM on CUDA; a small number on CPU)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4


_CONSTANTS: dict = {}  # (values, dtype, device) -> the tensor on that device


def device_constant(values: tuple, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.tensor(values, dtype)`` on ``device``, made once and kept: a tensor made from host data per call
    is a copy and, on CUDA, a device sync. ``values``: a tuple (of tuples) of numbers; do not modify the result."""
    key = (values, dtype, str(device))
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=dtype).to(device)
    return t


def device_guard(device: torch.device):
    """Context that makes ``device`` current for a kernel launch (Triton launches on the current one)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    import contextlib  # noqa: PLC0415 - only the non-CUDA path needs it

    return contextlib.nullcontext()
