"""Host-side cost of each fieldfit.cuda op's GPU code path, measured on any machine (no GPU needed).

A GPU op at a training step's size is often bound by the host: the H100/H200 kernels_bench runs time dense_grid
2D forward+backward at 0.27-0.66 ms of wall clock against 0.03 ms of GPU time. This runs each public op with
FIELDFIT_KERNELS=triton and every Triton launch replaced by a no-op, so what is timed is the Python of the op
(checks, dispatch, autograd Function, allocations, launch arguments) and the torch calls it makes, per call,
forward alone and forward+backward, at 64 points. Two rows to compare with:
  - floor: an autograd Function that allocates its output and its gradient and does nothing else (what any
    custom op costs through torch's autograd);
  - reference: the op's pure-torch reference at the same size (on CPU its arithmetic is small there; on a GPU
    each of its aten ops is a launch, so this is not its GPU cost).
On a GPU add Triton's launcher (argument binding, cache lookup, cuLaunchKernel) per launch; ``launches`` counts them.
A CPU measure of host cost, not a GPU timing.

    python bench/host_overhead.py [--reps 2000] [--out PATH]   -> bench/results/host_overhead_<machine>.json
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: kernels become interpreter objects (stubbed)
os.environ["FIELDFIT_KERNELS"] = "triton"

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

from _common import write

MODULES = ("_grid_triton", "_triplane_triton", "_rbf_triton", "_composite_triton", "_ray_setup_triton",
           "_terminate_triton")


class _Launch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` counts the launch and does nothing."""

    def __init__(self, name, counts):
        self.name, self.counts = name, counts

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.counts[self.name] = self.counts.get(self.name, 0) + 1
        return launch


def stub_launches(counts: dict) -> None:
    """Replace every Triton kernel of the op modules by a counting no-op."""
    for name in MODULES:
        mod = importlib.import_module(f"fieldfit.cuda.{name}")
        for attr in dir(mod):
            if type(getattr(mod, attr)).__name__ in ("JITFunction", "InterpretedFunction"):
                setattr(mod, attr, _Launch(attr, counts))


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        ctx.save_for_backward(x, g)
        return torch.empty((x.shape[0], g.shape[0]), dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, g = ctx.saved_tensors
        return None, torch.zeros_like(g)


def cases(n: int = 64) -> list:
    """(name, kernel-path function, reference, inputs, indices of the inputs that need a gradient)."""
    from fieldfit import cuda as K
    from fieldfit.cuda import _torch_ref as R
    from fieldfit.cuda.triplane import pack

    g = torch.Generator().manual_seed(0)
    x2, x3 = torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 3, generator=g) * 2 - 1
    dense2 = torch.randn(8, 32, 32, generator=g)
    dense3 = torch.randn(16, 16, 16, 8, generator=g).movedim(-1, 0)  # channels-last, as a GPU trains it
    table = torch.randn(16, 1 << 10, 2, generator=g) * 1e-2
    res = [16 + 4 * i for i in range(16)]
    planes = [torch.randn(4, r, r, generator=g) for r in (16, 24, 32, 48) for _ in range(3)]  # small: CPU fills
    pack(planes, channels_last=True)  # one buffer, as TriPlane keeps its planes
    xr, c, lp = torch.randn(n, 32, generator=g), torch.randn(64, 32, generator=g), torch.zeros(64, 32)
    ri = torch.sort(torch.randint(0, 8, (n,), generator=g))[0]
    sig, ts = torch.rand(n, generator=g), torch.rand(n, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    o8, d8 = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    tau, before = torch.rand(n, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    keep = torch.zeros(n, dtype=torch.bool)
    idx = torch.arange(n)
    return [
        ("dense_grid 2D F=8", K.dense_grid, R.dense_grid_ref, [x2, dense2], [1]),
        ("dense_grid 3D F=8 channels-last", K.dense_grid, R.dense_grid_ref, [x3, dense3], [1]),
        ("hash_grid L=16 F=2", lambda x, t: K.hash_grid(x, t, res), lambda x, t: R.hash_grid_ref(x, t, res),
         [x3, table], [1]),
        ("triplane_grid 12 planes F=4 channels-last", lambda x, *p: K.triplane_grid(x, p),
         lambda x, *p: R.triplane_ref(x, p, []), [x3, *planes], list(range(1, 13))),
        ("rbf_layer D=32 K=64", K.rbf_layer, R.rbf_layer_ref, [xr, c, lp], [0, 1, 2]),
        ("composite_packed", lambda s, a, b: K.composite_packed(s, a, b, ri, 8),
         lambda s, a, b: R.composite_packed_ref(s, a, b, ri, 8), [sig, ts, ts + 0.1], [0]),
        ("sh_bases degree 3", lambda d: K.sh_bases(d, 3), lambda d: R.sh_bases_ref(d, 3), [dirs], []),
        ("sample_positions", lambda a, b: K.sample_positions(a, b, ri, ts, ts + 0.1),
         lambda a, b: R.sample_positions_ref(a, b, ri, ts, ts + 0.1), [o8, d8], []),
        ("terminate_round", lambda t: K.terminate_round(t, ri, idx, before, keep, 1e-4, 1e-4),
         lambda t: R.terminate_round_ref(t, ri, idx, before, keep, 1e-4, 1e-4), [tau], []),
    ]


def _runner(fn, inputs, grad_idx, backward: bool):
    leaves = [t.detach().requires_grad_(i in grad_idx) if t.is_floating_point() else t for i, t in enumerate(inputs)]

    def fwd():
        with torch.no_grad():
            fn(*leaves)

    def fwd_bwd():
        out = fn(*leaves)
        outs = out if isinstance(out, tuple) else (out,)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    return fwd_bwd if backward else fwd


def time_us(run, reps: int, rounds: int = 5) -> float:
    """Median over ``rounds`` of the mean microseconds per call of ``reps`` calls (after a warm-up)."""
    for _ in range(max(10, reps // 10)):
        run()
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            run()
        per.append((time.perf_counter() - t) / reps * 1e6)
    return statistics.median(per)


def measure(reps: int, names=None) -> list:
    counts: dict = {}
    stub_launches(counts)
    rows = []
    floor_in = [torch.rand(64, 2), torch.randn(8, 32, 32)]
    floor = {p: time_us(_runner(_Floor.apply, floor_in, [1], p == "fwd+bwd"), reps) for p in ("fwd", "fwd+bwd")}
    rows.append(dict(op="floor: autograd Function, allocations only", **{f"{p}_us": v for p, v in floor.items()}))
    for name, fn, ref, inputs, grad_idx in cases():
        if names and name not in names:
            continue
        row = dict(op=name)
        for p in ("fwd", "fwd+bwd") if grad_idx else ("fwd",):
            counts.clear()
            _runner(fn, inputs, grad_idx, p == "fwd+bwd")()
            row[f"{p}_launches"] = sum(counts.values())
            row[f"{p}_us"] = time_us(_runner(fn, inputs, grad_idx, p == "fwd+bwd"), reps)
            row[f"{p}_reference_us"] = time_us(_runner(ref, inputs, grad_idx, p == "fwd+bwd"), reps)
        rows.append(row)
        print(_fmt(row), flush=True)
    print(_fmt(rows[0]), flush=True)
    return rows


def _fmt(row) -> str:
    parts = [f"{row['op']:<44}"]
    for p in ("fwd", "fwd+bwd"):
        if f"{p}_us" in row:
            s = f"{p} {row[f'{p}_us']:7.1f} us"
            if f"{p}_reference_us" in row:
                s += f" ({row[f'{p}_launches']} launches; reference {row[f'{p}_reference_us']:7.1f} us)"
            parts.append(s)
    return "  ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000, help="calls per timing round (5 rounds, median)")
    ap.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = [s.strip() for s in a.ops.split(",") if s.strip()] or None
    rows = measure(a.reps, names)
    note = ("host microseconds per call of each op's GPU code path with its Triton launches stubbed out, on this "
            "machine's CPU, 64 points; the floor is an autograd Function that only allocates")
    write("host_overhead", dict(note=note, reps=a.reps, rows=rows), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
