"""A scene that is part of another: some of its views inside a smaller box (one block of ``fieldfit blocks``).

A folder holding ``block.json`` is such a scene. The file names the scene it is cut from and what it keeps:

    {"fieldfit_block": 1,
     "scene": "/abs/path/of/the/capture" or a built-in name ("street"),
     "test_every": 8,                    # the split rule the parent scene was loaded with
     "train": [3, 5, ...], "test": [0, 8, ...],   # indices into the parent scene's frames
     "aabb": [[xmin, ymin, zmin], [xmax, ymax, zmax]], "near": 0.05, "far": 10.0}

Loading it loads the parent scene (same ``downscale``), keeps those frames (train first, then test, each in the
order given) and replaces the box, near and far; everything else (kind, alpha, background, points inside the box)
is the parent's. No image is copied: the frames point at the parent's files.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

from ._io import load_json
from .base import Scene

BLOCK_FILE = "block.json"
BLOCK_KEY = "fieldfit_block"


def write_block_scene(folder, scene: str, train: list[int], test: list[int], aabb, near: float, far: float,
                      test_every: int = 8) -> Path:
    """Write ``folder/block.json`` (atomically) and return the folder."""
    from fieldfit.runs import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / BLOCK_FILE, {BLOCK_KEY: 1, "scene": str(scene), "test_every": int(test_every),
                                     "train": [int(i) for i in train], "test": [int(i) for i in test],
                                     "aabb": np.asarray(aabb, np.float64).reshape(2, 3).tolist(),
                                     "near": float(near), "far": float(far)})
    return folder


def _parent_path(name: str, source: Path) -> Path:
    from .builtin import BUILTIN, radiance_scene_dir

    if not os.path.isabs(name) and name in BUILTIN:
        if BUILTIN[name].task != "radiance":
            raise InputError(source, f"scene {name!r} is not a posed-image scene", "name a radiance scene")
        return radiance_scene_dir(name)
    path = Path(name)
    if not path.exists():
        raise InputError(source, f"the scene it is cut from is not there any more: {name}",
                         "restore that scene folder (the block reads its cameras and images)")
    return path


def load_block_scene(path, load_scene, downscale: int = 1) -> Scene:
    """The Scene of a block folder (or its block.json), its parent read by ``load_scene`` (``detect.load_scene``);
    InputError naming block.json when it is malformed."""
    path = Path(path)
    source = path if path.name == BLOCK_FILE else path / BLOCK_FILE
    meta = load_json(source)
    try:
        if meta.get(BLOCK_KEY) != 1:
            raise ValueError(f"'{BLOCK_KEY}' must be 1")
        train, test = ([int(i) for i in meta[k]] for k in ("train", "test"))
        aabb = np.asarray(meta["aabb"], np.float64).reshape(2, 3)
        near, far, test_every = float(meta["near"]), float(meta["far"]), int(meta.get("test_every", 8))
        name = str(meta["scene"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(source, f"not a block description ({type(e).__name__}: {e})",
                         "write it again with fieldfit blocks") from None
    if not (np.all(np.isfinite(aabb)) and np.all(aabb[1] > aabb[0]) and 0 <= near < far):
        raise InputError(source, f"bounds out of order (aabb {aabb.tolist()}, near {near:g}, far {far:g})",
                         "write it again with fieldfit blocks")
    parent = load_scene(_parent_path(name, source), downscale=downscale, test_every=test_every)
    keep = train + test
    bad = [i for i in keep if not 0 <= i < len(parent.frames)]
    if bad or not train:
        raise InputError(source, f"frames {bad[:5]} are not in the scene's {len(parent.frames)}" if bad else
                         "no training frames", "write it again with fieldfit blocks")
    return subset(parent, keep, len(train), aabb, near, far, source)


def subset(parent: Scene, keep: list[int], n_train: int, aabb, near: float, far: float, source=None) -> Scene:
    """The scene of ``parent``'s frames ``keep`` (the first ``n_train`` the train split, the rest test) inside
    ``aabb`` with ``near`` / ``far``; the parent's points inside the box stay."""
    points, colours = parent.points, parent.point_colors
    if points is not None:
        inside = np.all((points >= aabb[0]) & (points <= aabb[1]), axis=1)
        points = points[inside]
        colours = None if colours is None else colours[inside]
    frame_sources = [str(parent.frame_source(i)) for i in keep]
    meta = {**parent.metadata, "frame_sources": frame_sources, "parent": str(parent.root),
            "parent_frames": list(keep)}
    if source is not None:
        meta["source"] = str(source)
    bounds = parent.metadata.get("frame_bounds")
    if bounds is not None:  # per frame: the kept frames' own
        meta["frame_bounds"] = [bounds[i] for i in keep] if len(bounds) == len(parent.frames) else None
    return replace(parent, frames=[parent.frames[i] for i in keep],
                   splits={"train": list(range(n_train)), "test": list(range(n_train, len(keep)))},
                   aabb=np.asarray(aabb, np.float64), near=float(near), far=float(far), points=points,
                   point_colors=colours, metadata=meta)


def is_block_scene(path) -> bool:
    p = Path(path)
    if not (p / BLOCK_FILE).is_file():
        return False
    try:
        return json.loads((p / BLOCK_FILE).read_text()).get(BLOCK_KEY) == 1
    except (OSError, ValueError, AttributeError):
        return True  # a damaged block.json is still a block folder: the loader names the problem


__all__ = ["BLOCK_FILE", "is_block_scene", "load_block_scene", "subset", "write_block_scene"]
