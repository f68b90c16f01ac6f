"""GPU: lego at full resolution (400x400): test PSNR after each budget, render fps at 400 and 800.

    python bench/radiance_gpu.py [--budgets 180] [--device cuda]   -> bench/results/radiance_gpu.json
Each budget is its own run (so each completes its schedule). On the last run (``fieldfit.load``): fps of
``fieldfit render`` frames (``fieldfit.render.march.render_rays``; a test camera at 400x400 and with upscaled
intrinsics at 800x800; at 800x800 also both marchers, FIELDFIT_MARCH=rounds|packed, at two chunk sizes, and
``render_rounds`` at two first round sizes), and the viewer's frame rate at 800x800 while the camera orbits
(bench/viewer_bench.measure: full resolution, and dynamic resolution at a 60 fps target).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import DATA, write


def _timed(fn, device, reps=5):
    import torch

    fn()  # warm-up (compilation)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def fps(run: Path, device: str, sizes=(400, 800)) -> dict:
    """Frames per second of a test camera at each size as ``fieldfit render`` makes them, and at the
    last size both marchers (FIELDFIT_MARCH=rounds|packed) at two chunk sizes and the rounds' first size."""
    import torch

    import fieldfit
    from fieldfit.render.march import render_rays, render_rounds
    from fieldfit.tasks.radiance import camera_rays

    model = fieldfit.load(run, device)
    field, grid, march, scene, bg = model.field, model.grid, model.march, model.scene, model.background
    cam = model.cameras("test")[0]
    out = {}
    with torch.no_grad():
        for size in sizes:
            k = size / cam.width
            c = replace(cam, width=size, height=size, fx=cam.fx * k, fy=cam.fy * k, cx=cam.cx * k, cy=cam.cy * k)
            out[f"fps_{size}"] = 1.0 / _timed(  # what fieldfit render does: rays made, marched, copied back
                lambda c=c: render_rays(field, grid, *camera_rays(scene, c, device=device), bg, march, device), device)
        o, d = camera_rays(scene, c, device=device)  # the last size; rays made once: the marchers are compared
        for mode in ("rounds", "packed"):
            for chunk in (1 << 18, 1 << 20):
                out[f"frame_{size}_ms_{mode}_chunk{chunk}"] = 1e3 * _timed(
                    lambda chunk=chunk, mode=mode: render_rays(field, grid, o, d, bg, march, device, chunk=chunk,
                                                               mode=mode), device)
        bgt = torch.as_tensor(bg, dtype=torch.float32, device=device)
        o, d = o.to(device), d.to(device)
        for first in (8, 16):
            out[f"frame_{size}_ms_rounds_first{first}_whole"] = 1e3 * _timed(
                lambda first=first: render_rounds(field, grid, o, d, bgt, march, first=first), device)
    return out


def viewer_fps(run: Path, device: str) -> dict:
    from viewer_bench import measure

    from fieldfit.api import open_run
    from fieldfit.viewer.registry import open_view

    view = open_view(open_run(run), device)
    full = measure(view, (800, 800), 30, 60.0, 1.0, 30.0)
    dynamic = measure(view, (800, 800), 30, 60.0, None, 30.0)
    return {"viewer_800_full_fps": full["fps"], "viewer_800_dynamic_fps": dynamic["fps"],
            "viewer_800_dynamic_scale": dynamic["scale"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="180")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--extra", default="", help="extra fieldfit flags, space separated")
    ap.add_argument("--skip-fps", action="store_true", help="fits only (no frame rates, no viewer)")
    ap.add_argument("--name", default="radiance_gpu", help="results file name (bench/results/NAME.json)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in [float(x) for x in a.budgets.split(",")]:
            run = Path(tmp) / f"lego-{int(b)}"
            cmd = [sys.executable, "-m", "fieldfit", str(DATA / "lego_400"), "--device", a.device,
                   "--time-budget", str(b), "--out", str(run), *a.extra.split()]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stdout[-2000:], res.stderr[-3000:])
                return 1
            m = json.loads((run / "metrics.json").read_text())
            log_tail = (run / "log").read_text().splitlines()[-12:] if (run / "log").is_file() else []
            rows.append({"budget_s": b, **{f"test_{k}": v for k, v in m["test"].items()},
                         **{k: m.get(k) for k in ("train_seconds", "rays_per_second", "render_ms_per_frame",
                                                  "samples_per_ray", "params")}, "log_tail": log_tail})
            print(rows[-1], flush=True)
        if not a.skip_fps:
            rows[-1].update(fps(run, a.device))
            print(rows[-1], flush=True)
            try:
                rows[-1].update(viewer_fps(run, a.device))
            except Exception as exc:  # noqa: BLE001 - the fits above are worth keeping
                rows[-1]["viewer_error"] = f"{type(exc).__name__}: {exc}"
            print(rows[-1], flush=True)
    write(a.name, {"scene": "lego_400 (full resolution)", "flags": a.extra, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
