"""COLMAP captures: a sparse model (``sparse/0/``, ``sparse/`` or the model folder itself) and ``images/``.

Conventions
-----------
* Model folder: the first of ``sparse/0/``, ``sparse/`` and the folder given (a sparse/ or sparse/0/ folder
  itself) that holds cameras.bin / .txt. Model files: ``cameras``, ``images``, ``points3D`` as ``.bin``
  (preferred when both are there) or ``.txt`` (``scenes.colmap_io``; ``model_format`` picks one).
* Coordinates: COLMAP's world coordinates are kept as they are: no re-orientation, recentring or rescaling, so
  "up" is whatever the reconstruction chose. An image's (q, t) maps world to camera, x_cam = R(q) x + t, in
  OpenCV camera axes (x right, y down, z forward); its OpenGL camera-to-world is [R^T diag(1, -1, -1) | -R^T t].
* Pixels: COLMAP puts the image's top-left corner at (0, 0) and pixel centres at +0.5, as ``Camera`` does:
  intrinsics are used unchanged.
* Camera models (any number of cameras, one per image allowed): SIMPLE_PINHOLE (f, cx, cy) and PINHOLE -> PINHOLE;
  SIMPLE_RADIAL (k), RADIAL (k1, k2) and OPENCV (k1, k2, p1, p2) -> OPENCV (k1, k2, 0, 0, p1, p2); FULL_OPENCV
  (k1, k2, p1, p2, k3, k4, k5, k6) -> FULL_OPENCV (k1, ..., k6, p1, p2); OPENCV_FISHEYE (k1, ..., k4) ->
  OPENCV_FISHEYE. Other models are refused (undistort the images with COLMAP first).
* Images: the model's registered images, sorted by name, read from ``images/`` beside ``sparse/`` (names may hold
  subfolders); files the model does not name are ignored. ``downscale=N`` reads ``images_N/`` when it exists
  (each frame's intrinsics scaled by its file's size over the model's; ``Scene.downscale`` is then 1, relative
  to those files), otherwise it area-downscales ``images/`` by N.
* Splits (mip-NeRF 360's): image i in name order is a test view when i % test_every == 0 (default 8); the
  others train (a one-image model trains on it).
* Bounds: from the sparse points, as ``scenes.sparse_bounds`` describes (``metadata``: ``bounds_rule``,
  ``frame_bounds`` [N,2] per-view near / far, ``points_centre`` and ``points_radius``). A model without usable
  points falls back to the cameras: as nerfstudio's rule without aabb_scale (look-at centre c, r = camera
  distances to c: near = 0.05 median r, far = 2 max r, aabb = the frusta between them), and no points centre.
* ``Scene.points`` / ``point_colors``: every finite 3D point of the model, colours / 255.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera

from ._io import check_bounds, check_c2w, check_downscale, image_header, list_dir
from .base import Frame, Scene, scale_frames
from .colmap_io import ColmapImage, ColmapModel, read_model
from .sparse_bounds import RULE, camera_bounds, point_bounds

SPARSE_DIRS = ("sparse/0", "sparse")
MAX_LISTED = 5


def find_sparse(path) -> Path | None:
    """The model folder of a capture: the first of ``path/sparse/0``, ``path/sparse``, ``path/0`` (``path`` is a
    sparse/ folder) and ``path`` itself that holds cameras.bin or cameras.txt; None when none does."""
    p = Path(path)
    for f in (p / "sparse" / "0", p / "sparse", p / "0", p):
        if (f / "cameras.bin").is_file() or (f / "cameras.txt").is_file():
            return f
    return None


def capture_root(sparse: Path) -> Path:
    """The folder whose ``images/`` belong to the model folder ``sparse``: the first of (X for X/sparse/0, X for
    X/sparse, the model folder, its parent) that holds images/, else the first of them."""
    cands = []
    if sparse.parent.name == "sparse":
        cands.append(sparse.parent.parent)
    if sparse.name == "sparse":
        cands.append(sparse.parent)
    cands += [sparse, sparse.parent]
    return next((c for c in cands if (c / "images").is_dir()), cands[0])


def load_colmap(path, downscale: int = 1, test_every: int = 8, model_format: str | None = None) -> Scene:
    """Load a COLMAP capture (module doc). ``model_format``: "bin" or "txt" (default: .bin when present)."""
    path = Path(path)
    sparse = find_sparse(path)
    if sparse is None:
        raise InputError(path, f"no COLMAP model (sparse/0, sparse/ or cameras.bin/.txt); folder contains: "
                         f"{list_dir(path)}", "point at the capture folder holding sparse/0 and images/")
    downscale = check_downscale(downscale, path)
    if not isinstance(test_every, int) or test_every < 1:
        raise InputError(path, f"test_every must be a positive integer, got {test_every!r}", "use e.g. 8")
    if model_format not in (None, "bin", "txt"):
        raise InputError(path, f"model_format must be 'bin' or 'txt', got {model_format!r}", "use bin or txt")
    model = read_model(sparse, None if model_format is None else "." + model_format)
    root = capture_root(sparse)
    img_dir, from_files = root / "images", False
    if downscale > 1 and (root / f"images_{downscale}").is_dir():
        img_dir, from_files = root / f"images_{downscale}", True

    images = sorted(model.images.values(), key=lambda im: im.name)
    if not images:
        raise InputError(model.file("images"), "the model has no registered images",
                         "reconstruct again (colmap mapper) or point at another model")
    paths = _image_paths(model, images, img_dir)
    frames, alpha = [], False
    for j, im in enumerate(images):
        cam = _camera(model, im, paths[j], from_files)
        if j == 0:
            alpha = image_header(paths[j], model.folder, f"image '{im.name}'")[2]
        frames.append(Frame(cam, path=paths[j], name=im.name))
    n = len(frames)
    test = [i for i in range(n) if i % test_every == 0]
    train = [i for i in range(n) if i % test_every != 0] or list(range(n))

    pts = model.points
    finite = np.all(np.isfinite(pts.xyz), axis=1)
    bounds = point_bounds(pts.xyz, [f.camera for f in frames], _seen(model, images), pts.track_lengths)
    meta = {"source": str(sparse), "model_format": model.ext[1:], "image_folder": str(img_dir),
            "camera_models": sorted({model.cameras[im.camera_id].model for im in images})}
    if bounds is not None:
        aabb, near, far = bounds.aabb, bounds.near, bounds.far
        meta.update(bounds_rule=RULE, frame_bounds=bounds.frame_bounds.tolist(),
                    points_centre=bounds.centre.tolist(), points_radius=bounds.radius)
    else:
        aabb, near, far = camera_bounds([f.camera for f in frames])
        meta.update(bounds_rule="camera frusta (no sparse points)", frame_bounds=[[near, far]] * n,
                    points_centre=None, points_radius=None)
    check_bounds(aabb, near, far, sparse)
    scale = 1 if from_files else downscale
    return Scene(name=root.resolve().name, root=root, kind="colmap", frames=scale_frames(frames, scale, sparse),
                 splits={"train": train, "test": test}, aabb=aabb, near=near, far=far,
                 background=np.ones(3, np.float32) if alpha else None, points=pts.xyz[finite],
                 point_colors=pts.rgb[finite].astype(np.float32) / 255.0, downscale=scale, has_alpha=alpha,
                 metadata=meta)


def _image_paths(model: ColmapModel, images: list[ColmapImage], img_dir: Path) -> list[Path]:
    src = model.file("images")
    root_n = os.path.normpath(os.path.abspath(img_dir))
    out, missing = [], []
    for im in images:
        p = os.path.normpath(os.path.join(root_n, im.name))
        if os.path.commonpath([root_n, p]) != root_n:
            raise InputError(src, f"image {im.id} is named '{im.name}', outside the image folder",
                             "name images relative to the image folder")
        out.append(Path(p))
        if not os.path.isfile(p):
            missing.append(im.name)
    if missing:
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        where = f"folder {img_dir}" if img_dir.is_dir() else f"folder {img_dir} (not there)"
        raise InputError(src, f"{len(missing)} of its {len(images)} images are missing from {where}: "
                         f"{', '.join(missing[:MAX_LISTED])}{more}",
                         "restore the images, or keep them in images/ beside sparse/")
    return out


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (qw, qx, qy, qz) (Hamilton convention, as COLMAP's Eigen)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def colmap_c2w(qvec, tvec) -> np.ndarray:
    """OpenGL camera-to-world [3,4] of COLMAP's world-to-camera (qvec, tvec) (module doc)."""
    r = qvec_to_rotmat(qvec)
    return np.concatenate([r.T @ np.diag([1.0, -1.0, -1.0]), (-r.T @ np.asarray(tvec, np.float64))[:, None]], 1)


def _pose(model: ColmapModel, im: ColmapImage) -> np.ndarray:
    src, desc = model.file("images"), f"image {im.id} ('{im.name}')"
    q, t = np.asarray(im.qvec, np.float64), np.asarray(im.tvec, np.float64)
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))):
        raise InputError(src, f"{desc}: its pose holds NaN or inf (q {q.tolist()}, t {t.tolist()})",
                         "re-run the reconstruction or drop the image from the model")
    if np.linalg.norm(q) < 1e-6:
        raise InputError(src, f"{desc}: its rotation quaternion is zero (a singular pose)",
                         "re-run the reconstruction or drop the image from the model")
    return check_c2w(colmap_c2w(q, t), src, desc)


def intrinsics(model: str, params) -> tuple[float, float, float, float, str, np.ndarray | None]:
    """(fx, fy, cx, cy, Camera model, Camera distortion or None) of a COLMAP camera model's parameters."""
    p = [float(v) for v in params]
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, rest = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, rest = p[0], p[1], p[2], p[3], p[4:]
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return fx, fy, cx, cy, "PINHOLE", None
    if model == "SIMPLE_RADIAL":
        return fx, fy, cx, cy, "OPENCV", np.array([rest[0], 0, 0, 0, 0, 0])
    if model == "RADIAL":
        return fx, fy, cx, cy, "OPENCV", np.array([rest[0], rest[1], 0, 0, 0, 0])
    if model == "OPENCV":
        k1, k2, p1, p2 = rest
        return fx, fy, cx, cy, "OPENCV", np.array([k1, k2, 0, 0, p1, p2])
    if model == "FULL_OPENCV":
        k1, k2, p1, p2, k3, k4, k5, k6 = rest
        return fx, fy, cx, cy, "FULL_OPENCV", np.array([k1, k2, k3, k4, k5, k6, p1, p2])
    if model == "OPENCV_FISHEYE":
        return fx, fy, cx, cy, "OPENCV_FISHEYE", np.array([*rest[:4], 0, 0])
    raise ValueError(f"unknown COLMAP camera model {model!r}")


def _camera(model: ColmapModel, im: ColmapImage, path: Path, from_files: bool) -> Camera:
    """The full-size Camera of an image (of its file in images_N when ``from_files``)."""
    desc = f"image {im.id} ('{im.name}')"
    cam = model.cameras.get(im.camera_id)
    if cam is None:
        raise InputError(model.file("images"), f"{desc} uses camera {im.camera_id}, which "
                         f"{model.file('cameras').name} does not define (it has {sorted(model.cameras)[:8]})",
                         "re-export the model from COLMAP")
    csrc, cdesc = model.file("cameras"), f"camera {cam.id} ({cam.model})"
    if not np.all(np.isfinite(cam.params)):
        raise InputError(csrc, f"{cdesc}: parameters hold NaN or inf: {cam.params.tolist()}",
                         "re-run the reconstruction")
    if cam.width < 1 or cam.height < 1:
        raise InputError(csrc, f"{cdesc}: image size {cam.width}x{cam.height}", "re-export the model from COLMAP")
    fx, fy, cx, cy, cmodel, dist = intrinsics(cam.model, cam.params)
    if not (fx > 0 and fy > 0):
        raise InputError(csrc, f"{cdesc}: focal length {fx:g}, {fy:g} is not positive (a singular camera)",
                         "re-run the reconstruction")
    w, h, _ = image_header(path, model.folder, desc)
    width, height = cam.width, cam.height
    if from_files:  # a resized copy: scale by the size ratio of each axis
        sx, sy = w / cam.width, h / cam.height
        if abs(w - cam.width * sy) > 1.0 or abs(h - cam.height * sx) > 1.0:
            raise InputError(path, f"is {w}x{h}, not a resized copy of the {cam.width}x{cam.height} image "
                             f"{cdesc} declares", "regenerate the images_N folder from images/")
        fx, cx, fy, cy, width, height = fx * sx, cx * sx, fy * sy, cy * sy, w, h
    elif (w, h) != (cam.width, cam.height):
        raise InputError(path, f"is {w}x{h} but {cdesc} declares {cam.width}x{cam.height}",
                         "restore the original image, or undistort / resize with COLMAP so the model matches")
    return Camera(_pose(model, im), fx, fy, cx, cy, width, height, distortion=dist, model=cmodel)


def _seen(model: ColmapModel, images: list[ColmapImage]) -> list[np.ndarray]:
    """Per image, the row indices (into model.points) of the points it observes: its 2D points' ids, or the
    tracks of points3D when the image lists none."""
    pts = model.points
    order = np.argsort(pts.ids, kind="stable")
    sorted_ids = pts.ids[order]
    obs_pt = np.repeat(np.arange(len(pts.ids)), pts.track_lengths)
    by_img = np.argsort(pts.track_images, kind="stable")
    img_sorted = pts.track_images[by_img]
    out = []
    for im in images:
        ids = im.point_ids[im.point_ids >= 0]
        if len(ids) and len(sorted_ids):
            pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
            out.append(order[pos[sorted_ids[pos] == ids]])
        else:
            lo, hi = np.searchsorted(img_sorted, [im.id, im.id + 1])
            out.append(obs_pt[by_img[lo:hi]])
    return out


__all__ = ["colmap_c2w", "find_sparse", "intrinsics", "load_colmap", "qvec_to_rotmat"]
