"""File-level helpers shared by the loaders: json, paths, image headers, decoding, c2w checks.

Every failure here is an ``InputError`` that names the file the user has to fix (the json /
npy that declares the frame) and, in the problem text, the frame (index and file_path).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".exr", ".EXR")
ROTATION_TOL = 1e-3
LAST_ROW_TOL = 1e-4


def load_json(path: Path) -> dict:
    """Read a json object; missing / malformed / not-an-object -> InputError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found", "check the scene folder") from None
    except OSError as e:
        raise InputError(path, f"cannot read file: {e.strerror or e}", "check permissions") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text (UTF-8) file", "replace it with a valid json file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            path, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}",
            "fix the syntax or regenerate the file") from None
    if not isinstance(data, dict):
        raise InputError(path, f"expected a JSON object at top level, got {type(data).__name__}",
                         "regenerate the transforms file")
    return data


def frame_desc(index: int, file_path) -> str:
    return f"frame {index} ('{file_path}')"


def resolve_image_path(root: Path, file_path, source: Path, desc: str) -> Path:
    """Resolve ``file_path`` relative to ``root`` (with or without extension).

    The check that the path stays inside ``root`` is lexical (``..`` components, absolute
    paths), so a scene folder that holds symlinks to images elsewhere is still accepted.
    """
    if not isinstance(file_path, str) or not file_path.strip():
        raise InputError(source, f"{desc}: 'file_path' must be a non-empty string",
                         "give each frame the image path relative to the json folder")
    root_n = os.path.normpath(os.path.abspath(root))
    cand = os.path.normpath(os.path.join(root_n, file_path))
    if os.path.commonpath([root_n, cand]) != root_n:
        raise InputError(source, f"{desc}: file_path resolves outside the scene folder {root_n}",
                         "keep images inside the scene folder and use relative paths")
    p = Path(cand)
    if p.is_file():
        return p
    if not p.suffix or p.suffix not in IMAGE_EXTENSIONS:
        for ext in IMAGE_EXTENSIONS:
            q = Path(cand + ext)
            if q.is_file():
                return q
    tried = "" if p.suffix in IMAGE_EXTENSIONS else " (also tried .png/.jpg/.jpeg/.exr)"
    raise InputError(source, f"{desc}: image file not found: {p}{tried}",
                     "restore the image or remove the frame from the json")


def image_header(path: Path, source: Path, desc: str) -> tuple[int, int, bool]:
    """(width, height, has_alpha) from the file header only (no pixel decode for PNG/JPEG)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                im.mode == "P" and "transparency" in im.info)
            return int(w), int(h), bool(alpha)
    except Exception:
        pass
    try:
        import imageio.v3 as iio

        props = iio.improps(path)
        shape = props.shape
        h, w = int(shape[0]), int(shape[1])
        alpha = len(shape) == 3 and shape[2] in (2, 4)
        return w, h, alpha
    except Exception as e:  # noqa: BLE001 - any decoder failure is a user-file problem
        raise InputError(source, f"{desc}: cannot read image {path}: {e}",
                         "replace the file with a valid PNG/JPEG") from None


def read_image(path: Path, source: Path, desc: str) -> np.ndarray:
    """Decode to float32 [H, W, C] in [0, 1], C in (1, 2, 3, 4). No EXIF rotation (as the header)."""
    try:
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - any decoder failure is a user-file problem
        raise InputError(source, f"{desc}: cannot decode image {path}: {e}",
                         "replace the file with a valid PNG/JPEG") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(source, f"{desc}: unsupported image layout {arr.shape} in {path}",
                         "use a gray, RGB or RGBA image")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        raise InputError(source, f"{desc}: unsupported pixel type {arr.dtype} in {path}",
                         "use 8- or 16-bit PNG/JPEG")
    return out


def area_downscale(img: np.ndarray, n: int) -> np.ndarray:
    """Average n x n blocks; crops to floor(H/n)*n, floor(W/n)*n first (top-left kept)."""
    if n == 1:
        return img
    h, w = img.shape[0] // n, img.shape[1] // n
    c = img[: h * n, : w * n]
    return c.reshape(h, n, w, n, *img.shape[2:]).mean(axis=(1, 3), dtype=np.float64).astype(img.dtype)


def check_c2w(m, source: Path, desc: str) -> np.ndarray:
    """Validate a camera-to-world matrix (3x4 or 4x4): finite, rigid. Returns float64 [3, 4]."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, f"{desc}: transform matrix is not numeric",
                         "give a 4x4 (or 3x4) list of numbers") from None
    if a.shape not in ((4, 4), (3, 4)):
        raise InputError(source, f"{desc}: transform matrix has shape {list(a.shape)}, expected 4x4 or 3x4",
                         "give a 4x4 camera-to-world matrix")
    if not np.all(np.isfinite(a)):
        raise InputError(source, f"{desc}: transform matrix contains NaN or inf",
                         "re-run the pose estimation or drop the frame")
    if a.shape == (4, 4) and np.abs(a[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > LAST_ROW_TOL:
        raise InputError(source, f"{desc}: last row of the transform matrix is {a[3].tolist()}, expected [0, 0, 0, 1]",
                         "give a rigid camera-to-world matrix")
    r = a[:3, :3]
    err = float(np.abs(r.T @ r - np.eye(3)).max())
    if err > ROTATION_TOL or np.linalg.det(r) <= 0:
        raise InputError(source, f"{desc}: rotation part of the transform matrix is not a rotation "
                         f"(orthonormality error {err:.2g}, det {np.linalg.det(r):.3g})",
                         "poses must be rigid camera-to-world matrices without scale or reflection")
    return np.ascontiguousarray(a[:3, :4])


def number(value, source: Path, desc: str, key: str, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{desc}: '{key}' is not a number ({value!r})", "fix the json") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise InputError(source,
                         f"{desc}: '{key}' must be a finite{' positive' if positive else ''} number, got {value!r}",
                         "fix the json")
    return v


def list_dir(root: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(root).iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_downscale(downscale, where) -> int:
    try:
        n = int(downscale)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or n != downscale:
        raise InputError(where, f"downscale must be a positive integer, got {downscale!r}", "use 1, 2, 4, ...")
    return n
