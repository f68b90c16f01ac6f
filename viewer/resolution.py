"""Dynamic resolution: pick the render scale of the next frame from the times of the last ones.

While the camera moves, the scale s (fraction of the window's width and height) follows
multiplicative feedback towards the frame budget 1 / target_fps: a frame's cost is close to
a + b s^2 (fixed work plus work per pixel), so s <- s * (budget / t)^(1/2), damped and
clamped to [min_scale, 1], converges to the largest scale that holds the frame rate whatever
a and b are. Scales are snapped to multiples of ``quantum`` so small timing noise does not
change the picture. When the camera has been still for ``settle_s``, one frame at scale 1
refines the picture (``refine``); the moving scale is kept for the next move. A pinned scale
overrides all of this.
"""

import math


class ResolutionController:
    """Pure logic: no clocks inside. The caller passes frame times and whether the view moves."""

    def __init__(self, target_fps: float = 30.0, min_scale: float = 0.1, pinned: float | None = None,
                 settle_s: float = 0.2, quantum: float = 1 / 32, damping: float = 0.5):
        if target_fps <= 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        self.target_fps, self.min_scale, self.settle_s = float(target_fps), float(min_scale), float(settle_s)
        self.quantum, self.damping = float(quantum), float(damping)
        self.pinned = None if pinned is None else self._clamp(pinned)
        self.moving_scale = 1.0  # the scale used while moving, adapted by record()
        self.still_s = math.inf  # seconds since the camera last moved
        self.refined = False  # a full-scale frame has been drawn since the last move

    @property
    def budget(self) -> float:
        return 1.0 / self.target_fps

    def _clamp(self, s: float) -> float:
        return float(min(1.0, max(self.min_scale, s)))

    def pin(self, scale: float | None) -> None:
        """Pin the scale (None unpins)."""
        self.pinned = None if scale is None else self._clamp(scale)

    def moved(self) -> None:
        """The camera (or anything on screen) changed because of user input."""
        self.still_s, self.refined = 0.0, False

    def tick(self, dt: float) -> None:
        """``dt`` seconds passed without movement."""
        self.still_s += float(dt)

    def settled(self) -> bool:
        return self.still_s >= self.settle_s

    def scale(self) -> float:
        """The scale of the next frame."""
        if self.pinned is not None:
            return self.pinned
        return 1.0 if self.settled() else self.moving_scale

    def needs_frame(self) -> bool:
        """Whether a frame must be drawn although nothing changed: the refinement when settled."""
        return self.pinned is None and self.settled() and not self.refined

    def record(self, seconds: float, scale: float) -> None:
        """A frame at ``scale`` took ``seconds``; adapt the moving scale (frames while moving only)."""
        if scale >= 1.0 and self.settled():
            self.refined = True
            return
        if self.pinned is not None or seconds <= 0:
            return
        want = scale * math.sqrt(self.budget / float(seconds))
        s = math.exp((1 - self.damping) * math.log(self.moving_scale) + self.damping * math.log(self._clamp(want)))
        s = round(s / self.quantum) * self.quantum
        self.moving_scale = self._clamp(s)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Render size for ``scale`` of a width x height window (at least 1 x 1)."""
    return max(1, round(width * scale)), max(1, round(height * scale))
