"""The browser viewer's frame rate: pictures the server pushes to a headless Chromium tab per second.

Serves RUN with ``fieldfit.viewer.web.WebViewer`` (dynamic resolution at ``--fps``), opens it in headless Chromium
(``fieldfit.viewer.chromium``) with an ``--size`` viewport, waits for the first picture, then
1. holds the camera still for ``--seconds``: after the full-resolution picture nothing should be pushed;
2. moves it: a driver thread orbits the tab's camera through viser's client camera API (as the browser's own
   mouse orbit would: the browser applies the pose and reports it back), 60 updates per second, while the main
   thread draws; after ``--warmup`` seconds (the resolution controller finds its scale) it counts, for
   ``--seconds``, the pictures pushed, their render scale and their times.
Writes bench/results/web_fps_<date>.json (the machine from bench/_common.py). Needs viser and chromium.

    python bench/web_fps.py RUN [--size 800x800] [--seconds 10] [--warmup 2] [--fps 30] [--device auto] [--out FILE]
"""

import argparse
import math
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write  # noqa: E402 - bench scripts import their neighbour by path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_picture(viewer, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        viewer.pump(0.05)
        tabs = list(viewer.clients.values())
        if tabs and tabs[0].frames and tabs[0].session.res.refined and not tabs[0].session.needs_frame():
            return tabs[0]
    raise SystemExit(f"no picture in the browser after {timeout:.0f} s")


def phase(viewer, tab, seconds: float) -> dict:
    """Draw for ``seconds``; what was pushed to ``tab``."""
    frames, scales, render, send = tab.frames, [], [], []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        before = tab.frames
        viewer.pump(0.01)
        if tab.frames > before:
            scales.append(tab.scale)
            render.append(tab.session.last_seconds)
            send.append(tab.send_seconds)
    elapsed = time.perf_counter() - start
    n = tab.frames - frames
    out = {"seconds": round(elapsed, 2), "frames": n, "fps": round(n / elapsed, 2)}
    if n:
        out.update(scale_mean=round(float(np.mean(scales)), 3), scale_last=scales[-1],
                   render_ms_mean=round(1000 * float(np.mean(render)), 1),
                   send_ms_mean=round(1000 * float(np.mean(send)), 1))
    return out


class Orbiter(threading.Thread):
    """Turns the tab's browser camera about its look-at point, ``rate`` updates per second, until stopped."""

    def __init__(self, handle, degrees_per_s: float = 30.0, rate: float = 60.0):
        super().__init__(daemon=True)
        self.handle, self.speed, self.rate = handle, math.radians(degrees_per_s), rate
        self.stop = threading.Event()

    def run(self) -> None:
        cam = self.handle.camera
        pivot, up = np.array(cam.look_at), np.array(cam.up_direction)
        up = up / np.linalg.norm(up)
        offset = np.array(cam.position) - pivot
        start = time.perf_counter()
        while not self.stop.wait(1.0 / self.rate):
            a = self.speed * (time.perf_counter() - start)
            k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
            turn = np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)  # about the up axis
            with self.handle.atomic():
                cam.position = pivot + turn @ offset
                cam.look_at = pivot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--size", default="800x800", help="the browser's viewport WxH")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of movement before the count")
    p.add_argument("--fps", type=float, default=30.0, help="target frame rate while moving")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="JSON path (default bench/results/web_fps_<date>.json)")
    a = p.parse_args(argv)
    from fieldfit.api import resolve_device
    from fieldfit.viewer.chromium import Chromium
    from fieldfit.viewer.registry import open_view
    from fieldfit.viewer.web import JPEG_QUALITY, WebViewer

    w, h = (int(v) for v in a.size.lower().split("x"))
    device = resolve_device(a.device)
    view = open_view(a.run, device)
    viewer = WebViewer(view, port=free_port(), fps=a.fps)
    try:
        with Chromium(w, h) as browser:
            browser.open(viewer.url)
            t = time.perf_counter()
            tab = first_picture(viewer)
            first_s = time.perf_counter() - t
            still = phase(viewer, tab, a.seconds)
            orbiter = Orbiter(tab.handle)
            orbiter.start()
            warmup = phase(viewer, tab, a.warmup)
            moving = phase(viewer, tab, a.seconds)
            orbiter.stop.set()
            orbiter.join()
    finally:
        viewer.stop()
    model = view.model
    payload = {"run": str(Path(a.run).resolve()), "method": model.method, "task": model.task, "device": str(device),
               "viewport": [w, h], "canvas": list(tab.size), "target_fps": a.fps, "jpeg_quality": JPEG_QUALITY,
               "first_picture_s": round(first_s, 2), "still": still, "warmup": warmup, "moving": moving}
    print(f"still: {still['frames']} pictures in {still['seconds']} s; moving: {moving['fps']} pictures/s"
          f" at scale {moving.get('scale_mean', '-')}")
    name = f"web_fps_{time.strftime('%Y-%m-%d')}"
    write(name, payload, Path(a.out) if a.out else RESULTS / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
