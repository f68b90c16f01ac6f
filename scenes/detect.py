"""Pick the loader for a folder by the files in it; bounds from camera frusta."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

from ._io import list_dir

LOOKED_FOR = ("transforms_train.json (Blender)", "transforms.json (nerfstudio / instant-ngp)",
              "poses_bounds.npy (LLFF)")


def load_scene(path, downscale: int = 1, test_every: int = 8, **kw):
    """Load a capture folder (or its transforms*.json / poses_bounds.npy) into a Scene.

    Checked in order: transforms_train.json -> load_blender (test_every unused),
    transforms.json -> load_nerfstudio, poses_bounds.npy -> load_llff. ``kw`` goes to the loader.
    """
    from .blender import load_blender
    from .llff import load_llff
    from .nerfstudio import load_nerfstudio

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder", "give a scene folder (Blender, nerfstudio/instant-ngp or LLFF)")
    if p.is_file():
        if p.name.startswith("transforms_") and p.suffix == ".json":
            p = p.parent
        elif p.name == "transforms.json":
            return load_nerfstudio(p, downscale=downscale, test_every=test_every, **kw)
        elif p.name == "poses_bounds.npy":
            p = p.parent
        else:
            raise InputError(p, "not a scene file", f"give the scene folder; looked for {', '.join(LOOKED_FOR)}")
    if (p / "transforms_train.json").is_file():
        return load_blender(p, downscale=downscale, **kw)
    if (p / "transforms.json").is_file():
        return load_nerfstudio(p, downscale=downscale, test_every=test_every, **kw)
    if (p / "poses_bounds.npy").is_file():
        return load_llff(p, downscale=downscale, test_every=test_every, **kw)
    raise InputError(p, f"no capture found: looked for {', '.join(LOOKED_FOR)}; folder contains: {list_dir(p)}",
                     "point at a scene folder")


def bounds_from_frusta(frames, near: float, far: float) -> np.ndarray:
    """Axis-aligned box [2, 3] enclosing every camera's view frustum between depths near and far.

    Depth is measured along the camera's viewing axis (-z); the box of a frustum is the box of its
    8 corners (image corners at near and far), so the result is exact.
    """
    if not frames:
        raise ValueError("bounds_from_frusta needs at least one frame")
    if not (0 <= near < far):
        raise ValueError(f"need 0 <= near < far, got near={near}, far={far}")
    pts = []
    for f in frames:
        u = np.array([0.0, f.width, 0.0, f.width])
        v = np.array([0.0, 0.0, f.height, f.height])
        d = np.stack([(u - f.cx) / f.fx, -(v - f.cy) / f.fy, -np.ones(4)], axis=1)  # depth-1 points
        r, t = f.c2w[:, :3], f.c2w[:, 3]
        for z in (near, far):
            pts.append((d * z) @ r.T + t)
    pts = np.concatenate(pts)
    return np.stack([pts.min(axis=0), pts.max(axis=0)])
