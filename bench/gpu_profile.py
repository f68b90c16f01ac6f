"""Where a radiance training step and a frame render spend their time on a GPU.

    python bench/gpu_profile.py [--scene lego_400] [--steps 200] [--device cuda]
        -> bench/results/gpu_profile_<device>.json, and torch.profiler tables on stdout

Trains the rbf lego model for ``--steps`` steps (the CLI's defaults: ``RadianceConfig.for_scene`` and
``fieldfit.methods.rbf.radiance.Stepper``), then times each part of one step (pixel batch to the device,
march (``fieldfit.render.march.march``), field, compositing, backward, optimiser) with a device
synchronisation around each, times the march's early termination in rounds
(``fieldfit.render.termination.terminate``) against one density pass (an experiment,
bench/_terminate_single_pass.py), profiles a few steps, and times an 800x800 render split into ray
generation (host, ``fieldfit.tasks.radiance.camera_rays``) and marching + field (device,
``fieldfit.render.march.render_rays``). Diagnostics, not a target check.
"""

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from _common import DATA, write


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device, fn, *args, **kw):
    sync(device)
    t = time.perf_counter()
    out = fn(*args, **kw)
    sync(device)
    return out, (time.perf_counter() - t) * 1e3


def terminate_ab(model, store, march, n, device, reps=20) -> dict:
    """The training march's early termination on the same candidates: in rounds (fieldfit's,
    ``fieldfit.render.termination.terminate``) against one density pass (bench/_terminate_single_pass.py, an
    experiment); and whether they keep the same samples."""
    from _terminate_single_pass import terminate_single_pass

    from fieldfit.render.march import candidates
    from fieldfit.render.termination import terminate

    rng = np.random.default_rng(2)
    times = {"rounds_ms": [], "single_pass_ms": []}
    same = True
    density = model.field.density
    for _ in range(reps):
        batch = store.take(rng.integers(0, store.count, n)).to(device)
        o, d = batch.origins, batch.dirs
        cand = candidates(model.grid, o, d, march)
        a, ms = timed(device, terminate, density, o, d, cand, march.early_stop, march.alpha_thre)
        times["rounds_ms"].append(ms)
        b, ms = timed(device, terminate_single_pass, density, o, d, cand, march.early_stop, march.alpha_thre)
        times["single_pass_ms"].append(ms)
        same &= bool(torch.equal(a.t_starts, b.t_starts) and torch.equal(a.ray_indices, b.ray_indices))
    out = {k: round(float(np.median(v)), 3) for k, v in times.items()}
    out.update(candidates=int(cand.n_samples), kept=int(a.n_samples), same_samples=same)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", default="lego_400")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=800)
    a = ap.parse_args()
    device = torch.device(a.device)

    from fieldfit.methods.rbf.config import RadianceConfig
    from fieldfit.methods.rbf.radiance import Stepper, build_model, param_groups, run_config
    from fieldfit.optim import make_adam, seed_everything
    from fieldfit.render import composite
    from fieldfit.render.march import march as march_rays
    from fieldfit.render.march import render_rays
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import PixelStore, camera_rays, eval_background, load_radiance_scene

    seed_everything(0)
    inp = Input("radiance", DATA / a.scene, a.scene, None)
    t0 = time.perf_counter()
    scene = load_radiance_scene(inp)
    cfg = RadianceConfig.for_scene(scene, device)  # the CLI's defaults on this device
    run_cfg = run_config(scene, inp, cfg, 0)
    model, march = build_model(run_cfg, device)
    opt = make_adam(param_groups(model, cfg))
    store = PixelStore(scene, scene.split("train"))
    on_device = store.keep_on(device)  # as rbf.radiance's fit: batches gathered on the GPU when the pixels fit
    stepper = Stepper(model, opt, store, march, cfg, device, 0)
    prep = time.perf_counter() - t0
    print(f"prepare {prep:.1f} s, {store.count:,} pixels{' on the device' if on_device else ''}, "
          f"step {march.step:.4g}, grid {run_cfg['grid_res']}", flush=True)

    # Train (includes Triton compilation in the first steps).
    sync(device)
    t = time.perf_counter()
    for i in range(a.steps):
        stepper(i, i / (a.steps * 10))
    sync(device)
    train_ms = (time.perf_counter() - t) * 1e3 / a.steps
    n0, r0 = stepper.samples, stepper.rays
    t = time.perf_counter()
    for i in range(a.steps, a.steps + 50):
        stepper(i, i / (a.steps * 10))
    sync(device)
    steady_ms = (time.perf_counter() - t) * 1e3 / 50
    rays_step = (stepper.rays - r0) / 50
    spr = (stepper.samples - n0) / max(stepper.rays - r0, 1)
    print(f"train: first {a.steps} steps {train_ms:.1f} ms/step; next 50: {steady_ms:.1f} ms/step, "
          f"{rays_step:.0f} rays/step ({rays_step / steady_ms * 1e3:,.0f} rays/s), {spr:.2f} samples/ray", flush=True)

    # Steady-state step time against the step size (field samples per step).
    sweep = {}
    for target in (1 << 14, 1 << 16, 1 << 18):
        stepper.cfg = cfg.replace(target_samples=target, batch=1 << 18)
        i0 = stepper.last_step
        for i in range(i0, i0 + 3):
            stepper(i, 0.5)
        sync(device)
        t = time.perf_counter()
        r1 = stepper.rays
        for i in range(i0 + 3, i0 + 23):
            stepper(i, 0.5)
        sync(device)
        ms = (time.perf_counter() - t) * 1e3 / 20
        sweep[target] = {"ms_per_step": ms, "rays_per_s": (stepper.rays - r1) / ms * 1e3}
        print(f"target {target} samples/step: {ms:.1f} ms/step, {sweep[target]['rays_per_s']:,.0f} rays/s", flush=True)
    stepper.cfg = cfg

    # One step taken apart.
    parts = {k: [] for k in ("batch", "march", "field", "composite", "backward", "adam")}
    passes = stepper.passes  # the rays as the stepper draws them
    n = int(rays_step)
    for _ in range(20):
        batch, ms = timed(device, lambda: store.take(passes.next(n)).to(device))
        parts["batch"].append(ms)
        bg = torch.rand(n, 3, device=device)
        samples, ms = timed(device, march_rays, model.field, model.grid, batch.origins, batch.dirs, march, True)
        parts["march"].append(ms)
        ri = samples.ray_indices

        def field(batch=batch, ri=ri, samples=samples):
            x = batch.origins[ri] + batch.dirs[ri] * samples.t_mids[:, None]
            return model.field(x, batch.dirs[ri])

        out, ms = timed(device, field)
        parts["field"].append(ms)
        res, ms = timed(device, composite, out.density, out.rgb, samples, bg)
        parts["composite"].append(ms)
        loss = torch.nn.functional.mse_loss(res.rgb, batch.target(bg))
        opt.zero_grad(set_to_none=True)
        _, ms = timed(device, loss.backward)
        parts["backward"].append(ms)
        _, ms = timed(device, opt.step)
        parts["adam"].append(ms)
    step_parts = {k: float(np.median(v)) for k, v in parts.items()}
    print("step parts (median ms): " + ", ".join(f"{k} {v:.2f}" for k, v in step_parts.items()), flush=True)
    terminate = terminate_ab(model, store, march, n, device)
    print("early termination (median ms): " + ", ".join(f"{k} {v}" for k, v in terminate.items()), flush=True)

    # Profile a few steps.
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for i in range(5):
            stepper(a.steps + 50 + i, 0.5)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=30), flush=True)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), flush=True)

    # Render one frame at size x size.
    cam = scene.cameras("test")[0]
    k = a.size / cam.width
    c = replace(cam, width=a.size, height=int(cam.height * k), fx=cam.fx * k, fy=cam.fy * k, cx=cam.cx * k,
                cy=cam.cy * k)
    model.eval()
    render = {}
    bg = eval_background(scene)
    with torch.no_grad():
        (o, d), render["rays_host_ms"] = timed(device, camera_rays, scene, c)
        for chunk in (1 << 13, 1 << 16, 1 << 18):
            render_rays(model.field, model.grid, o, d, bg, march, device, chunk=chunk)  # warm-up
            _, ms = timed(device, render_rays, model.field, model.grid, o, d, bg, march, device, chunk=chunk)
            render[f"march_field_ms_chunk_{chunk}"] = ms
        with profile(activities=acts) as prof:
            render_rays(model.field, model.grid, o, d, bg, march, device, chunk=1 << 16)
            sync(device)
    print(f"render {a.size}: " + ", ".join(f"{k} {v:.1f}" for k, v in render.items()), flush=True)
    print(prof.key_averages().table(sort_by=key, row_limit=20), flush=True)

    name = torch.cuda.get_device_name().replace(" ", "-").lower() if device.type == "cuda" else "cpu"
    write(f"gpu_profile_{name}", {"scene": a.scene, "train_ms_per_step_first": train_ms, "train_ms_per_step": steady_ms,
                                  "rays_per_step": rays_step, "samples_per_ray": spr, "step_parts_ms": step_parts,
                                  "step_size_sweep": sweep, "terminate_rounds_vs_single_pass": terminate,
                                  "render": render, "size": a.size})
    return 0


if __name__ == "__main__":
    sys.exit(main())
