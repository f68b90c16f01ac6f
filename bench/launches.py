"""Host-side cost of a radiance frame and a training step on a GPU, counted on any machine (no GPU needed).

Runs fieldfit's GPU code path on the CPU (FIELDFIT_KERNELS=triton, TRITON_INTERPRET=1; the tri-plane's CPU
shortcut and the CPU's termination rounds replaced by what a GPU runs) and counts, per frame (each marcher)
and per training step:
  - aten ops that launch a device kernel (views, reshapes and allocations excluded),
  - Triton kernel launches,
  - host syncs: ops that make a CUDA host wait for the device (nonzero, item, boolean-mask indexing, ...),
  - tensors made from host data (torch.tensor, as_tensor, from_numpy(...).to): on a GPU each is a copy
    from pageable memory, which syncs the device too.
A small GPU frame or step is bound by these (each launch costs the host microseconds, each sync drains the
queue), so this is a proxy for that cost, not a timing: compare counts before and after a change.

    python bench/launches.py RUN [--size 32] [--modes packed,rounds,fused] [--no-step] [--out PATH]
        -> bench/results/launches.json
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: kernels become interpreter objects
os.environ["FIELDFIT_KERNELS"] = "triton"

import argparse  # noqa: E402
import collections  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from _common import write  # noqa: E402

NO_LAUNCH = {"view", "_unsafe_view", "expand", "permute", "select", "slice", "t", "transpose", "unsqueeze", "squeeze",
             "as_strided", "detach", "alias", "empty", "empty_like", "empty_strided", "new_empty", "split", "unbind",
             "lift_fresh", "_reshape_alias", "reshape", "split_with_sizes", "chunk", "view_as", "unfold", "diagonal",
             "set_", "resize_", "real", "_local_scalar_dense"}
SYNCS = {"nonzero", "_local_scalar_dense", "masked_select", "_unique2", "unique_dim", "unique_consecutive",
         "is_nonzero", "equal", "item"}
BOOL_INDEXED = {"index", "index_put", "index_put_", "_index_put_impl_"}


class Counter(TorchDispatchMode):
    """Launching aten ops and host syncs, skipping what the Triton interpreter itself does around a kernel."""

    def __init__(self):
        super().__init__()
        self.ops, self.syncs, self.triton = collections.Counter(), collections.Counter(), collections.Counter()
        self.host_tensors = 0
        self.in_kernel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.in_kernel:
            name = func._schema.name.split("::")[1]
            if name == "lift_fresh":
                self.host_tensors += 1
            if name not in NO_LAUNCH:
                self.ops[name] += 1
            if name in BOOL_INDEXED:
                idx = args[1] if len(args) > 1 else kwargs.get("indices", ())
                if any(t is not None and t.dtype == torch.bool for t in idx):
                    self.syncs[f"{name}[bool mask]"] += 1
            elif name == "repeat_interleave" and kwargs.get("output_size") is None:
                self.syncs[name] += 1
            elif name in SYNCS:
                self.syncs[name] += 1
        return func(*args, **kwargs)

    def totals(self) -> dict:
        return {"aten_launches": sum(self.ops.values()), "triton_launches": sum(self.triton.values()),
                "host_syncs": sum(self.syncs.values()), "host_tensors": self.host_tensors, "syncs": dict(self.syncs),
                "triton": dict(self.triton), "top_ops": self.ops.most_common(8)}


def _gpu_code_path(counter: Counter) -> None:
    """Make the CPU take the GPU's branches, and count Triton launches (outside the interpreter's own ops)."""
    from triton.runtime import interpreter

    from fieldfit.fields import radiance_rbf
    from fieldfit.methods.radiance_render import RadianceModel

    run = interpreter.InterpretedFunction.run

    def counted_run(self, *a, grid, warmup, **k):
        if not warmup:
            counter.triton[self.fn.__name__] += 1
        counter.in_kernel += 1
        try:
            return run(self, *a, grid=grid, warmup=warmup, **k)
        finally:
            counter.in_kernel -= 1

    interpreter.InterpretedFunction.run = counted_run
    radiance_rbf.RadianceRBF.features = lambda self, x: self.encoding(self.normalise(x))  # no CPU tri-plane path
    terminate = RadianceModel._terminate
    RadianceModel._terminate = lambda self, o, d, cand, cfg, per_round=None, grow=None: terminate(
        self, o, d, cand, cfg, per_round or 32, grow or 2)  # the GPU's rounds (32, doubling)


def frames(model, march, scene, size: int, modes, counter: Counter) -> dict:
    from fieldfit.methods.radiance_data import eval_background, frame_rays
    from fieldfit.methods.radiance_render import render_chunked

    f0 = scene.frames[scene.split("test")[0]]
    k = size / f0.width
    f = replace(f0, width=size, height=size, fx=f0.fx * k, fy=f0.fy * k, cx=f0.cx * k, cy=f0.cy * k)
    o, d = (t.float().contiguous() for t in frame_rays(scene, f))
    bg = torch.as_tensor(eval_background(scene), dtype=torch.float32)
    out = {}
    for mode in modes:
        some = slice(None, None, max(1, len(o) // 31))  # ~31 rays spread over the frame: some reach the object
        with torch.no_grad():  # uncounted: first use fills per-device caches (entry tables, thresholds)
            render_chunked(model, o[some], d[some], bg, march, 1 << 20, mode)
        counter.__init__()
        t = time.perf_counter()
        with torch.no_grad(), counter:
            *_, evals = render_chunked(model, o, d, bg, march, 1 << 20, mode)
        out[mode] = dict(counter.totals(), field_evaluations=int(evals), cpu_seconds=time.perf_counter() - t)
        row = out[mode]
        print(f"frame {size}x{size} {mode:7s}: {row['aten_launches']} aten + {row['triton_launches']} Triton launches, "
              f"{row['host_syncs']} host syncs, {row['host_tensors']} tensors from host data", flush=True)
    return out


def step(run, model, march, cfg, counter: Counter, samples: int = 4096) -> dict:
    """A training step of the run's model as a GPU fit makes it (its batch and termination settings): the second,
    as every step after it."""
    import numpy as np

    from fieldfit.methods import rbf_radiance as rr
    from fieldfit.methods.common import make_adam
    from fieldfit.methods.radiance_data import PixelStore

    scene = rr._scene_of(cfg)
    extra = rr.scene_defaults(scene, rr.device_defaults({**rr.DEFAULTS, **cfg.get("extra", {})},
                                                        torch.device("cuda"), scene))
    extra.update(grid_full=[10**9], grid_every=10**9, target_samples=samples)  # no grid refresh in this step
    opt = make_adam(rr._param_groups(model, extra))
    stepper = rr.Stepper(model, opt, PixelStore(scene, scene.split("train")[:2]), march, extra, "cpu", 0)
    stepper.rng = np.random.default_rng(0)
    stepper(10**6, 0.5)  # uncounted: the first step also creates Adam's state (a zeros per parameter, twice)
    counter.__init__()
    with counter:
        stepper(10**6, 0.5)
    out = counter.totals()
    print(f"training step: {out['aten_launches']} aten + {out['triton_launches']} Triton launches, "
          f"{out['host_syncs']} host syncs, {out['host_tensors']} tensors from host data", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an rbf radiance run")
    ap.add_argument("--size", type=int, default=32, help="frame side in pixels (the interpreter is slow)")
    ap.add_argument("--modes", default="packed,rounds,fused")
    ap.add_argument("--no-step", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from fieldfit.methods.rbf_radiance import _scene_of, load
    from fieldfit.runs import Run

    counter = Counter()
    _gpu_code_path(counter)
    model, march, cfg = load(Run.open(a.run), "cpu")
    modes = [m for m in a.modes.split(",") if m and (m != "fused" or model.fusable())]
    result = {"run": str(a.run), "size": a.size, "grid": type(model.field.encoding).__name__,
              "note": "GPU code path run on the CPU (interpreter); counts, not timings",
              "frames": frames(model, march, _scene_of(cfg), a.size, modes, counter)}
    if not a.no_step:
        result["step"] = step(Run.open(a.run), model, march, cfg, counter)
    write("launches", result, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
