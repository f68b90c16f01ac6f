"""``fieldfit view RUN``: the viewer window, one picture of it with ``--screenshot``, or a browser viewer (``--web``).

    fieldfit view RUN [--screenshot out.png] [--camera test:3|train:0|front] [--size WxH]
                      [--mode MODE] [--fps 30] [--scale S] [--overlay auto|on|off]
    fieldfit view RUN --web [--port 7007] [--host 127.0.0.1] [--camera test:3] [--mode MODE] ...

The screenshot rule: ``--screenshot`` draws the window's picture with the camera at rest,
i.e. at full resolution (or at ``--scale`` when pinned), through the same view and composer
as the window, at ``--size`` (default: the ``--camera``'s image size, else the view's size).
The overlay (fps, scale, mode) is ON in the window and OFF in screenshots unless
``--overlay on|off`` says otherwise, so a screenshot of a scene camera compares with the
run's renders (in the browser it is off too: its panel shows the same readouts). ``--web`` serves the viewer to
browsers (viewer/web.py) on 127.0.0.1 unless ``--host`` says otherwise, each tab at ``--camera`` if given. The window
(and the browser viewer) reloads the weights when the run's checkpoint changes (a fit
that is still running). Testing aids: ``--frames N`` closes the window after N frames, ``--grab``
saves what the window showed last (read back from OpenGL), ``--print-camera`` prints the
final camera pose as JSON.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

MIN_DEFAULT_SIDE = 512  # default windows of tiny scenes are enlarged by an integer factor
MAX_SIDE = 8192  # --size: the largest width or height (pixels)


def parser() -> argparse.ArgumentParser:
    from fieldfit.args import Parser  # errors in one line, as every fieldfit command

    p = Parser(prog="fieldfit view", description="Look at a run in a window (or --screenshot, or --web: a browser).")
    p.add_argument("run", help="run folder")
    p.add_argument("--web", action="store_true", help="serve the viewer to a browser (e.g. on a remote machine)")
    p.add_argument("--port", type=int, help="--web: the port (default 7007)")
    p.add_argument("--host", help="--web: the address to listen on (default 127.0.0.1: reach it through ssh -L)")
    p.add_argument("--screenshot", metavar="PNG", help="write the window's picture to PNG without opening a window")
    p.add_argument("--camera", help="start at a scene camera: test:K, train:K (radiance) or front/top/... (shapes)")
    p.add_argument("--size", help=f"window / screenshot size WxH (each side 1..{MAX_SIDE})")
    p.add_argument("--mode", default="", help="render mode (default: the view's first)")
    p.add_argument("--fps", type=float, default=30.0, help="target frame rate while moving")
    p.add_argument("--scale", type=float, help="pin the render scale (1.0: always full resolution)")
    p.add_argument("--overlay", choices=("auto", "on", "off"), default="auto",
                   help="status text: auto = on in the window, off in screenshots and the browser")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    p.add_argument("--grab", help=argparse.SUPPRESS)
    p.add_argument("--print-camera", action="store_true", help=argparse.SUPPRESS)
    return p


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {text}", "expected WIDTHxHEIGHT", "e.g. --size 800x600") from None
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise InputError(f"--size {text}", f"each side must be between 1 and {MAX_SIDE} pixels", "e.g. --size 800x600")
    return w, h


def check_numbers(args) -> None:
    """--fps, --scale and --threads in range, before the run is loaded (InputError naming the value)."""
    if not (math.isfinite(args.fps) and args.fps > 0):
        raise InputError(f"--fps {args.fps:g}", "must be a finite number > 0", "e.g. --fps 30")
    if args.scale is not None and not (math.isfinite(args.scale) and 0 < args.scale <= 1):
        raise InputError(f"--scale {args.scale:g}", "must be in (0, 1] (1: full resolution)", "e.g. --scale 0.5")
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise InputError(f"--threads {args.threads}", "must be between 1 and 1024", "e.g. --threads 4")
    if args.size:
        parse_size(args.size)
    check_web(args)


def check_web(args) -> None:
    """--web's options: --port and --host only with it (then their defaults filled in), the window's not."""
    from .web_net import DEFAULT_HOST, DEFAULT_PORT

    if not args.web:
        for flag, given in (("--port", args.port), ("--host", args.host)):
            if given is not None:
                raise InputError(flag, "only goes with --web", f"add --web, or drop {flag}")
        return
    for flag, given in (("--screenshot", args.screenshot), ("--size", args.size), ("--frames", args.frames),
                        ("--grab", args.grab), ("--print-camera", args.print_camera)):
        if given:
            raise InputError(flag, "does not go with --web (the browser sets the size)",
                             "drop it, or view in a window without --web")
    args.host = DEFAULT_HOST if args.host is None else args.host
    args.port = DEFAULT_PORT if args.port is None else args.port


def default_size(view) -> tuple[int, int]:
    w, h = getattr(view, "default_size", (800, 600))
    k = max(1, -(-MIN_DEFAULT_SIDE // max(w, h)))
    return w * k, h * k


def pick_preset(view, args):
    """--mode and --camera checked against the view; the --camera preset (None without --camera)."""
    if args.mode and args.mode not in view.modes:
        raise InputError(f"--mode {args.mode}", "not a mode of this run's view",
                         f"choose one of {', '.join(view.modes)}")
    if not args.camera:
        return None
    presets = {p.name: p for p in view.presets()}
    if args.camera not in presets:
        names = ", ".join(_ranges(list(presets))) or "none (this run has no scene cameras)"
        raise InputError(f"--camera {args.camera}", "no such camera", f"cameras: {names}")
    return presets[args.camera]


def make_session(view, args, screenshot: bool):
    """(Session, (width, height)) from the command line (its numbers checked: ``check_numbers``): camera, size,
    mode, overlay."""
    from .session import Session

    preset = pick_preset(view, args)
    overlay = {"on": True, "off": False}.get(args.overlay, not screenshot)
    size = parse_size(args.size) if args.size else None
    if preset is not None:
        size = size or preset.size
    size = size or default_size(view)
    session = Session(view, args.mode, args.fps, args.scale, overlay, aspect=size[0] / size[1])
    if preset is not None:
        session.controls.snap_named(preset.name)
    return session, size


def _ranges(names: list[str]) -> list[str]:
    """["test:0", "test:1", "test:2", "front"] -> ["test:0..2", "front"]."""
    groups: dict[str, list[str]] = {}
    for n in names:
        head, _, k = n.partition(":")
        groups.setdefault(head if k.isdigit() else n, []).append(k)
    return [f"{h}:{ks[0]}..{ks[-1]}" if ks[0].isdigit() else h for h, ks in groups.items()]


def write_png(path, img: np.ndarray) -> Path:
    import imageio.v3 as iio

    from fieldfit.runs import atomic_write

    return atomic_write(Path(path), lambda tmp: iio.imwrite(tmp, img, extension=".png"))


class Follow:
    """Viewing a fit that is still running: reload the weights when its checkpoint changes."""

    def __init__(self, run, every_s: float = 2.0):
        self.run, self.every_s, self.checked = run, every_s, time.perf_counter()
        self.mtime = self._mtime()

    def _mtime(self):
        p = self.run.path / "checkpoint.safetensors"
        return p.stat().st_mtime if p.is_file() else None

    def poll(self, view) -> bool:
        """Load the new weights into ``view`` when the checkpoint changed (checked every ``every_s``); True then."""
        if time.perf_counter() - self.checked < self.every_s:
            return False
        self.checked = time.perf_counter()
        mtime = self._mtime()
        if mtime is None or mtime == self.mtime:
            return False
        self.mtime = mtime
        view.sync(self.run.load_checkpoint("cpu")[0])
        return True

    def __call__(self, session) -> None:
        if self.poll(session.view):
            session.dirty = True


def run_window(session, window, max_frames: int | None = None, follow=None) -> np.ndarray | None:
    """The window loop: input, fly, draw when the picture is out of date. Returns the last picture."""
    last, drawn, shown = time.perf_counter(), 0, None
    while not window.closed():
        window.poll(0.0 if session.needs_frame() else 0.05)
        now = time.perf_counter()
        session.advance(now - last)
        last = now
        if follow is not None:
            follow(session)
        if session.needs_frame() or (max_frames and drawn < max_frames):
            shown = session.frame(*window.size)
            window.show(shown)
            drawn += 1
        if max_frames and drawn >= max_frames:
            break
    return shown


def main(argv) -> int:
    args = parser().parse_args(argv)
    check_numbers(args)
    from fieldfit.api import resolve_device

    from .registry import open_view

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.web:
        from .web_net import check_port, require_viser

        require_viser()
        check_port(args.host, args.port)  # before loading anything: fail fast
        return view_in_browser(args, open_view(args.run, resolve_device(args.device)))
    if not args.screenshot:
        from .window import check_display

        check_display()  # before loading anything: fail fast, with the --screenshot hint
    view = open_view(args.run, resolve_device(args.device))
    run = view.model.run
    session, (w, h) = make_session(view, args, screenshot=bool(args.screenshot))
    if args.screenshot:
        print(f"wrote {write_png(args.screenshot, session.frame(w, h))}")
    else:
        from .window import Window

        window = Window(session, w, h, title=f"fieldfit view {run.path.name}")
        window.capture = bool(args.grab)
        try:
            run_window(session, window, args.frames, follow=Follow(run))
            if args.grab and window.captured is not None:
                write_png(args.grab, window.captured)
        finally:
            window.close()
    if args.print_camera:
        print(json.dumps({"c2w": session.camera.c2w.tolist(), "distance": session.camera.distance}))
    return 0


def view_in_browser(args, view) -> int:
    """``--web``: serve the view until Ctrl-C (the port is freed then); new tabs start at ``--camera``."""
    from .web import WebViewer, serve
    from .web_net import access_line

    preset = pick_preset(view, args)
    viewer = WebViewer(view, args.host, args.port, mode=args.mode, fps=args.fps, scale=args.scale,
                       overlay=args.overlay == "on", camera=preset.name if preset else None)
    serve(viewer, follow=Follow(view.model.run), announce=lambda: print(access_line(args.host, args.port), flush=True))
    print("web viewer stopped", flush=True)
    return 0
