"""DTU captures in the IDR / VolSDF / NeuS layout: ``cameras_sphere.npz`` or ``cameras.npz``, ``image/`` (or
``images/``) and optional ``mask/``.

Conventions
-----------
* Frames: the image files sorted by name; frame i takes ``world_mat_i`` (a 4x4 or 3x4 projection, world ->
  pixels) and, when present, ``scale_mat_i`` (4x4, unit sphere -> world). Extra matrices are ignored;
  ``cameras_sphere.npz`` wins when both files are there. The npz is read with ``allow_pickle=False``.
* Cameras: P = (world_mat @ scale_mat)[:3, :4] is split into K [R | t] by an RQ decomposition (K upper triangular
  with fx, fy > 0 and K[2,2] = 1, R a rotation: P's sign is free), so x_cam = R x + t in OpenCV axes (x right,
  y down, z forward); the OpenGL camera-to-world is [R^T diag(1, -1, -1) | -R^T t]. P puts pixel centres at
  integers (IDR and NeuS cast the ray of pixel (row i, col j) through (j, i)); fieldfit's centres sit at +0.5,
  so cx, cy = K[0,2] + 0.5, K[1,2] + 0.5 and every pixel keeps the ray those methods gave it. K's skew is
  dropped when it moves no pixel by more than 0.5 (``metadata['skew_px']``: the largest shift), refused otherwise.
* World coordinates: with scale_mat, those of its unit sphere (the object inside it): aabb = [-1.05, 1.05]^3,
  per view near = max(d - 1, 0.05), far = d + 1 with d the camera's distance to the origin
  (``metadata['frame_bounds']``), scene near / far = their min / max; ``metadata['world_from_scene']`` is
  scale_mat_0, mapping these coordinates back to DTU's (mm). Without scale_mat: the matrices' own world and
  nerfstudio's camera rule (``scenes.sparse_bounds.camera_bounds``).
* Masks (``mask/``, one file per image, sorted by name; first channel): the frames' alpha, and images are
  composited on black (the masked protocol of IDR / NeuS: ``Scene.image`` is image x mask, ``Scene.alpha``
  the mask).
* Splits: frame i is a test view when i % test_every == 0, the others train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera

from ._io import check_bounds, check_c2w, check_downscale, image_header, list_dir
from .base import Frame, Scene, scale_frames
from .sparse_bounds import camera_bounds

CAMERA_FILES = ("cameras_sphere.npz", "cameras.npz")
IMAGE_DIRS = ("image", "images")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
SPHERE_PAD = 1.05
MIN_NEAR = 0.05
MAX_SKEW_PX = 0.5


def find_cameras(path) -> Path | None:
    """The cameras file of a DTU folder (or the file itself); None when there is none."""
    p = Path(path)
    if p.is_file():
        return p if p.name in CAMERA_FILES else None
    return next((p / n for n in CAMERA_FILES if (p / n).is_file()), None)


def rq(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper triangular U, orthogonal Q) with m = U @ Q, for a 3x3 m (QR of the row-reversed transpose)."""
    j = np.eye(3)[::-1]
    q, r = np.linalg.qr((j @ m).T)
    return j @ r.T @ j, j @ q.T


def decompose(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K [3,3] with K[2,2] = 1 and a positive diagonal, R [3,3] rotation, t [3]) with P ~ K [R | t] (up to
    scale and sign) of a 3x4 projection whose left 3x3 block is invertible."""
    k, r = rq(p[:, :3])
    d = np.diag(np.sign(np.diag(k)))
    k, r = k @ d, d @ r
    sign = 1.0
    if np.linalg.det(r) < 0:  # P and -P are the same camera: take the one with a proper rotation
        r, sign = -r, -1.0
    t = np.linalg.solve(k, sign * p[:, 3])
    return k / k[2, 2], r, t


def load_dtu(path, downscale: int = 1, test_every: int = 8) -> Scene:
    path = Path(path)
    npz = find_cameras(path)
    if npz is None:
        raise InputError(path, f"no {' or '.join(CAMERA_FILES)} (not a DTU / IDR folder); folder contains: "
                         f"{list_dir(path if path.is_dir() else path.parent)}",
                         "point at the folder holding cameras.npz and image/")
    root = npz.parent
    downscale = check_downscale(downscale, root)
    if not isinstance(test_every, int) or test_every < 1:
        raise InputError(npz, f"test_every must be a positive integer, got {test_every!r}", "use e.g. 8")
    images = _files(root, IMAGE_DIRS)
    if not images:
        raise InputError(root, f"no images in {' or '.join(d + '/' for d in IMAGE_DIRS)}",
                         "put the views in image/ (000.png, 001.png, ...)")
    masks = _files(root, ("mask",))
    if masks and len(masks) != len(images):
        raise InputError(root / "mask", f"holds {len(masks)} masks for {len(images)} images",
                         "give every image one mask (or remove mask/)")
    mats = _read_npz(npz)
    world, scale = _matrices(mats, npz, len(images))

    frames, skew = [], 0.0
    for i, img in enumerate(images):
        desc = f"view {i} ('{img.name}')"
        w, h, _ = image_header(img, npz, desc)
        p = world[i] @ (scale[i] if scale is not None else np.eye(4))
        k, r, t = _camera_of(p[:3], npz, i)
        skew = max(skew, abs(k[0, 1]) * max(k[1, 2], h - k[1, 2]) / k[1, 1])  # |s v| at the farthest row
        c2w = np.concatenate([r.T @ np.diag([1.0, -1.0, -1.0]), (-r.T @ t)[:, None]], 1)
        cam = Camera(check_c2w(c2w, npz, desc), k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5, w, h)
        frames.append(Frame(cam, path=img, name=img.stem, mask=masks[i] if masks else None))
    if skew > MAX_SKEW_PX:
        raise InputError(npz, f"the cameras' skew moves pixels by up to {skew:.2g}, fieldfit's cameras have none",
                         "give projection matrices without skew")

    n = len(frames)
    meta = {"source": str(npz), "masks": bool(masks), "skew_px": skew}
    if scale is not None:
        dist = np.array([np.linalg.norm(f.camera.position) for f in frames])
        fb = np.stack([np.maximum(dist - 1.0, MIN_NEAR), dist + 1.0], 1)
        aabb = np.array([[-SPHERE_PAD] * 3, [SPHERE_PAD] * 3])
        near, far = float(fb[:, 0].min()), float(fb[:, 1].max())
        meta.update(bounds_rule="unit sphere of scale_mat", frame_bounds=fb.tolist(),
                    world_from_scene=scale[0].tolist())
    else:
        aabb, near, far = camera_bounds([f.camera for f in frames])
        meta.update(bounds_rule="camera frusta (no scale_mat)", frame_bounds=[[near, far]] * n)
    check_bounds(aabb, near, far, npz)
    test = [i for i in range(n) if i % test_every == 0]
    train = [i for i in range(n) if i % test_every != 0] or list(range(n))
    return Scene(name=root.resolve().name, root=root, kind="dtu", frames=scale_frames(frames, downscale, npz),
                 splits={"train": train, "test": test}, aabb=aabb, near=near, far=far,
                 background=np.zeros(3, np.float32) if masks else None, downscale=downscale,
                 has_alpha=bool(masks), metadata=meta)


def _files(root: Path, dirs) -> list[Path]:
    for d in dirs:
        if (root / d).is_dir():
            return sorted(p for p in (root / d).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    return []


def _read_npz(npz: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any reader failure (not a zip, pickled arrays) is a user-file problem
        raise InputError(npz, f"cannot read the camera file: {type(e).__name__}: {str(e).splitlines()[0][:120]}",
                         "give an npz of plain arrays (world_mat_0, scale_mat_0, ...)") from None


def _matrices(mats: dict, npz: Path, n: int):
    """(world matrices [n] 4x4, scale matrices [n] 4x4 or None) for n images."""
    if "world_mat_0" not in mats:
        keys = sorted(mats)
        listed = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
        raise InputError(npz, f"no world_mat_0; it holds: {listed or '(nothing)'}",
                         "give world_mat_i (projection of view i) for every image")
    missing = [i for i in range(n) if f"world_mat_{i}" not in mats]
    if missing:
        raise InputError(npz, f"has no world_mat_{missing[0]} for image {missing[0]} ({n} images, "
                         f"{n - len(missing)} matrices)", "give one world_mat_i per image, or remove extra images")
    has_scale = "scale_mat_0" in mats
    world, scale = [], [] if has_scale else None
    for i in range(n):
        world.append(_mat4(mats[f"world_mat_{i}"], npz, f"world_mat_{i}"))
        if has_scale:
            if f"scale_mat_{i}" not in mats:
                raise InputError(npz, f"has scale_mat_0 but no scale_mat_{i}", "give scale_mat_i for every view")
            s = _mat4(mats[f"scale_mat_{i}"], npz, f"scale_mat_{i}")
            if abs(np.linalg.det(s[:3, :3])) < 1e-12:
                raise InputError(npz, f"scale_mat_{i} is singular", "give an invertible scale matrix")
            scale.append(s)
    return world, scale


def _mat4(a, npz: Path, key: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.shape not in ((4, 4), (3, 4)):
        raise InputError(npz, f"{key} is a {a.dtype} array of shape {list(a.shape)}, expected 4x4 numbers",
                         "give 4x4 (or 3x4) matrices")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(npz, f"{key} holds NaN or inf", "re-export the cameras")
    return a if a.shape == (4, 4) else np.concatenate([a, [[0.0, 0.0, 0.0, 1.0]]])


def _camera_of(p: np.ndarray, npz: Path, i: int):
    m = p[:, :3]
    if abs(np.linalg.det(m)) <= 1e-12 * max(np.linalg.norm(m), 1e-300) ** 3:
        raise InputError(npz, f"view {i}: the projection matrix (world_mat_{i} @ scale_mat_{i}) is singular",
                         "re-export the cameras")
    return decompose(p)


__all__ = ["decompose", "find_cameras", "load_dtu", "rq"]
