"""``fieldfit render RUN --path orbit`` for shape runs: a turntable of what the viewer draws.

The camera starts at the view's home (the reset camera of ``fieldfit view``) and turns once about
the up axis over the frames (or follows the Cameras given: ``--camera-path``); each frame is the view's
first mode (the shaded surface for SDF runs, the coloured convexes for bsp runs) composed as the window
would show it (no overlay). ``kind`` normal: the view's normals mode (world-frame normals as n/2 + 1/2 on
the view's background); depth: the view's camera depth of the mesh on one range for the whole video
(``render.passes``).
"""

import math
from pathlib import Path

from fieldfit.errors import InputError


def turntable(model, out: Path, frames: int = 60, size: tuple[int, int] = (512, 512), *, cameras: list | None = None,
              fps: float = 24.0, kind: str = "rgb"):
    """Write ``frames`` views of a loaded run (``fieldfit.load``) orbiting once (or the ``cameras``) to ``out``
    (.mp4 / .gif / a folder, ``render.video.write_video``). Returns (path written, note)."""
    from fieldfit.render.passes import depth_frames
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
    if cameras is None:
        w, h = size
        orbit = view.home(w / h)
        cameras = []
        for _ in range(frames):
            cameras.append(orbit.at(w, h))
            orbit.orbit(2.0 * math.pi / frames, 0.0)
    pictures, note = [], ""
    for cam in counted(cameras, "turntable frames"):
        if kind == "depth":
            pictures.append(view.depth(cam))
        else:
            mode = "normals" if kind == "normal" else view.modes[0]
            pictures.append(compose(view.render(cam, mode), cam.width, cam.height))
    if kind == "depth":
        pictures, (lo, hi) = depth_frames(pictures)
        note = f"depth colours: turbo from {lo:.4g} (blue) to {hi:.4g} (red), black: no surface"
    elif kind == "normal":
        note = "normals of the mesh"
    written, written_note = write_video(pictures, Path(out), fps)
    return written, "; ".join(n for n in (note, written_note) if n)
