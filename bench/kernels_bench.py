"""Benchmark fieldfit.cuda: Triton kernel vs torch reference, forward and forward+backward.

On CUDA every op is timed both ways with ``triton.testing.do_bench`` (median, with warmup) at
2^18 points (2^20 samples for compositing, 2^18 rays for traversal, 2^16 rays for the fused frame
kernel), and the forward outputs of
the two are compared (max |kernel - reference| is recorded: a benchmark of a wrong kernel is
worthless), and torch.profiler sums the time the GPU spent in each side's kernels (``*_busy_ms``, with the
three longest kernels): far below the timed ms, a call is bound by host-side launch overhead, not by its
kernels. On CPU only the reference is timed (there is no compiled kernel; the interpreter is a
test tool), at 2^14 points unless --full, and the JSON says so.

Writes bench/results/kernels_<device>.json with the machine description. Run from anywhere:
    python bench/kernels_bench.py [--full] [--ops rbf,dense,hash,triplane,composite,traverse,fused,setup] [--out PATH]
"""

import argparse
import importlib
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from fieldfit import cuda as K
from fieldfit.cuda import _torch_ref as R

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- cases
# Each case: name, make(n, device) -> dict(inputs=[...], grad=[indices needing grad]),
# kernel(*inputs), reference(*inputs); outputs are a tensor or a tuple of tensors.


def _rbf_case(d, k, gemm_backward=False, max_registers=None, max_units=64):
    def make(n, dev):
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(n, d, generator=g).to(dev)
        c = torch.randn(k, d, generator=g).to(dev)
        lp = (torch.randn(k, d, generator=g) * 0.3 - 1).to(dev)
        return [x, c, lp], [0, 1, 2]

    def kernel(x, c, lp):
        from fieldfit.cuda import _rbf_triton  # noqa: PLC0415 - imports triton; CUDA only

        _rbf_triton.MAX_REGISTERS_BWD = max_registers  # read by the backward that follows
        _rbf_triton.MAX_BK_BWD = max_units
        return K.rbf_layer(x, c, lp)

    if not gemm_backward:
        name = f"rbf_layer D={d} K={k}" + (f", backward: at most {max_registers} registers" if max_registers else "")
        name += f", backward: tiles of {max_units} units" if max_units != 64 else ""
        return dict(name=name, make=make, kernel=kernel, reference=R.rbf_layer_ref,
                    kernel_only=bool(max_registers) or max_units != 64)
    return dict(name=f"rbf_layer D={d} K={k}, GEMM backward (the design the fused backward replaced)", make=make,
                kernel=_rbf_gemm_backward, reference=R.rbf_layer_ref, kernel_only=True)


class _RBFGemmBackward(torch.autograd.Function):
    """The forward kernel with the GEMM backward, for an A/B against the fused backward kernel."""

    @staticmethod
    def forward(ctx, x, c, lp):
        from fieldfit.cuda import _rbf_triton  # noqa: PLC0415 - imports triton (optional)

        phi = _rbf_triton.forward(x, c, lp, "gaussian")
        ctx.save_for_backward(x, c, lp, phi)
        return phi

    @staticmethod
    def backward(ctx, grad):
        from fieldfit.cuda import rbf  # noqa: PLC0415 - kept beside its one use, like the forward's import

        return rbf._gemm_backward(*ctx.saved_tensors, grad, "gaussian", ctx.needs_input_grad)


def _rbf_gemm_backward(x, c, lp):
    return _RBFGemmBackward.apply(x, c, lp)


def _rbf_forward_case(d, k, impl):
    """Forward only, one of rbf_layer's two forward kernels forced (``rbf_layer`` times both and keeps the faster)."""
    make = _rbf_case(d, k)["make"]
    what = {"loop": "loop over D (direct form)", "dot": "expanded form on tensor cores"}[impl]

    def kernel(x, c, lp):
        from fieldfit.cuda import _rbf_triton  # noqa: PLC0415 - imports triton; CUDA only

        return getattr(_rbf_triton, f"forward_{impl}")(x, c, lp, "gaussian")

    return dict(name=f"rbf_layer D={d} K={k}, forward: {what}", make=lambda n, dev: (make(n, dev)[0], []),
                kernel=kernel, reference=R.rbf_layer_ref, kernel_only=True)


BACKWARDS = {"tile": "[points, features] tiles", "point": "one point per lane"}  # grid backward kernels


def _dense_case(d, f, res, channels_last, backward=None):
    def make(n, dev):
        x = torch.rand(n, d, device=dev) * 2 - 1
        shape = (*([res] * d), f)
        grid = (torch.randn(shape, device=dev) * 1e-2).movedim(-1, 0)  # [F, *R], channels-last memory
        if not channels_last:
            grid = grid.contiguous()
        return [x, grid], [1]

    def kernel(x, g):
        from fieldfit.cuda import _grid_triton  # noqa: PLC0415 - imports triton (optional)

        _grid_triton._dense_backward_choice.pinned = backward  # None: timed; else this backward kernel, forced
        return K.dense_grid(x, g)

    name = f"dense_grid {d}D F={f} R={res} {'channels-last' if channels_last else 'channels-first'}"
    name += f", backward: {BACKWARDS[backward]}" if backward else ""
    return dict(name=name, make=make, kernel=kernel, reference=R.dense_grid_ref, kernel_only=backward is not None)


RAY_SAMPLES = 64  # points per ray of the ray-ordered cases


def _points(n, dev, along_rays: bool):
    """n points in [-1, 1]^3: uniform, or RAY_SAMPLES per ray, ray after ray, 1/128 of the box's side apart (as a
    training batch's packed samples: neighbours in memory are neighbours in space and share coarse cells, so
    their gradient adds meet at the same addresses)."""
    if not along_rays:
        return torch.rand(n, 3, device=dev) * 2 - 1
    g = torch.Generator().manual_seed(1)
    rays = -(-n // RAY_SAMPLES)
    d = torch.nn.functional.normalize(torch.randn(rays, 3, generator=g), dim=1)
    start = (torch.rand(rays, 3, generator=g) * 2 - 1) * 0.5
    t = torch.arange(RAY_SAMPLES) * (2 / 128)
    x = (start[:, None, :] + t[None, :, None] * d[:, None, :]).clamp(-1, 1)
    return x.reshape(-1, 3)[:n].contiguous().to(dev)


def _hash_case(levels, log2t, f, along_rays=False, merge=False):
    res = [int(round(16 * (512 / 16) ** (i / (levels - 1)))) for i in range(levels)]

    def make(n, dev):
        x = _points(n, dev, along_rays)
        table = (torch.rand(levels, 2**log2t, f, device=dev) * 2 - 1) * 1e-4
        return [x, table], [1]

    def kernel(x, t):
        from fieldfit.cuda import _grid_triton  # noqa: PLC0415 - imports triton (optional)

        _grid_triton.MERGE_RUNS = merge  # read by the backward that follows
        return K.hash_grid(x, t, res)

    name = f"hash_grid L={levels} T=2^{log2t} F={f}"
    name += f", points along rays ({RAY_SAMPLES} each)" if along_rays else ""
    name += ", backward: runs of equal corners merged (dense levels)" if merge else ""
    return dict(name=name, make=make, kernel=kernel, reference=lambda x, t: R.hash_grid_ref(x, t, res),
                kernel_only=merge)


def _triplane_case(max_res, f=4, volume_max_res=32, backward=None, channels_last=True, along_rays=False, levels=4):
    """lego's rbf encoding on CUDA: ``levels`` (4) levels 16..max_res, 3 planes each, volumes up to 32 (15 grids),
    packed channels-last as TriPlane keeps them on a GPU, or channels-first (the layout before; the reference reads
    the same tensors, so compare each kernel row with the channels-first reference row too)."""
    from fieldfit.cuda.triplane import pack
    from fieldfit.fields.components.encodings import GridConfig

    res = GridConfig(levels=levels, base_res=16, max_res=max_res).resolutions()
    n_p = 3 * len(res)

    def make(n, dev):
        g = torch.Generator().manual_seed(0)
        planes = [torch.randn(f, r, r, generator=g).to(dev) * 1e-2 for r in res for _ in range(3)]
        volumes = [torch.randn(f, r, r, r, generator=g).to(dev) * 1e-2 for r in res if r <= volume_max_res]
        grids = planes + volumes
        pack(grids, channels_last=channels_last)  # as TriPlane keeps them: one buffer, read in place
        return [_points(n, dev, along_rays), *grids], list(range(1, 1 + len(grids)))

    def kernel(x, *g):
        from fieldfit.cuda import _triplane_triton  # noqa: PLC0415 - imports triton (optional)

        _triplane_triton._backward_choice.pinned = backward  # None: timed; else this backward kernel, forced
        return K.triplane_grid(x, g[:n_p], g[n_p:])

    layout = "channels-last" if channels_last else "channels-first"
    name = f"triplane_grid F={f} R={res} volumes<={volume_max_res} {layout} (vs {n_p} grid_sample + cat)"
    name += f", backward: {BACKWARDS[backward]}" if backward else ""
    name += f", points along rays ({RAY_SAMPLES} each)" if along_rays else ""
    return dict(name=name, make=make, kernel=kernel, reference=lambda x, *g: R.triplane_ref(x, g[:n_p], g[n_p:]),
                kernel_only=backward is not None)


def _composite_case():
    def make(n_samples, dev):
        n_rays = max(1, n_samples // 64)
        counts = torch.randint(0, 129, (n_rays,), generator=torch.Generator().manual_seed(0))
        ri = torch.repeat_interleave(torch.arange(n_rays), counts)[:n_samples].to(dev)
        s = ri.numel()
        ts = torch.rand(s, device=dev)
        return [torch.rand(s, device=dev) * 5, ts, ts + 0.01, ri, n_rays], [0]

    return dict(name="composite_packed 64 samples/ray", make=make, kernel=K.composite_packed,
                reference=R.composite_packed_ref, samples=True)


def _terminate_case():
    """One early-termination round over 2^20 samples, 64 per ray (both sides clone the two outputs first: the
    op works in place)."""
    def make(n_samples, dev):
        gen = torch.Generator().manual_seed(0)
        n_rays = max(1, n_samples // 64)
        ri = torch.arange(n_samples) // 64
        tau = torch.rand(n_samples, generator=gen, dtype=torch.float64) * 0.3
        return [tau.to(dev), ri.to(dev), torch.arange(n_samples, device=dev),
                torch.zeros(n_rays, dtype=torch.float64, device=dev), torch.zeros(n_samples, dtype=torch.bool,
                                                                                 device=dev)], []

    def wrap(fn):
        def run(tau, ri, idx, before, keep):
            before, keep = before.clone(), keep.clone()
            fn(tau, ri, idx, before, keep, 1e-3, 1e-3)
            return before, keep
        return run

    return dict(name="terminate_round 64 samples/ray", make=make, kernel=wrap(K.terminate_round),
                reference=wrap(R.terminate_round_ref), samples=True)


def _positions_case():
    """Packed samples' midpoints (sample_positions), 2^20 samples of 64 per ray."""
    def make(n_samples, dev):
        gen = torch.Generator().manual_seed(0)
        n_rays = max(1, n_samples // 64)
        ts = torch.rand(n_samples, generator=gen)
        return [torch.randn(n_rays, 3, generator=gen).to(dev), torch.randn(n_rays, 3, generator=gen).to(dev),
                (torch.arange(n_samples) // 64).to(dev), ts.to(dev), (ts + 0.01).to(dev)], []

    return dict(name="sample_positions 64 samples/ray", make=make, kernel=K.sample_positions,
                reference=R.sample_positions_ref, samples=True)


def _traverse_case(g, m):
    def make(n, dev):
        gen = torch.Generator().manual_seed(0)
        o = (torch.randn(n, 3, generator=gen) * 0.1 + torch.tensor([-2.0, 0.0, 0.0])).to(dev)
        d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen) * 0.3 + torch.tensor([1.0, 0, 0]), dim=-1)
        binary = (torch.rand(g, g, g, generator=gen) < 0.3).to(dev)
        aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=dev)
        tmin, tmax = torch.full((n,), 0.5, device=dev), torch.full((n,), 3.5, device=dev)
        return [o, d.to(dev), tmin, tmax, binary, aabb, 3.0 / m, m, torch.rand(n, generator=gen).to(dev)], []

    return dict(name=f"traverse_occupancy G={g} steps={m}", make=make, kernel=K.traverse_occupancy,
                reference=R.traverse_occupancy_ref)


def _traverse_next_case(g, m, k):
    base = _traverse_case(g, m)["make"]

    def make(n, dev):
        args, _ = base(n, dev)
        *head, jitter = args
        return [*head, torch.zeros(n, dtype=torch.int32, device=dev), k, jitter], []

    return dict(name=f"traverse_occupancy_next G={g} steps={m} K={k}", make=make, kernel=K.traverse_occupancy_next,
                reference=R.traverse_next_ref)


def _fused_case(g=128, m=256, refill=None):
    """A random 16-level hash grid (2^19 x 2), 32 RBF units, SH 3 head; 30% occupied cells. refill: the
    kernel's REFILL for this case (None: its default; its BLOCK: no lane refill, the design it replaced)."""
    from fieldfit.cuda._fused_ref import render_fused_ref
    from fieldfit.cuda.fused import HashEncoding, RBFField

    def make(n, dev):
        if dev.type == "cuda":
            from fieldfit.cuda import _fused_triton

            default = _FUSED_DEFAULTS.setdefault("REFILL", _fused_triton.REFILL)
            _fused_triton.REFILL = refill or default
        gen = torch.Generator().manual_seed(0)
        args, _ = _traverse_case(g, m)["make"](n, dev)
        o, d, tmin, tmax, binary, aabb, step, steps, _ = args
        res = tuple(int(round(16 * (2048 / 16) ** (i / 15))) for i in range(16))
        table = (torch.rand(16, 1 << 19, 2, generator=gen) * 2 - 1).to(dev)
        field = RBFField(aabb, HashEncoding(table, res), torch.randn(32, 32, generator=gen).to(dev) * 0.5,
                         torch.full((32, 32), -1.0, device=dev), "gaussian",
                         (torch.randn(49, 32, generator=gen) * 0.5).to(dev), torch.zeros(49, device=dev), 20.0, -1.0)
        sh = torch.rand(n, 16, generator=gen).to(dev)
        bg = torch.ones(3, device=dev)
        return [o, d, sh, tmin, tmax, binary, aabb, step, steps, field, bg, 1e-3, 1e-3], []

    name = f"render_fused G={g} steps={m} hash L=16 K=32" + (f", refill after {refill} lanes" if refill else "")
    return dict(name=name, make=make, kernel=K.render_fused, reference=render_fused_ref, rays=True)


_FUSED_DEFAULTS = {}  # the fused kernel's settings as imported (the cases above change them)


def _ray_setup_case(sh_degree=3):
    """A frame's per-ray set-up: spans (occupied box, near/far, grid box) and SH bases, as render_fused takes them."""
    def make(n, dev):
        args, _ = _traverse_case(128, 256)["make"](n, dev)
        o, d, *_ = args
        box = torch.tensor([[-0.6, -0.5, -0.4], [0.5, 0.6, 0.7]], device=dev)
        aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=dev)
        return [o, d, box, aabb, 0.1, 6.0, sh_degree], []

    return dict(name=f"ray_setup SH {sh_degree}", make=make, kernel=K.ray_setup, reference=R.ray_setup_ref)


def _sh_case(degree=3):
    """The fields' SH bases of every sample (fields.components.sh.sh_bases)."""
    def make(n, dev):
        gen = torch.Generator().manual_seed(0)
        return [torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1).to(dev), degree], []

    return dict(name=f"sh_bases degree {degree}", make=make, kernel=K.sh_bases, reference=R.sh_bases_ref)


# op -> (kernel module, its Choice, JSON key) of the ops whose kernel is chosen by timing on a GPU
CHOICES = {"rbf": ("_rbf_triton", "_forward_choice", "rbf_forward_chosen"),
           "dense": ("_grid_triton", "_dense_backward_choice", "dense_backward_chosen"),
           "triplane": ("_triplane_triton", "_backward_choice", "triplane_backward_chosen")}

def make_cases(dense_res=(128, 512), hash_shape=(16, 19), triplane_shape=(4, 512, 32), march=(128, 256)) -> dict:
    """op -> its cases. The defaults are the problems timed (``CASES``); smaller ones give the same cases (names
    aside) on smaller problems: dense_res (3D, 2D grid sides), hash_shape (levels, log2 of the table size),
    triplane_shape (levels, finest plane side, largest volume side), march (occupancy grid side, steps per ray;
    the traversal and fused cases). tests/test_bench_kernels.py runs small cases through the Triton interpreter."""
    r3, r2 = dense_res
    levels, log2t = hash_shape
    tri_levels, tri_res, tri_volumes = triplane_shape
    g, m = march

    def triplane(**kw):
        return _triplane_case(tri_res, volume_max_res=tri_volumes, levels=tri_levels, **kw)

    return {
        "rbf": [_rbf_case(32, 64), _rbf_case(32, 64, max_registers=128), _rbf_case(32, 64, max_units=32),
                _rbf_case(32, 64, gemm_backward=True),
                _rbf_forward_case(32, 64, "loop"),
                _rbf_forward_case(32, 64, "dot"), _rbf_case(3, 64)],
        "dense": [_dense_case(3, 8, r3, True), _dense_case(3, 8, r3, False), _dense_case(2, 8, r2, True),
                  *(_dense_case(*shape, backward=b) for shape in ((2, 8, r2, True), (3, 8, r3, False))
                    for b in BACKWARDS)],
        # the last hash case leaves MERGE_RUNS off
        "hash": [_hash_case(levels, log2t, 2, merge=True), _hash_case(levels, log2t, 2, along_rays=True, merge=True),
                 _hash_case(levels, log2t, 2, along_rays=True), _hash_case(levels, log2t, 2)],
        "triplane": [triplane(), triplane(channels_last=False), *(triplane(backward=b) for b in BACKWARDS),
                     triplane(along_rays=True)],
        "composite": [_composite_case()],
        "terminate": [_terminate_case(), _positions_case()],
        "traverse": [_traverse_case(g, m), _traverse_next_case(g, m, 8)],
        "fused": [_fused_case(g, m), _fused_case(g, m, refill=32)],
        "setup": [_ray_setup_case(), _sh_case()],
    }


CASES = make_cases()


# --------------------------------------------------------------------------- timing


def _outputs(y):
    return y if isinstance(y, tuple) else (y,)


def _step(fn, inputs, grad_idx, backward):
    """A closure running fn forward (and backward with fixed random cotangents)."""
    if not backward:
        def run():
            with torch.no_grad():
                fn(*inputs)
        return run, []
    leaves = list(inputs)
    for i in grad_idx:
        leaves[i] = inputs[i].detach().requires_grad_()
    outs = _outputs(fn(*leaves))
    cots = [torch.randn_like(o) for o in outs]

    def run():
        ys = _outputs(fn(*leaves))
        torch.autograd.backward(ys, cots)
    return run, [leaves[i] for i in grad_idx]


def _time_cuda(run, grads):
    import triton.testing  # noqa: PLC0415 - CUDA path only

    return triton.testing.do_bench(run, warmup=25, rep=100, grad_to_none=grads or None, return_mode="median")


def _busy_cuda(run, grads, iters=10):
    """(ms per call the GPU spent in kernels, the 3 longest kernels as [name, us per call]) from torch.profiler.
    Far below do_bench's time (which counts the gaps between kernels too): the call is bound by host-side
    launch overhead, not by its kernels."""
    try:
        return _profiled(run, grads, iters)
    except Exception as exc:  # noqa: BLE001 - a profiler that fails costs this column, not the run
        return None, [f"profiler failed: {type(exc).__name__}: {exc}"[:200]]


def _profiled(run, grads, iters):
    from torch.autograd import DeviceType  # noqa: PLC0415 - profiler path, CUDA only
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415 - profiler path, CUDA only

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            for g in grads:
                g.grad = None
            run()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0]
    kernels.sort(key=lambda e: -e.self_device_time_total)
    top = [[e.key[:80], round(e.self_device_time_total / iters, 2)] for e in kernels[:3]]
    return sum(e.self_device_time_total for e in kernels) / iters / 1e3, top


def _time_cpu(run, grads, reps=3):
    run()
    times = []
    for _ in range(reps):
        for g in grads:
            g.grad = None
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _max_err(fn, ref, inputs):
    """(max |kernel - reference| over the outputs, note); None when shapes differ (see the note)."""
    with torch.no_grad():
        a, b = _outputs(fn(*inputs)), _outputs(ref(*inputs))
    errs = []
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:  # traversal: a boundary sample may differ (see the tests' boundary band)
            return None, f"output sizes differ: {list(x.shape)} vs reference {list(y.shape)}"
        errs.append((x.double() - y.double()).abs().max().item() if x.numel() else 0.0)
    return max(errs), ""


def run_case(case, n, dev, on_cuda):
    inputs, grad_idx = case["make"](n, dev)
    rows = []
    err, note = _max_err(case["kernel"], case["reference"], inputs) if on_cuda else (None, "")
    for backward in (False, True) if grad_idx else (False,):
        row = dict(op=case["name"], pass_="fwd+bwd" if backward else "fwd", n=n)
        timer = _time_cuda if on_cuda else _time_cpu
        run, grads = _step(case["reference"], inputs, grad_idx, backward)
        row["reference_ms"] = timer(run, grads)
        if on_cuda:
            row["reference_busy_ms"], row["reference_top"] = _busy_cuda(run, grads)
            run, grads = _step(case["kernel"], inputs, grad_idx, backward)
            row["kernel_ms"] = timer(run, grads)
            row["kernel_busy_ms"], row["kernel_top"] = _busy_cuda(run, grads)
            row["speedup"] = row["reference_ms"] / row["kernel_ms"]
            row["fwd_max_abs_err"] = err
            if note:
                row["note"] = note
        rows.append(row)
    return rows


def machine(dev):
    info = dict(torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                device=str(dev), kernels_env=os.environ.get("FIELDFIT_KERNELS", ""))
    if dev.type == "cuda":
        import triton  # noqa: PLC0415 - triton is optional; CUDA only

        info.update(device_name=torch.cuda.get_device_name(dev), cuda=torch.version.cuda, triton=triton.__version__,
                    capability=".".join(map(str, torch.cuda.get_device_capability(dev))))
    else:
        info.update(device_name=platform.processor() or platform.machine(), cpu_threads=torch.get_num_threads())
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="on CPU, use the CUDA sizes (slow)")
    ap.add_argument("--ops", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/kernels_<device>.json)")
    args = ap.parse_args(argv)
    on_cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if on_cuda else "cpu")
    if os.environ.get("FIELDFIT_KERNELS", "").strip().lower() == "torch":
        print("warning: FIELDFIT_KERNELS=torch makes the 'kernel' timings reference timings", file=sys.stderr)
    big = on_cuda or args.full
    note = ("kernel vs reference, triton.testing.do_bench median" if on_cuda else
            "CPU: reference only (the Triton kernels need CUDA; the interpreter is for tests), median of 3")
    print(f"# fieldfit.cuda kernels on {dev} -- {note}")
    rows = []
    keys = [k.strip() for k in args.ops.split(",") if k.strip()]
    for key in keys:
        for case in CASES[key]:
            if case.get("kernel_only") and not on_cuda:  # its reference row is another case's
                continue
            n = (2**20 if case.get("samples") else 2**18) if big else (2**16 if case.get("samples") else 2**14)
            if case.get("rays"):  # whole rays: the reference holds every occupied interval at once
                n = 2**16 if big else 2**10
            for row in run_case(case, n, dev, on_cuda):
                rows.append(row)
                print(_fmt(row), flush=True)
    slug = re.sub(r"[^a-z0-9]+", "-", (torch.cuda.get_device_name(dev) if on_cuda else "cpu").lower()).strip("-")
    out = args.out or RESULTS / f"kernels_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = {}
    for key, (module, attr, label) in CHOICES.items():  # which kernel each timed choice kept, per problem
        if on_cuda and key in keys:
            chosen = getattr(importlib.import_module(f"fieldfit.cuda.{module}"), attr).chosen
            extra[label] = {str(problem): name for problem, name in chosen.items()}
            print(f"# {label}: {extra[label]}")
    out.write_text(json.dumps(dict(machine=machine(dev), note=note, results=rows, **extra), indent=1))
    print(f"# wrote {out}")
    return 0


def _fmt(row):
    s = f"{row['op']:<44} {row['pass_']:<8} n={row['n']:<8} ref {row['reference_ms']:9.3f} ms"
    if "kernel_ms" in row:
        err = row["fwd_max_abs_err"]
        busy = row.get("kernel_busy_ms")
        s += f"  kernel {row['kernel_ms']:8.3f} ms (busy {busy if busy is None else round(busy, 3)})" \
             f"  x{row['speedup']:6.2f}  err " + \
            (f"{err:.1e}" if err is not None else row.get("note", "?"))
    return s


if __name__ == "__main__":
    sys.exit(main())
