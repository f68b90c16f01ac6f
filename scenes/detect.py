"""Pick the loader for a folder by the files in it."""

from __future__ import annotations

from pathlib import Path

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
