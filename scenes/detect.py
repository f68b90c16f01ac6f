"""Pick the loader for a folder by the files in it."""

from __future__ import annotations

from pathlib import Path

from fieldfit.errors import InputError

from ._io import list_dir

LOOKED_FOR = ("transforms_train.json (Blender)", "transforms.json (nerfstudio / instant-ngp)",
              "poses_bounds.npy (LLFF)", "sparse/0 or cameras.bin/.txt (COLMAP)",
              "cameras_sphere.npz or cameras.npz (DTU / IDR)", "block.json (a block of fieldfit blocks)")


def capture_format(path) -> str | None:
    """The format of a capture folder, checked in order: "block" (block.json: ``scenes.subset``), "blender"
    (transforms_train.json), "nerfstudio" (transforms.json), "llff" (poses_bounds.npy), "colmap" (a model in
    sparse/0, sparse/, or the folder itself), "dtu" (cameras_sphere.npz / cameras.npz); None when it is none of
    them. A folder with both transforms.json and sparse/ is nerfstudio, one with poses_bounds.npy and sparse/
    (mip-NeRF 360's) LLFF: point at its sparse/0 to read it as COLMAP."""
    from .colmap import find_sparse
    from .dtu import find_cameras
    from .subset import is_block_scene

    p = Path(path)
    if not p.is_dir():
        return None
    if is_block_scene(p):
        return "block"
    for marker, kind in (("transforms_train.json", "blender"), ("transforms.json", "nerfstudio"),
                         ("poses_bounds.npy", "llff")):
        if (p / marker).is_file():
            return kind
    if find_sparse(p) is not None:
        return "colmap"
    if find_cameras(p) is not None:
        return "dtu"
    return None


def load_scene(path, downscale: int = 1, test_every: int = 8, **kw):
    """Load a capture folder (or its transforms*.json / poses_bounds.npy / cameras*.npz) into a Scene.

    The loader follows ``capture_format``: load_blender (test_every unused), load_nerfstudio, load_llff,
    load_colmap or load_dtu. ``kw`` goes to the loader.
    """
    from .blender import load_blender
    from .colmap import load_colmap
    from .dtu import CAMERA_FILES, load_dtu
    from .llff import load_llff
    from .nerfstudio import load_nerfstudio

    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder",
                         "give a scene folder (Blender, nerfstudio/instant-ngp, LLFF, COLMAP or DTU)")
    if p.is_file():
        if p.name.startswith("transforms_") and p.suffix == ".json":
            p = p.parent
        elif p.name == "transforms.json":
            return load_nerfstudio(p, downscale=downscale, test_every=test_every, **kw)
        elif p.name == "poses_bounds.npy":
            p = p.parent
        elif p.name in CAMERA_FILES:
            return load_dtu(p, downscale=downscale, test_every=test_every, **kw)
        else:
            raise InputError(p, "not a scene file", f"give the scene folder; looked for {', '.join(LOOKED_FOR)}")
    kind = capture_format(p)
    if kind == "block":
        from .subset import load_block_scene

        return load_block_scene(p, load_scene, downscale=downscale)
    if kind == "blender":
        return load_blender(p, downscale=downscale, **kw)
    loaders = {"nerfstudio": load_nerfstudio, "llff": load_llff, "colmap": load_colmap, "dtu": load_dtu}
    if kind in loaders:
        return loaders[kind](p, downscale=downscale, test_every=test_every, **kw)
    raise InputError(p, f"no capture found: looked for {', '.join(LOOKED_FOR)}; folder contains: {list_dir(p)}",
                     "point at a scene folder")
