"""What the viewer shows and how input changes it, without any window (testable, headless).

A Session holds a view, the camera controls (an ``Orbit``: a render Camera, pivot and up), the
resolution controller, the mode and the overlay switches. ``frame(width, height)`` renders and
composes the window's picture; the window (viewer/window.py) only forwards input and shows pictures,
and ``--screenshot`` calls ``frame`` once with the camera at rest (so at full or pinned scale).
"""

import time

import numpy as np

from .camera import Controls
from .overlay import compose
from .resolution import ResolutionController, scaled_size

HELP = [
    "mouse: left drag orbit (2D: pan), right/middle or shift+left drag pan, wheel zoom",
    "W A S D fly (2D: W/S zoom), Q E down / up",
    "[ ]  previous / next scene camera      R  reset camera",
    "M  next mode, 1-4 pick a mode          O  overlay on/off",
    "F  pin / unpin the render scale        - =  lower / raise the pinned scale",
    "P  pause / resume training (fit --view)   H  this help      Esc  quit",
]


class Session:
    def __init__(self, view, mode: str = "", fps: float = 30.0, scale: float | None = None,
                 overlay: bool = True, aspect: float = 1.0):
        self.view = view
        self.mode = mode or view.modes[0]
        self.controls = Controls(view.home(aspect), view.presets(), planar=view.planar)
        self.res = ResolutionController(target_fps=fps, pinned=scale)
        self.overlay, self.help, self.paused = overlay, False, False
        self.live = False  # training while viewing: P pauses, the status line says so
        self.info = ""  # extra status text (training step)
        self.dirty = True  # the picture is out of date
        self.fps = 0.0
        self.last_start = None
        self.last_seconds = 0.0

    @property
    def camera(self):
        """The Orbit being moved (``camera.at(width, height)``: the render Camera of a frame)."""
        return self.controls.camera

    # -- input --------------------------------------------------------------------
    def moved(self) -> None:
        self.dirty = True
        self.res.moved()

    def drag(self, dx: float, dy: float, height: int, pan: bool = False) -> None:
        self.controls.drag(dx, dy, height, pan)
        self.moved()

    def scroll(self, clicks: float) -> None:
        self.controls.scroll(clicks)
        self.moved()

    def press(self, key: str) -> None:
        """A named key went down ("w", "[", "m", "1", "-", ...)."""
        if self.controls.press(key) or key in ("w", "a", "s", "d", "q", "e"):
            self.moved()
        elif key == "m":
            self.mode = self.view.modes[(self.view.modes.index(self.mode) + 1) % len(self.view.modes)]
        elif key.isdigit() and 1 <= int(key) <= len(self.view.modes):
            self.mode = self.view.modes[int(key) - 1]
        elif key == "h":
            self.help = not self.help
        elif key == "o":
            self.overlay = not self.overlay
        elif key == "f":
            self.res.pin(None if self.res.pinned is not None else self.res.moving_scale)
        elif key in ("-", "="):
            current = self.res.pinned if self.res.pinned is not None else self.res.scale()
            self.res.pin(current + (0.125 if key == "=" else -0.125))
        elif key == "p" and self.live:
            self.paused = not self.paused
        else:
            return
        self.dirty = True

    def release(self, key: str) -> None:
        self.controls.release(key)

    def advance(self, dt: float) -> None:
        """``dt`` seconds passed: fly with the held keys, let the resolution settle."""
        if self.controls.flying():
            self.controls.advance(dt)
            self.moved()
        else:
            self.res.tick(dt)

    def needs_frame(self) -> bool:
        return self.dirty or self.controls.flying() or self.res.needs_frame()

    # -- pictures -------------------------------------------------------------------
    def status(self, scale: float) -> list[str]:
        pin = " (pinned)" if self.res.pinned is not None else ""
        fps = f"{self.fps:5.1f}" if self.fps > 0 else "    -"
        line = f"{fps} fps | scale {scale:.2f}{pin} | mode {self.mode}"
        note = getattr(self.view, "status", None)  # e.g. the radiance view's marcher
        note = note() if note is not None else ""
        if note:
            line += f" | {note}"
        if self.live:
            state = "training PAUSED (P)" if self.paused else "training"
            line += f" | {state} {self.info}".rstrip()
        return [line, "H: help"] if not self.help else [line]

    def frame(self, width: int, height: int) -> np.ndarray:
        """Render at the controller's scale and compose the window's picture (uint8 [H,W,3])."""
        start = time.perf_counter()
        if self.last_start is not None:
            rate = 1.0 / max(start - self.last_start, 1e-6)
            self.fps = rate if self.fps == 0 else 0.8 * self.fps + 0.2 * rate
        self.last_start = start
        scale = self.res.scale()
        w, h = scaled_size(width, height, scale)
        img = self.view.render(self.camera.at(w, h), self.mode)
        out = compose(img, width, height, self.status(scale) if self.overlay else [],
                      HELP if (self.help and self.overlay) else [])
        self.last_seconds = time.perf_counter() - start
        self.res.record(self.last_seconds, scale)
        self.dirty = False
        return out
