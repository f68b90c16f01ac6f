"""Frames from a NeRF-style ``transforms*.json`` (Blender, instant-ngp and nerfstudio flavours).

Intrinsics are read per frame first, then from the top level: ``fl_x``/``fl_y`` (else
``camera_angle_x``/``camera_angle_y``, else fl_y = fl_x), ``cx``/``cy`` (default W/2, H/2),
``w``/``h`` (default: the image header). Distortion keys ``k1 k2 k3 k4 p1 p2``; ``camera_model``
'OPENCV' (default when coefficients are present) or 'OPENCV_FISHEYE' (also ngp's ``is_fisheye``).
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera

from ._io import check_c2w, frame_desc, image_header, number, resolve_image_path
from .base import Frame

_DIST_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_MODEL_ALIASES = {"PINHOLE": "PINHOLE", "SIMPLE_PINHOLE": "PINHOLE", "OPENCV": "OPENCV",
                  "OPENCV_FISHEYE": "OPENCV_FISHEYE"}


def frame_name(file_path: str) -> str:
    p = PurePosixPath(str(file_path).replace("\\", "/"))
    parts = [q for q in p.parts if q not in (".",)]
    name = str(PurePosixPath(*parts)) if parts else str(p)
    suffix = PurePosixPath(name).suffix
    if suffix.lower() in (".png", ".jpg", ".jpeg", ".exr"):
        name = name[: -len(suffix)]
    return name


def field_of_view(value, source: Path, desc: str, key: str) -> float:
    """A camera_angle_x / _y in radians: finite, in (0, pi) (pi and beyond have no pinhole focal length)."""
    a = number(value, source, desc, key, positive=True)
    if a >= math.pi:
        raise InputError(source, f"{desc}: '{key}' is {a:g} radians, a pinhole field of view must be under pi",
                         "give the angle in radians (degrees / 57.3), or fl_x / fl_y")
    return a


def frames_from_transforms(meta: dict, source: Path, root: Path, index_offset: int = 0,
                           same_size: bool = False) -> tuple[list[Frame], bool]:
    """Parse ``meta['frames']`` into full-resolution Frames; returns (frames, first_has_alpha).

    ``same_size``: when the json declares no w/h, require every image to match the first one's
    size (Blender scenes share one camera_angle_x, so a stray size is a broken frame).
    """
    raw = meta.get("frames")
    if not isinstance(raw, list):
        raise InputError(source, "no 'frames' list",
                         "a transforms file needs a 'frames' list of {file_path, transform_matrix}")
    frames: list[Frame] = []
    first_alpha = False
    ref_size = None
    for j, fm in enumerate(raw):
        idx = index_offset + j
        fp = fm.get("file_path") if isinstance(fm, dict) else None
        desc = frame_desc(idx, fp)
        if not isinstance(fm, dict):
            raise InputError(source, f"{desc}: frame entry is not an object",
                             "each frame needs file_path and transform_matrix")

        def get(key, default=None, fm=fm):
            v = fm.get(key)
            return meta.get(key, default) if v is None else v

        path = resolve_image_path(root, fp, source, desc)
        if "transform_matrix" not in fm:
            raise InputError(source, f"{desc}: missing 'transform_matrix'",
                             "give each frame a 4x4 camera-to-world matrix")
        c2w = check_c2w(fm["transform_matrix"], source, desc)
        iw, ih, alpha = image_header(path, source, desc)
        if j == 0:
            first_alpha = alpha
        w_decl, h_decl = get("w"), get("h")
        if w_decl is not None or h_decl is not None:
            w = int(round(number(w_decl if w_decl is not None else iw, source, desc, "w", positive=True)))
            h = int(round(number(h_decl if h_decl is not None else ih, source, desc, "h", positive=True)))
            if (w, h) != (iw, ih):
                raise InputError(source, f"{desc}: image {path.name} is {iw}x{ih} but the json declares {w}x{h}",
                                 "restore the original image or fix w/h in the json")
        else:
            w, h = iw, ih
            if same_size:
                if ref_size is None:
                    ref_size = (w, h)
                elif (w, h) != ref_size:
                    raise InputError(source, f"{desc}: image {path.name} is {w}x{h} but the other frames are "
                                     f"{ref_size[0]}x{ref_size[1]}", "restore the original image size")

        fl_x, fl_y = get("fl_x"), get("fl_y")
        if fl_x is not None:
            fx = number(fl_x, source, desc, "fl_x", positive=True)
        elif get("camera_angle_x") is not None:
            fx = 0.5 * w / math.tan(0.5 * field_of_view(get("camera_angle_x"), source, desc, "camera_angle_x"))
        else:
            raise InputError(source, f"{desc}: no focal length (fl_x or camera_angle_x)",
                             "add fl_x/fl_y or camera_angle_x to the json")
        if fl_y is not None:
            fy = number(fl_y, source, desc, "fl_y", positive=True)
        elif fl_x is None and get("camera_angle_y") is not None:
            fy = 0.5 * h / math.tan(0.5 * field_of_view(get("camera_angle_y"), source, desc, "camera_angle_y"))
        else:
            fy = fx
        cx = number(get("cx", w / 2.0), source, desc, "cx")
        cy = number(get("cy", h / 2.0), source, desc, "cy")

        model = get("camera_model")
        if model is None:
            model = "OPENCV_FISHEYE" if get("is_fisheye") else None
        if model is not None:
            if str(model).upper() not in _MODEL_ALIASES:
                raise InputError(source, f"{desc}: unsupported camera_model {model!r}",
                                 f"use one of {', '.join(sorted(_MODEL_ALIASES))}")
            model = _MODEL_ALIASES[str(model).upper()]
        coeffs = np.array([number(get(k, 0.0), source, desc, k) for k in _DIST_KEYS], dtype=np.float64)
        if model == "OPENCV_FISHEYE":
            distortion = coeffs
        elif np.any(coeffs != 0):
            model = "OPENCV"
            distortion = coeffs
        else:
            model, distortion = "PINHOLE", None

        camera = Camera(c2w, fx, fy, cx, cy, w, h, distortion=distortion, model=model)
        frames.append(Frame(camera, path=path, name=frame_name(fp)))
    return frames, first_alpha
