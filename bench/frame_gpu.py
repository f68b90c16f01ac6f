"""Frame time of the three frame marchers (packed, rounds, fused) on one trained lego run, same rays.

    python bench/frame_gpu.py [--run RUN | --budget 60 [--grid hash|triplane]] [--device cuda] [--sizes 400,800]
        -> bench/results/frame_<device>[_<grid>].json

Without --run, fits lego_400 for --budget seconds first (the device's defaults: on a GPU the hash
grid, which the fused kernel draws), and loads the run (``fieldfit.load``). Then, for a test camera at each
size (intrinsics scaled): ms per frame as ``fieldfit render`` makes it (rays made on the device by
``fieldfit.tasks.radiance.camera_rays``, marched and copied back by ``fieldfit.render.march.render_rays``)
for each marcher, packed being the baseline; the fused kernel also at other launch shapes (rays per
program, warps, hash levels unrolled, lane refill); each marcher's frame against packed's (max abs
difference, PSNR: the same image up to float rounding); and the viewer's frame rate at 800x800 while
orbiting (full resolution and dynamic resolution at a 60 fps target) per marcher, with a frame's parts
timed alone (the view's render at 800 and 200, its composition to 800x800), and on a GPU with the viewer's
own marcher choice (viewer/marcher.py: each marcher timed on the first frames of each frame size, then the
fastest kept; its trial frames are inside the timed window).
On a CPU the fused marcher runs the torch reference (slow; a smoke test of this script).
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from radiance_gpu import _timed

from _common import DATA, write

MODES = ("packed", "rounds", "fused")
# fused kernel launch shapes tried at the largest size (the default first): rays per program, warps, hash levels
# unrolled, lanes done before a refill (refill = rays per program: fixed blocks), programs per SM, register cap
# (None: ptxas's choice)
# sm_90 compiles of the default field (registers, stack): 32 x 2 at 128 registers spills 1000 bytes, at 192 656, at
# 255 384; 32 x 4 at 128 448; 64 x 4 at 128 888, at 255 232
SHAPES = ((32, 2, False, 8, 4, 128), (32, 4, False, 8, 4, 128), (32, 1, False, 8, 4, 128), (64, 4, False, 16, 4, 128),
          (32, 2, False, 4, 4, 128), (32, 2, False, 16, 4, 128), (32, 2, False, 8, 8, 128), (32, 2, False, 8, 4, None),
          (32, 2, False, 8, 4, 192), (64, 4, False, 16, 4, None))
LAUNCH = ("BLOCK", "WARPS", "UNROLL_LEVELS", "REFILL", "PROGRAMS_PER_SM", "MAX_REGISTERS")


def _fit(budget: float, device: str, tmp: Path, grid: str | None) -> Path:
    run = tmp / "lego"
    cmd = [sys.executable, "-m", "fieldfit", str(DATA / "lego_400"), "--device", device, "--time-budget",
           str(budget), "--out", str(run), *(["--grid", grid] if grid else [])]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"fit failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return run


def _against(image, baseline) -> tuple[float, float]:
    """(max abs difference, PSNR in dB) of a frame against the baseline marcher's."""
    diff = (image - baseline).abs()
    return float(diff.max()), -10 * math.log10(max(float((diff**2).mean()), 1e-20))


def frames(run: Path, device: str, sizes, reps: int) -> dict:
    import torch

    import fieldfit
    from fieldfit.cuda import _fused_triton  # the fused kernel's launch settings (tried below on a GPU)
    from fieldfit.render.march import render_rays
    from fieldfit.tasks.radiance import camera_rays

    model = fieldfit.load(run, device)
    field, grid, march, scene, bg = model.field, model.grid, model.march, model.scene, model.background
    cam = model.cameras("test")[0]
    modes = [m for m in MODES if m in model.marchers()]  # packed first: the others are compared with it
    psnr = model.metrics.get("test", {}).get("psnr")
    out = {"grid": type(field.encoding).__name__, "modes": modes, "test_psnr": psnr}
    with torch.no_grad():
        for size in sizes:
            k = size / cam.width
            c = replace(cam, width=size, height=size, fx=cam.fx * k, fy=cam.fy * k, cx=cam.cx * k, cy=cam.cy * k)
            images = {}
            for mode in modes:
                def draw(mode=mode, c=c):
                    return render_rays(field, grid, *camera_rays(scene, c, device=device), bg, march, device,
                                       mode=mode)

                try:  # one marcher failing (a kernel that does not compile) keeps the others' numbers
                    images[mode] = draw()[0]
                    out[f"frame_{size}_ms_{mode}"] = 1e3 * _timed(draw, device, reps)
                except Exception as exc:  # noqa: BLE001 - one marcher failing keeps the others' numbers
                    out[f"frame_{size}_{mode}_error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
                    print(f"{size}x{size} {mode}: FAILED {out[f'frame_{size}_{mode}_error']}", flush=True)
                    continue
                if "packed" not in images:
                    continue
                (out[f"frame_{size}_{mode}_vs_packed_max_abs"],
                 out[f"frame_{size}_{mode}_vs_packed_psnr"]) = _against(images[mode], images["packed"])
                print(f"{size}x{size} {mode}: {out[f'frame_{size}_ms_{mode}']:.1f} ms, "
                      f"{out[f'frame_{size}_{mode}_vs_packed_psnr']:.1f} dB vs packed", flush=True)
            if f"frame_{size}_ms_fused" in out and device.startswith("cuda") and size == max(sizes):
                default = [getattr(_fused_triton, name) for name in LAUNCH]
                try:
                    for shape in SHAPES:
                        for name, value in zip(LAUNCH, shape, strict=True):
                            setattr(_fused_triton, name, value)
                        key = "frame_{}_ms_fused_block{}_warps{}_unroll{}_refill{}_persm{}_maxreg{}".format(
                            size, *shape)

                        def draw(c=c):
                            return render_rays(field, grid, *camera_rays(scene, c, device=device), bg, march,
                                               device, mode="fused")

                        try:  # each shape's image against packed's too: a launch shape must not change the frame
                            out[key] = 1e3 * _timed(draw, device, reps)
                            out[key + "_vs_packed_psnr"] = _against(draw()[0], images["packed"])[1] \
                                if "packed" in images else None
                            print(f"{key}: {out[key]:.1f} ms, {out[key + '_vs_packed_psnr']} dB vs packed", flush=True)
                        except Exception as exc:  # noqa: BLE001 - one launch shape failing keeps the others' numbers
                            out[key + "_error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
                            print(f"{key}: FAILED {out[key + '_error']}", flush=True)
                finally:
                    for name, value in zip(LAUNCH, default, strict=True):
                        setattr(_fused_triton, name, value)
    return out


def viewer(run: Path, device: str, modes) -> dict:
    import os

    import torch
    from viewer_bench import measure

    from fieldfit.api import open_run
    from fieldfit.viewer.overlay import compose
    from fieldfit.viewer.registry import open_view
    from fieldfit.viewer.session import Session

    view = open_view(open_run(run), device)
    auto = view.choice  # on a GPU: the viewer's own choice (viewer/marcher.py), measured last
    view.choice = None  # frames by the run's own marcher: FIELDFIT_MARCH, set per marcher below
    out = {}
    orbit = Session(view, aspect=1.0).camera
    before = os.environ.get("FIELDFIT_MARCH")
    try:
        for mode in modes:
            os.environ["FIELDFIT_MARCH"] = mode  # render.march.march_mode: the marcher of the model's renders
            view.march = mode  # the view's status line
            for side in (800, 200):  # a viewer frame's two parts: the view's render, the composition to 800x800
                camera = orbit.at(side, side)
                img = view.render(camera, "colour")
                out[f"viewer_{side}_{mode}_render_ms"] = 1e3 * _timed(
                    lambda camera=camera: view.render(camera, "colour"), device, 5)
                out[f"viewer_{side}_{mode}_compose_ms"] = 1e3 * _timed(
                    lambda img=img: compose(img, 800, 800, ["  60.0 fps | scale 1.00 | mode colour", "H: help"]),
                    device, 5)
                if torch.is_tensor(img):
                    out["viewer_frame_on_device"] = True
            full = measure(view, (800, 800), 20, 60.0, 1.0, 20.0)
            dynamic = measure(view, (800, 800), 30, 60.0, None, 20.0)
            out.update({f"viewer_800_{mode}_full_fps": full["fps"], f"viewer_800_{mode}_dynamic_fps": dynamic["fps"],
                        f"viewer_800_{mode}_dynamic_scale": dynamic["scale"]})
            print(f"viewer {mode}: full {full['fps']:.1f} fps, dynamic {dynamic['fps']:.1f} fps at "
                  f"{dynamic['scale']:.2f}", flush=True)
    finally:
        if before is None:
            os.environ.pop("FIELDFIT_MARCH", None)
        else:
            os.environ["FIELDFIT_MARCH"] = before
    if auto is not None:  # the viewer as users get it: it times the marchers on its first frames, then keeps one
        view.choice = auto
        full = measure(view, (800, 800), 30, 60.0, 1.0, 20.0)
        dynamic = measure(view, (800, 800), 60, 60.0, None, 20.0)
        out.update({"viewer_800_auto_full_fps": full["fps"], "viewer_800_auto_dynamic_fps": dynamic["fps"],
                    "viewer_800_auto_dynamic_scale": dynamic["scale"],
                    "viewer_auto_choices": {str(k): m for k, (m, _) in auto.chosen.items()}})
        print(f"viewer auto: full {full['fps']:.1f} fps, dynamic {dynamic['fps']:.1f} fps; chose {auto.chosen}",
              flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a finished rbf lego run (else one is fitted)")
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--grid", help="grid of the fit (default: the device's; the fused kernel draws hash and triplane)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="400,800")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-viewer", action="store_true")
    ap.add_argument("--viewer-modes", default=",".join(MODES), help="marchers the viewer is measured with")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = a.run or _fit(a.budget, a.device, Path(tmp), a.grid)
        row = {"run": str(a.run) if a.run else f"lego_400, {a.budget:g} s fit, grid {a.grid or 'default'}",
               "fit_s": time.perf_counter() - t0}
        row.update(frames(run, a.device, sizes, a.reps))
        if not a.no_viewer:
            try:
                ok = [m for m in a.viewer_modes.split(",") if f"frame_{max(sizes)}_ms_{m}" in row]  # those that drew
                row.update(viewer(run, a.device, ok))
            except Exception as exc:  # noqa: BLE001 - the frame times above are worth keeping
                row["viewer_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(row, indent=1))
    write(f"frame_{a.device.split(':')[0]}{'_' + a.grid if a.grid else ''}", row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
