"""bench/kernels_bench.py's GPU branch, run on CPU: every case's kernel through the Triton interpreter.

On a GPU the bench times each kernel against its reference and records their largest difference;
here the same code path runs at 64 points (8 rays for the traversal) with stand-in timers, so a case
that cannot run (or a kernel that disagrees with its reference) shows in CI, not in the few minutes of
a lent GPU.
Every case of ``CASES`` runs, on a small problem (``make_cases`` with small grids, a two-level hash
grid with a dense and a hashed level, a two-level tri-plane, short marches: the interpreter's time
grows with levels and steps, not with what they cover). The fused frame case is left out (about
15 s per case in the interpreter even on a tiny problem; tests/cuda/test_kernels_fused.py covers
that kernel).
"""

import sys

import pytest

from conftest import REPO, interpreter_enabled

BENCH = REPO / "bench"
SMALL = dict(dense_res=(16, 32), hash_shape=(2, 12), triplane_shape=(2, 32, 16), march=(16, 32))


@pytest.fixture
def kernels_bench(monkeypatch):
    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not 1")
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    monkeypatch.syspath_prepend(str(BENCH))
    import kernels_bench  # noqa: PLC0415 - bench/ is on sys.path only inside this fixture

    # the timer runs the case once (forward, or forward and backward); the profiler's stand-in runs nothing
    monkeypatch.setattr(kernels_bench, "_time_cuda", lambda run, grads: (run(), 1.0)[1])
    monkeypatch.setattr(kernels_bench, "_busy_cuda", lambda run, grads: (0.5, [["k", 500.0]]))
    yield kernels_bench
    sys.modules.pop("kernels_bench", None)


@pytest.mark.slow
def test_every_case_runs_on_the_gpu_branch(kernels_bench):
    small = kernels_bench.make_cases(**SMALL)
    cases = kernels_bench.CASES
    assert list(small) == list(cases)
    names = []
    for key in cases:
        # the timed cases are make_cases' at its default sizes: the small ones are the same cases
        assert [c["name"] for c in kernels_bench.make_cases()[key]] == [c["name"] for c in cases[key]], key
        assert len(small[key]) == len(cases[key]), key
        if key == "fused":
            continue
        for case in small[key]:
            n = 8 if key == "traverse" else 64  # the traversal: one program per ray
            rows = kernels_bench.run_case(case, n, "cpu", True)
            assert rows, case["name"]
            assert all(r["kernel_ms"] == 1.0 for r in rows), case["name"]
            assert all(r["speedup"] == r["reference_ms"] for r in rows), case["name"]
            assert all(r["kernel_busy_ms"] == r["reference_busy_ms"] == 0.5 for r in rows), case["name"]
            kernels_bench._fmt(rows[0])  # the printed line
            err = rows[0]["fwd_max_abs_err"]
            if err is None:
                assert "differ" in rows[0]["note"], case["name"]
            else:
                assert err < 1e-5, f"{case['name']}: kernel and reference differ by {err}"
            names.append(case["name"])
    assert any("GEMM backward" in n for n in names)
    assert any("tensor cores" in n for n in names)
    assert any("one point per lane" in n for n in names)
    assert any("features] tiles" in n for n in names)
    assert any("runs of equal corners merged" in n for n in names)
    assert any("along rays" in n for n in names)
