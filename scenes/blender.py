"""Blender / NeRF-synthetic scenes: ``transforms_{train,val,test}.json`` + RGBA PNGs.

Conventions (those of the NeRF-synthetic release):
* focal = 0.5 * W / tan(camera_angle_x / 2), fy = fx, principal point at the image centre
  (per-file ``fl_x``/``cx``/... are honoured when present);
* images are composited on a white background; alpha is kept (``Scene.alpha``);
* bounds: the objects lie within [-1.5, 1.5]^3 and the cameras sit ~4 units from the origin,
  so ``aabb = [-1.5, 1.5]^3``, ``near = 2``, ``far = 6`` (NeRF's values), unless transforms_train.json gives
  its own ``aabb`` ([[xmin, ymin, zmin], [xmax, ymax, zmax]]), ``near`` and ``far`` (fieldfit's built-in street);
* frames are the concatenation train, val, test (in that order); ``splits`` index into it.
  A missing ``transforms_test.json`` falls back to val as test (then to an empty test split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

from ._io import check_bounds, check_downscale, list_dir, load_json, number
from ._transforms import frames_from_transforms
from .base import Scene, scale_frames

BLENDER_AABB = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
BLENDER_NEAR = 2.0
BLENDER_FAR = 6.0
BUILTIN_KEY = "fieldfit_builtin"  # written by scenes.procedural; marks kind='builtin'


def load_blender(root, downscale: int = 1) -> Scene:
    root = Path(root)
    if root.is_file() and root.name.startswith("transforms_"):
        root = root.parent
    downscale = check_downscale(downscale, root)
    train_json = root / "transforms_train.json"
    if not train_json.is_file():
        raise InputError(root, "no transforms_train.json (not a Blender scene folder); "
                         f"folder contains: {list_dir(root)}",
                         "point at the folder holding transforms_{train,val,test}.json")
    frames = []
    splits: dict[str, list[int]] = {}
    alpha = False
    builtin = False
    sources = []
    for split in ("train", "val", "test"):
        js = root / f"transforms_{split}.json"
        if not js.is_file():
            continue
        meta = load_json(js)
        builtin = builtin or bool(meta.get(BUILTIN_KEY))
        fr, a = frames_from_transforms(meta, js, root, index_offset=len(frames), same_size=True)
        if not frames:
            alpha = a
        size = (frames[0].camera.width, frames[0].camera.height) if frames else None
        if frames and fr and (fr[0].camera.width, fr[0].camera.height) != size:
            raise InputError(js, f"images are {fr[0].camera.width}x{fr[0].camera.height} but the train images are "
                             f"{size[0]}x{size[1]}", "use one image size for all splits")
        splits[split] = list(range(len(frames), len(frames) + len(fr)))
        frames.extend(fr)
        sources.append(str(js))
    if not splits["train"]:
        raise InputError(train_json, "the 'frames' list is empty", "add frames to the training split")
    if "test" not in splits:
        splits["test"] = list(splits.get("val", []))
    # a missing test json makes the test split val's copy: one source fewer than splits, the last one unused
    frame_sources = [s for s, idx in zip(sources, splits.values(), strict=False) for _ in idx]
    frames = scale_frames(frames, downscale, train_json)
    aabb, near, far = _bounds(load_json(train_json), train_json)
    return Scene(
        name=root.resolve().name, root=root, kind="builtin" if builtin else "blender", frames=frames,
        splits=splits, aabb=aabb, near=near, far=far,
        background=np.ones(3, np.float32), ndc=False, downscale=downscale, has_alpha=alpha,
        metadata={"source": str(train_json), "frame_sources": frame_sources},
    )


def _bounds(meta: dict, source: Path) -> tuple[np.ndarray, float, float]:
    """(aabb [2,3], near, far): the json's own where it gives them, else NeRF's (module doc)."""
    aabb, near, far = BLENDER_AABB.copy(), BLENDER_NEAR, BLENDER_FAR
    if "aabb" in meta:
        try:
            aabb = np.asarray(meta["aabb"], np.float64).reshape(2, 3)
        except (TypeError, ValueError):
            raise InputError(source, f"'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {meta['aabb']!r}",
                             "fix the json or remove 'aabb'") from None
    near = number(meta.get("near", near), source, "scene", "near")
    far = number(meta.get("far", far), source, "scene", "far", positive=True)
    check_bounds(aabb, near, far, source)
    if not (np.all(aabb[1] > aabb[0]) and 0 <= near < far):
        raise InputError(source, f"bounds out of order (aabb {aabb.tolist()}, near {near:g}, far {far:g})",
                         "give min corner < max corner and 0 <= near < far")
    return aabb, near, far
