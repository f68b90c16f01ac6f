"""What a user passes as SCENE: an image, a mesh, a folder of posed images or a built-in scene.

``classify(path)`` picks the task from the path alone; loading happens in the task, so a bad
input fails with an ``InputError`` that names the file and the fix.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr")
MESH_EXTS = (".obj", ".ply", ".stl", ".off", ".glb")
POSED_MARKERS = ("transforms_train.json", "transforms.json", "poses_bounds.npy", "sparse/0/cameras.bin (or .txt)",
                 "cameras.npz")  # what the one-line error lists; ``detect.capture_format`` decides


@dataclass
class Input:
    task: str  # image | sdf | radiance
    path: Path | None
    name: str
    builtin: str | None = None  # name of a built-in scene


def classify(path: str) -> Input:
    """Map the SCENE argument to a task; built-in scene names work without a file."""
    from .builtin import BUILTIN

    p = Path(path)
    if not p.exists():
        if path in BUILTIN:
            return Input(BUILTIN[path].task, None, path, builtin=path)
        raise InputError(path, "no such file or folder",
                         f"pass an image, a mesh, a scene folder, or a built-in scene: {', '.join(sorted(BUILTIN))}")
    if p.is_dir():
        from .detect import capture_format

        if capture_format(p) is not None:
            return Input("radiance", p, p.resolve().name)
        raise InputError(p, "folder holds nothing fieldfit can use",
                         f"expected one of {', '.join(POSED_MARKERS)} (posed images)")
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        return Input("image", p, p.stem)
    if ext in MESH_EXTS:
        return Input("sdf", p, p.stem)
    raise InputError(p, f"unknown file type {ext or '(none)'!r}",
                     f"images: {' '.join(IMAGE_EXTS)}; meshes: {' '.join(MESH_EXTS)}")


def load_image(path: Path) -> np.ndarray:
    """Read an image as float32 [H,W,C] in [0,1] (C = 1, 2, 3 or 4: grey, grey+alpha, RGB, RGBA); 16-bit files
    keep their 16 bits, CMYK and palette images become RGB(A) (``scenes._io.decode_image``); EXR stays linear."""
    from ._io import Undecodable, decode_image

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image not found")
    if path.stat().st_size == 0:
        raise InputError(path, "image file is empty", "re-export the image")
    try:
        img = decode_image(path)
    except Undecodable as e:
        hint = ("install an EXR plugin (pip install imageio[freeimage]) or convert to PNG/TIFF"
                if path.suffix.lower() == ".exr" else "re-export it as PNG or JPEG")
        raise InputError(path, f"cannot decode image: {e}", hint, e.detail) from None
    if img.ndim == 3 and img.shape[0] in (1,) and img.shape[-1] not in (1, 3, 4):  # multi-page with one page
        img = img[0]
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4) or min(img.shape[:2]) < 2:
        raise InputError(path, f"unsupported image shape {img.shape}", "expected HxW, HxWx3 or HxWx4")
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    else:
        out = img.astype(np.float32)
    if not np.isfinite(out).all():
        raise InputError(path, "image contains NaN or Inf values", "clean the image first")
    return out
