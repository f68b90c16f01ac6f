"""nerfstudio / instant-ngp scenes: one ``transforms.json``.

Conventions
-----------
* Coordinates: the json's world coordinates are kept as they are (no re-orientation, no
  re-scaling); ``transform_matrix`` is an OpenGL camera-to-world matrix (both flavours).
* Intrinsics: global or per-frame (see ``_transforms``); OPENCV / OPENCV_FISHEYE distortion ->
  the camera's distortion (k1, k2, k3, k4, p1, p2).
* Bounds when ``aabb_scale`` is present (instant-ngp): the box instant-ngp itself marches,
  mapped back to json coordinates. ngp maps a json point p to ngp space as
  q = perm(p) * scale + offset (scale 0.33, offset (0.5, 0.5, 0.5) unless the json sets
  ``scale``/``offset``; perm cycles (x, y, z) -> (y, z, x)) and marches the cube centred at 0.5
  with side ``aabb_scale``. With the defaults this is the cube centred at the origin with
  half-side aabb_scale * 0.5 / 0.33.
* Bounds without ``aabb_scale``: the look-at centre c (least-squares point closest to all
  optical axes; the mean camera position when the axes are near-parallel), r = camera distances
  to c; near = 0.05 * median(r), far = 2 * max(r), aabb = frusta_bounds([f.camera for f in frames], near, far).
  With ``aabb_scale``: near = 0.05 * median distance of the cameras to the aabb centre, far =
  largest distance from a camera to an aabb corner.
* Splits: ``train_filenames`` / ``test_filenames`` (``val_filenames``) when the json lists them
  (test falls back to val); otherwise frame i (json order) is a test view when i % test_every == 0.
* RGBA images (judged on the first frame): has_alpha, composited on white.
* ``ply_file_path`` (relative to the json folder) -> ``Scene.points`` / ``point_colors``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import frusta_bounds, look_at_centre

from ._io import check_bounds, check_downscale, list_dir, load_json, number
from ._transforms import frame_name, frames_from_transforms
from .base import Scene, scale_frames

NGP_DEFAULT_SCALE = 0.33
NGP_DEFAULT_OFFSET = (0.5, 0.5, 0.5)


def load_nerfstudio(root, downscale: int = 1, test_every: int = 8) -> Scene:
    root = Path(root)
    if root.is_file():
        js, root = root, root.parent
    else:
        js = root / "transforms.json"
    if not js.is_file():
        raise InputError(root, "no transforms.json (not a nerfstudio / instant-ngp folder); "
                         f"folder contains: {list_dir(root)}", "point at the folder holding transforms.json")
    downscale = check_downscale(downscale, root)
    if not isinstance(test_every, int) or test_every < 1:
        raise InputError(js, f"test_every must be a positive integer, got {test_every!r}", "use e.g. 8")
    meta = load_json(js)
    frames, alpha = frames_from_transforms(meta, js, root)
    if not frames:
        raise InputError(js, "the 'frames' list is empty", "add frames to the transforms file")

    splits = _splits(meta, frames, js, root, test_every)

    if meta.get("aabb_scale") is not None:
        aabb = ngp_aabb(meta, js)
        centre = aabb.mean(axis=0)
        pos = np.stack([f.camera.c2w[:, 3] for f in frames])
        near = 0.05 * float(np.median(np.linalg.norm(pos - centre, axis=1)))
        corners = np.array([[aabb[i, 0], aabb[j, 1], aabb[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        far = float(np.linalg.norm(pos[:, None, :] - corners[None], axis=2).max())
        bounds_rule = "instant-ngp aabb_scale"
    else:
        c = look_at_centre([f.camera for f in frames])
        r = np.linalg.norm(np.stack([f.camera.c2w[:, 3] for f in frames]) - c, axis=1)
        near = 0.05 * float(np.median(r))
        far = 2.0 * float(r.max())
        if not near > 0:
            near, far = 0.05, 100.0
        aabb = frusta_bounds([f.camera for f in frames], near, far)
        bounds_rule = "camera frusta"

    check_bounds(aabb, near, far, js)
    points = colors = None
    if meta.get("ply_file_path"):
        points, colors = _read_points(root, meta["ply_file_path"], js)

    frames = scale_frames(frames, downscale, js)
    return Scene(
        name=root.resolve().name, root=root, kind="nerfstudio", frames=frames, splits=splits,
        aabb=aabb, near=near, far=far, background=np.ones(3, np.float32) if alpha else None,
        ndc=False, points=points, point_colors=colors, downscale=downscale, has_alpha=alpha,
        metadata={"source": str(js), "bounds_rule": bounds_rule,
                  "aabb_scale": meta.get("aabb_scale")},
    )


def ngp_aabb(meta: dict, source: Path) -> np.ndarray:
    """instant-ngp's marching box, in the json's world coordinates (see module doc)."""
    desc = "transforms"
    s = number(meta["aabb_scale"], source, desc, "aabb_scale", positive=True)
    scale = number(meta.get("scale", NGP_DEFAULT_SCALE), source, desc, "scale", positive=True)
    off = meta.get("offset", NGP_DEFAULT_OFFSET)
    if not isinstance(off, (list, tuple)) or len(off) != 3:
        raise InputError(source, f"'offset' must be a list of 3 numbers, got {off!r}", "fix the json")
    off = np.array([number(v, source, desc, "offset") for v in off])
    # ngp axis q = (y, z, x) of the json: json axis a gets ngp offset component perm_inv[a]
    off_world = off[[2, 0, 1]]
    centre = (0.5 - off_world) / scale
    half = 0.5 * s / scale
    return np.stack([centre - half, centre + half])


def _splits(meta, frames, js, root, test_every):
    keys = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}
    if not any(k in meta for k in keys.values()):
        n = len(frames)
        test = [i for i in range(n) if i % test_every == 0]
        train = [i for i in range(n) if i % test_every != 0]
        if not train:  # a single-frame scene still trains
            train = list(range(n))
        return {"train": train, "test": test}
    lookup = {}
    for i, f in enumerate(frames):
        lookup[_key(f.path, root)] = i
        lookup[f.name] = i
    splits = {}
    for split, key in keys.items():
        names = meta.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise InputError(js, f"'{key}' must be a list of file names", "fix the json")
        idx = []
        for nm in names:
            i = lookup.get(_key(root / str(nm), root), lookup.get(frame_name(str(nm))))
            if i is None:
                raise InputError(js, f"'{key}' lists '{nm}', which is not a frame's file_path",
                                 "list file paths exactly as the frames give them")
            idx.append(i)
        splits[split] = idx
    if "train" not in splits:
        used = set(i for v in splits.values() for i in v)
        splits["train"] = [i for i in range(len(frames)) if i not in used]
    if "test" not in splits:
        splits["test"] = list(splits.get("val", []))
    return splits


def _key(p, root=None) -> str:
    return os.path.normpath(os.path.abspath(p))


def _read_points(root: Path, rel, js: Path):
    root_n = os.path.normpath(os.path.abspath(root))
    p = Path(os.path.normpath(os.path.join(root_n, str(rel))))
    if os.path.commonpath([root_n, str(p)]) != root_n:
        raise InputError(js, f"ply_file_path '{rel}' resolves outside the scene folder",
                         "keep the point cloud inside the scene folder")
    if not p.is_file():
        raise InputError(js, f"ply_file_path '{rel}' not found at {p}", "restore the file or remove ply_file_path")
    try:
        import trimesh

        geom = trimesh.load(p, process=False)
        pts = np.asarray(geom.vertices, dtype=np.float64)
        cols = None
        if isinstance(geom, trimesh.PointCloud):
            vis = geom.colors
        else:  # a mesh: only genuine per-vertex colours, not trimesh's default grey
            visual = getattr(geom, "visual", None)
            vis = visual.vertex_colors if getattr(visual, "kind", None) == "vertex" else None
        if vis is not None and len(vis) == len(pts):
            cols = np.asarray(vis, dtype=np.float32)[:, :3] / 255.0
    except Exception as e:  # noqa: BLE001 - any reader failure is a user-file problem
        raise InputError(js, f"cannot read point cloud {p}: {e}", "give a valid PLY file") from None
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.all(np.isfinite(pts)):
        raise InputError(js, f"point cloud {p} has no valid xyz vertices", "give a valid PLY file")
    return pts, cols
