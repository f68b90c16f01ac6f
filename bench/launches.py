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
The run is loaded with ``fieldfit.load``; frames are drawn by ``fieldfit.render.march.render_chunked``, the step
is ``fieldfit.methods.rbf.radiance.Stepper``'s (the packed march, ``fieldfit.render.termination.terminate``).

    python bench/launches.py RUN [--size 32] [--modes packed,rounds,fused] [--no-step] [--out PATH]
        -> bench/results/launches.json
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: kernels become interpreter objects
os.environ["FIELDFIT_KERNELS"] = "triton"

import argparse
import collections
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from _common import write

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
    from fieldfit.render import march as marching

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
    terminate = marching.terminate  # render.termination.terminate, as the packed march calls it
    marching.terminate = lambda density_fn, o, d, cand, early_stop, alpha_thre=0.0, per_round=None, grow=None: \
        terminate(density_fn, o, d, cand, early_stop, alpha_thre, per_round or 32, grow or 2)  # the GPU's rounds


def frames(model, size: int, modes, counter: Counter) -> dict:
    """Each marcher's frame of the run's first test camera at size x size (``render.march.render_chunked``)."""
    from fieldfit.render.march import render_chunked
    from fieldfit.tasks.radiance import camera_rays

    c0 = model.scene.cameras("test")[0]
    k = size / c0.width
    cam = replace(c0, width=size, height=size, fx=c0.fx * k, fy=c0.fy * k, cx=c0.cx * k, cy=c0.cy * k)
    o, d = camera_rays(model.scene, cam)  # float32, contiguous
    bg = torch.as_tensor(model.background, dtype=torch.float32)
    field, grid, march = model.field, model.grid, model.march
    out = {}
    for mode in modes:
        some = slice(None, None, max(1, len(o) // 31))  # ~31 rays spread over the frame: some reach the object
        with torch.no_grad():  # uncounted: first use fills per-device caches (entry tables, thresholds)
            render_chunked(field, grid, o[some], d[some], bg, march, 1 << 20, mode)
        counter.__init__()
        t = time.perf_counter()
        with torch.no_grad(), counter:
            *_, evals = render_chunked(field, grid, o, d, bg, march, 1 << 20, mode)
        out[mode] = dict(counter.totals(), field_evaluations=int(evals), cpu_seconds=time.perf_counter() - t)
        row = out[mode]
        print(f"frame {size}x{size} {mode:7s}: {row['aten_launches']} aten + {row['triton_launches']} Triton launches, "
              f"{row['host_syncs']} host syncs, {row['host_tensors']} tensors from host data", flush=True)
    return out


def step(model, counter: Counter, samples: int = 4096) -> dict:
    """A training step of the run's model as a GPU fit makes it (its batch and termination settings): the second,
    as every step after it."""
    import numpy as np

    from fieldfit.methods.rbf.config import RadianceConfig
    from fieldfit.methods.rbf.radiance import RadianceModel, Stepper, param_groups
    from fieldfit.optim import make_adam
    from fieldfit.tasks.radiance import PixelStore

    scene = model.scene
    cfg = RadianceConfig.from_dict(model.config["config"]).with_device(torch.device("cuda"), scene)
    cfg = cfg.replace(grid_full=(10**9,), grid_every=10**9, target_samples=samples)  # no grid refresh in this step
    net = RadianceModel(model.field, model.grid)  # the run's field and grid, as the fit trains them
    opt = make_adam(param_groups(net, cfg))
    stepper = Stepper(net, opt, PixelStore(scene, scene.split("train")[:2]), model.march, cfg, "cpu", 0)
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
    import fieldfit
    from fieldfit.render.march import fusable

    counter = Counter()
    _gpu_code_path(counter)
    model = fieldfit.load(a.run, "cpu")
    modes = [m for m in a.modes.split(",") if m and (m != "fused" or fusable(model.field))]
    result = {"run": str(a.run), "size": a.size, "grid": type(model.field.encoding).__name__,
              "note": "GPU code path run on the CPU (interpreter); counts, not timings",
              "frames": frames(model, a.size, modes, counter)}
    if not a.no_step:
        result["step"] = step(model, counter)
    write("launches", result, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
