"""Camera paths in nerfstudio's format (the camera_path.json its viewer and ``ns-render camera-path`` use).

The file is a JSON object:
- ``camera_path``: a list of frames, each with ``camera_to_world`` (16 numbers: a 4x4 matrix, row-major, OpenGL
  axes: x right, y up, looking along -z; in the run's world frame) and ``fov`` (vertical field of view, degrees;
  nerfstudio also writes ``aspect``, which the image size already fixes);
- ``render_width``, ``render_height``: the image size in pixels; ``fps``; ``seconds``;
- ``camera_type``: only "perspective" (the default) is drawn.

Intrinsics as nerfstudio sets them: fx = fy = (height / 2) / tan(fov / 2), principal point at the image centre.
The frame rate is ``fps``, else frames / ``seconds``, else 24. ``--size`` and ``--fps`` override the file's.
A file that is not so raises ``InputError`` naming the key that is wrong.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

from .camera import Camera

DEFAULT_FPS = 24.0
MAX_SIDE = 8192


@dataclass
class CameraPath:
    """The cameras of a path file (sized) and its frame rate."""

    cameras: list[Camera]
    fps: float


def _number(value, where: str, path, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low < value < high:
        span = f" in ({low:g}, {high:g})" if math.isfinite(low) or math.isfinite(high) else ""
        raise InputError(path, f"'{where}' must be a finite number{span}, got {json.dumps(value)}",
                         "fix that entry of the camera path")
    return float(value)


def _size(data: dict, key: str, path, given: int | None) -> int:
    if given is not None:
        return int(given)
    if key not in data:
        raise InputError(path, f"has no '{key}'", f"add \"{key}\" (pixels) or pass --size WxH")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 1 <= value <= MAX_SIDE:
        raise InputError(path, f"'{key}' must be a whole number of pixels in 1..{MAX_SIDE}, got {json.dumps(value)}",
                         "fix it or pass --size WxH")
    return int(value)


def _read(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "camera path file not found", "check the path (a nerfstudio camera_path.json)")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(p, f"is not JSON ({e})", "give a nerfstudio camera_path.json") from None
    if not isinstance(data, dict):
        raise InputError(p, f"holds a JSON {type(data).__name__}, not an object", "give a nerfstudio camera_path.json")
    return data


def _pose(frame, k: int, path) -> np.ndarray:
    where = f"camera_path[{k}].camera_to_world"
    if not isinstance(frame, dict) or "camera_to_world" not in frame:
        raise InputError(path, f"'{where}' is missing", "each frame needs a 4x4 camera_to_world (16 numbers)")
    m = frame["camera_to_world"]
    if isinstance(m, list) and m and all(isinstance(row, list) for row in m):  # also [[4 numbers] x 4]
        m = [x for row in m for x in row]
    if not isinstance(m, list) or len(m) != 16:
        raise InputError(path, f"'{where}' must be 16 numbers (a row-major 4x4 matrix)", "fix that frame")
    c2w = np.array([_number(x, where, path) for x in m]).reshape(4, 4)
    if np.linalg.matrix_rank(c2w[:3, :3], tol=1e-9) < 3:
        raise InputError(path, f"'{where}' has a singular rotation", "fix that frame")
    return c2w[:3]


def load_camera_path(path, size: tuple[int, int] | None = None, fps: float | None = None) -> CameraPath:
    """The cameras and frame rate of a nerfstudio camera path file (module doc); ``size`` (width, height) and
    ``fps`` override the file's."""
    data = _read(path)
    kind = data.get("camera_type", "perspective")
    if kind != "perspective":
        raise InputError(path, f"'camera_type' {json.dumps(kind)} is not drawn", "use a perspective camera path")
    frames = data.get("camera_path")
    if not isinstance(frames, list) or not frames:
        raise InputError(path, "'camera_path' must be a non-empty list of frames",
                         "export a camera path from nerfstudio's viewer, or write one (README: Render)")
    width = _size(data, "render_width", path, None if size is None else size[0])
    height = _size(data, "render_height", path, None if size is None else size[1])
    cameras = []
    for k, frame in enumerate(frames):
        c2w = _pose(frame, k, path)
        if "fov" not in frame:
            raise InputError(path, f"'camera_path[{k}].fov' is missing", "give the vertical field of view in degrees")
        fov = _number(frame["fov"], f"camera_path[{k}].fov", path, 0.0, 180.0)
        focal = 0.5 * height / math.tan(math.radians(fov) / 2.0)
        cameras.append(Camera(c2w, focal, focal, width / 2.0, height / 2.0, width, height))
    if fps is None:
        if "fps" in data:
            fps = _number(data["fps"], "fps", path, 0.0)
        elif "seconds" in data:
            fps = len(cameras) / _number(data["seconds"], "seconds", path, 0.0)
        else:
            fps = DEFAULT_FPS
    return CameraPath(cameras, float(fps))


def camera_path_json(cameras: list[Camera], fps: float = DEFAULT_FPS) -> dict:
    """A nerfstudio camera path of ``cameras`` (one size, square pixels, centred principal point)."""
    c0 = cameras[0]
    frames = [{"camera_to_world": np.vstack([c.c2w, [0.0, 0.0, 0.0, 1.0]]).reshape(-1).tolist(),
               "fov": math.degrees(c.fov_y), "aspect": c.width / c.height} for c in cameras]
    return {"camera_type": "perspective", "render_width": c0.width, "render_height": c0.height, "fps": fps,
            "seconds": len(cameras) / fps, "camera_path": frames}


__all__ = ["CameraPath", "DEFAULT_FPS", "camera_path_json", "load_camera_path"]
