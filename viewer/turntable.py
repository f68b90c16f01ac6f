"""``fieldfit render RUN --path orbit`` for shape runs: a turntable of what the viewer draws.

The camera starts at the view's home (the reset camera of ``fieldfit view``) and turns once about
the up axis over the frames; each frame is the view's first mode (the shaded surface for SDF runs,
the coloured convexes for bsp runs) composed as the window would show it (no overlay).
"""

import math
from pathlib import Path

from fieldfit.errors import InputError


def turntable(model, out: Path, frames: int = 60, size: tuple[int, int] = (512, 512)):
    """Write ``frames`` views of a loaded run (``fieldfit.load``) orbiting once to ``out`` (.mp4 / .gif / a
    folder, ``render.video.write_video``). Returns (path written, note)."""
    from fieldfit.render.video import write_video
    from fieldfit.trainer import counted

    from .overlay import compose
    from .registry import view_of

    if frames < 1:
        raise InputError(f"--frames {frames}", "must be >= 1", "e.g. --frames 60")
    view = view_of(model)
    if view.planar:
        raise InputError(model.run.path, "an image run has no turntable",
                         "look at reconstruction.png or fieldfit view RUN")
    w, h = size
    orbit = view.home(w / h)
    pictures = []
    for _ in counted(range(frames), "turntable frames"):
        pictures.append(compose(view.render(orbit.at(w, h), view.modes[0]), w, h))
        orbit.orbit(2.0 * math.pi / frames, 0.0)
    return write_video(pictures, Path(out))
