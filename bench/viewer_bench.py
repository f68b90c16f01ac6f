"""Viewer frame rate while the camera moves, at a fixed window size (default 200x200).

Draws the window's picture (view render + composition + overlay, no GL upload) of the run's view
(``fieldfit.viewer.registry.open_view``) through ``fieldfit.viewer.session.Session`` while orbiting the
camera a little every frame, twice in the same process: with the scale pinned at 1 (every frame at full
resolution: the baseline), and with dynamic resolution at the target frame rate (the fps and the render
scale it settles at).
Writes bench/results/viewer_<method>-<task>_<device>.json with the machine description.

    python bench/viewer_bench.py RUN [--size 200x200] [--frames 40] [--max-seconds 60] [--fps 30] [--device auto]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: str) -> dict:
    info = dict(torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
                device=device, cpu_threads=torch.get_num_threads(), cpus=os.cpu_count())
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(0)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    try:
        info["load_average"] = os.getloadavg()[0]  # shared machines: context for the numbers
    except OSError:
        pass
    return info


def measure(view, size, frames: int, fps: float, pinned, max_seconds: float) -> dict:
    from fieldfit.viewer.session import Session

    w, h = size
    s = Session(view, fps=fps, scale=pinned, overlay=True, aspect=w / h)
    s.drag(5, 0, h)
    s.frame(w, h)  # warm-up (lazy imports, allocator)
    times, scales, start = [], [], time.perf_counter()
    for k in range(frames):
        if k >= 4 and time.perf_counter() - start > max_seconds:  # slow views: fewer frames
            break
        s.drag(4, 1 if k % 2 else -1, h)  # moving: orbit (pan for 2D views) a few pixels per frame
        t = time.perf_counter()
        s.frame(w, h)
        if view.__class__.__name__ == "RadianceView" and torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        scales.append(s.res.scale() if pinned is None else pinned)
    n = len(times)
    tail = times[n // 2:]  # after the controller has settled
    return {"fps": len(tail) / sum(tail), "ms_per_frame": 1000 * sum(tail) / len(tail),
            "scale": sum(scales[n // 2:]) / len(tail), "frames": n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--size", default="200x200")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="per measurement (at least 4 frames)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from fieldfit.api import open_run, resolve_device
    from fieldfit.viewer.app import parse_size
    from fieldfit.viewer.registry import open_view

    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    run = open_run(a.run)
    view = open_view(run, device)
    size = parse_size(a.size)
    full = measure(view, size, a.frames, a.fps, 1.0, a.max_seconds)
    dynamic = measure(view, size, a.frames, a.fps, None, a.max_seconds)
    cfg = run.config()
    key = f"{cfg.get('method', '?')}/{cfg.get('task', '?')}"  # method/task: the results file's name
    result = {"machine": machine(device), "run": str(run.path), "view": key, "size": list(size),
              "target_fps": a.fps, "full_resolution": full, "dynamic": dynamic,
              "note": "moving camera; window picture = render + composition + overlay (no GL upload)"}
    out = a.out or RESULTS / f"viewer_{key.replace('/', '-')}_{device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{key} {size[0]}x{size[1]} on {device}: full resolution {full['fps']:.1f} fps; "
          f"dynamic {dynamic['fps']:.1f} fps at scale {dynamic['scale']:.2f} (target {a.fps:g}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
