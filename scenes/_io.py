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
# Largest camera coordinate or scene bound (world units): rays are float32, whose squares overflow near 1e19.
MAX_COORDINATE = 1e12


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
        path = Path(path)
        what = "empty file" if path.is_file() and path.stat().st_size == 0 else _unreadable(path)
        raise InputError(source, f"{desc}: cannot read image {path}: {what}", "replace the file with a valid PNG/JPEG",
                         f"{type(e).__name__}: {e}".strip()) from None


# Pillow modes turned into the few layouts the loaders take (grey, grey+alpha, RGB, RGBA).
_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
# 16-bit colour PNGs: Pillow unpacks the high byte of each sample only. The raw mode that reads the low bytes
# instead (same filter layout, so the same decode), or "RGBA" for grey+alpha (4 bytes per pixel: both bytes).
_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


class Undecodable(Exception):
    """An image file no decoder reads; the message is one line, ``detail`` what the decoder said in full (for a
    run's log: imageio's advice on plugins to install spans lines)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


def _unreadable(path) -> str:
    """The problem of a file no decoder opens (what the decoders said goes to the log, not the terminal)."""
    ext = Path(path).suffix.lower() or "image"
    return f"not a readable {ext} file (another format under that name, or truncated?)"


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def decode_image(path) -> np.ndarray:
    """The pixels of an image file as stored: uint8, uint16 or float, [H, W] or [H, W, C], C in 1..4, colour as
    grey, grey+alpha, RGB or RGBA.

    Pillow decodes what it opens (PNG, JPEG, ...; not TIFF): CMYK and YCbCr become RGB, palette images RGB, or
    RGBA when the palette has transparency, and 16-bit colour PNGs keep all 16 bits (Pillow alone keeps the high
    byte). TIFF and EXR go through imageio. ``Undecodable`` (one line) for a truncated or corrupt file.
    """
    from PIL import Image

    try:
        im = Image.open(path)
    except Exception:  # noqa: BLE001 - not a format Pillow knows: imageio below
        im = None
    if im is None or im.format == "TIFF":
        if im is not None:
            im.close()
        try:
            import imageio.v3 as iio

            return np.asarray(iio.imread(path))
        except Exception as e:  # noqa: BLE001 - any decoder failure is a user-file problem
            raise Undecodable(_unreadable(path), f"{type(e).__name__}: {e}".strip()) from None
    try:
        with im:
            raw = im.tile[0].args if im.format == "PNG" and len(im.tile) == 1 else None
            if raw in _LOW_BYTES:
                return _png16(path, im, raw)
            if im.mode in _CONVERT:
                want = "RGBA" if im.mode == "P" and "transparency" in im.info else _CONVERT[im.mode]
                im = im.convert(want)
            arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - truncated or corrupt data
        raise Undecodable(f"truncated or corrupt image data ({_one_line(e)})", f"{type(e).__name__}: {e}") from None
    if arr.dtype.kind in "iu" and arr.dtype.itemsize > 1 and arr.dtype != np.uint16:
        if arr.min() >= 0 and arr.max() <= 65535:  # 16-bit grey that Pillow holds as 32-bit ints
            arr = arr.astype(np.uint16)
    return arr.astype(arr.dtype.newbyteorder("=")) if arr.dtype.byteorder not in "=|" else arr


def _png16(path, im, raw: str) -> np.ndarray:
    """uint16 [H, W, C] of a 16-bit colour PNG: its high bytes as Pillow decodes them, its low bytes from a second
    decode with the raw mode that unpacks them (``_LOW_BYTES``)."""
    from PIL import Image

    low = _LOW_BYTES[raw]
    with Image.open(path) as again:
        again.tile = [again.tile[0]._replace(args=low)]
        lo = np.asarray(again).astype(np.uint16)
    if raw == "LA;16B":  # bytes L_hi L_lo A_hi A_lo per pixel
        return np.stack([lo[..., 0] << 8 | lo[..., 1], lo[..., 2] << 8 | lo[..., 3]], axis=-1)
    hi = np.asarray(im).astype(np.uint16)
    return hi << 8 | lo


def read_image(path: Path, source: Path, desc: str) -> np.ndarray:
    """Decode to float32 [H, W, C] in [0, 1], C in (1, 2, 3, 4). No EXIF rotation (as the header)."""
    try:
        arr = decode_image(path)
    except Undecodable as e:
        raise InputError(source, f"{desc}: cannot decode image {path}: {e}",
                         "replace the file with a valid PNG/JPEG", e.detail) from None
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
    far = float(np.abs(a[:3, 3]).max())
    if far > MAX_COORDINATE:
        raise InputError(source, f"{desc}: camera position {a[:3, 3].tolist()} is beyond {MAX_COORDINATE:g} world "
                         "units", "scale the poses down (or recentre them) before fitting")
    return np.ascontiguousarray(a[:3, :4])


def check_bounds(aabb, near: float, far: float, source: Path) -> None:
    """InputError unless the scene box and the near / far distances are finite and within MAX_COORDINATE."""
    values = np.concatenate([np.asarray(aabb, np.float64).ravel(), [near, far]])
    if not np.all(np.isfinite(values)) or np.abs(values).max() > MAX_COORDINATE:
        raise InputError(source, f"scene bounds out of range (box {np.asarray(aabb).tolist()}, near {near:g}, "
                         f"far {far:g})", "check aabb_scale, scale and offset, and the poses' units")


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
