"""bench/kernels_bench.py's GPU branch, run on CPU: every case's kernel through the Triton interpreter.

On a GPU the bench times each kernel against its reference and records their largest difference;
here the same code path runs at 64 points with a stand-in timer, so a case that cannot run (or a
kernel that disagrees with its reference) shows in CI, not in the few minutes of a lent GPU.
The fused frame case is left out (three minutes in the interpreter; tests/test_kernels_fused.py
covers that kernel).
"""

import sys
from pathlib import Path

import pytest
from _kernel_utils import interpreter_enabled

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def kernels_bench(monkeypatch):
    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not 1")
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    monkeypatch.syspath_prepend(str(BENCH))
    import kernels_bench  # noqa: PLC0415

    monkeypatch.setattr(kernels_bench, "_time_cuda", lambda run, grads: (run(), 1.0)[1])
    monkeypatch.setattr(kernels_bench, "_busy_cuda", lambda run, grads: (run(), 0.5, [["k", 500.0]])[1:])
    yield kernels_bench
    sys.modules.pop("kernels_bench", None)


def test_every_case_runs_on_the_gpu_branch(kernels_bench):
    names = []
    for key, cases in kernels_bench.CASES.items():
        if key == "fused":
            continue
        for case in cases:
            rows = kernels_bench.run_case(case, 64, "cpu", True)
            assert rows and all(r["kernel_ms"] == 1.0 and r["speedup"] == r["reference_ms"] for r in rows), case["name"]
            assert all(r["kernel_busy_ms"] == r["reference_busy_ms"] == 0.5 for r in rows), case["name"]
            kernels_bench._fmt(rows[0])  # the printed line
            err = rows[0]["fwd_max_abs_err"]
            if err is None:
                assert "differ" in rows[0]["note"], case["name"]
            else:
                assert err < 1e-5, f"{case['name']}: kernel and reference differ by {err}"
            names.append(case["name"])
    assert any("GEMM backward" in n for n in names) and any("tensor cores" in n for n in names)
    assert any("one point per lane" in n for n in names) and any("features] tiles" in n for n in names)
