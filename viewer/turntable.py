"""``fieldfit render RUN --path orbit`` for shape runs: a turntable of what the viewer draws.

The camera starts at the view's home (the reset camera of ``fieldfit view``) and turns once about
the up axis over the frames; each frame is the view's first mode (the shaded surface for SDF runs,
the coloured convexes for bsp runs) composed as the window would show it (no overlay).
"""

import math
from pathlib import Path

from fieldfit.errors import InputError


def turntable(run, out: Path, frames: int = 60, size: tuple[int, int] = (512, 512), device="cpu"):
    """Write ``frames`` views of ``run`` orbiting once to ``out`` (.mp4 / .gif / a folder). Returns (path, note)."""
    from fieldfit.methods.radiance_paths import write_video
    from fieldfit.trainer import counted

    from .overlay import compose
    from .registry import open_view

    if frames < 1:
        raise InputError(f"--frames {frames}", "must be >= 1", "e.g. --frames 60")
    view = open_view(run, device)
    if view.planar:
        raise InputError(run.path, "an image run has no turntable", "look at reconstruction.png or fieldfit view RUN")
    w, h = size
    camera = view.home(w / h)
    pictures = []
    for _ in counted(range(frames), "turntable frames"):
        pictures.append(compose(view.render(camera, w, h, view.modes[0]), w, h))
        camera.orbit(2.0 * math.pi / frames, 0.0)
    return write_video(pictures, Path(out))
