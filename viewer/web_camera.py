"""The browser's camera and ours: viser's client camera <-> ``fieldfit.render.camera.Camera`` (pure numpy).

viser reports a client camera as ``wxyz`` (unit quaternion w, x, y, z: the camera-to-world rotation), ``position``
(the camera centre), ``fov`` (the vertical field of view in radians) and the canvas size in pixels
(``image_width`` x ``image_height``). Its camera axes follow OpenCV: x right, y down, looking along +z. Ours follow
OpenGL (x right, y up, looking along -z), so the two rotations differ by the flip of the y and z columns:
``R_ours = R_viser @ diag(1, -1, -1)``. The browser draws a pinhole with square pixels and the principal point at
the canvas centre; ``from_viser`` returns exactly that lens (``viewer.camera.lens``), so its rays are the ones the
browser's frustum shows. A scene camera with another lens (an off-centre principal point) keeps its pose and
vertical field of view in the browser.
"""

import math

import numpy as np

from fieldfit.render.camera import Camera

from .camera import lens

FLIP = np.array([1.0, -1.0, -1.0])  # OpenGL <-> OpenCV camera axes (y and z reversed)


def quat_to_matrix(wxyz) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation matrix (the quaternion is normalised first)."""
    w, x, y, z = np.asarray(wxyz, np.float64) / np.linalg.norm(wxyz)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(r) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion (w, x, y, z) with w >= 0 (from the largest of the four diagonal
    combinations, so it is accurate for every rotation)."""
    r = np.asarray(r, np.float64)
    t = np.trace(r)
    k = int(np.argmax([t, r[0, 0], r[1, 1], r[2, 2]]))
    if k == 0:
        s = 2.0 * math.sqrt(1.0 + t)
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        s = 2.0 * math.sqrt(max(1.0 + r[i, i] - r[j, j] - r[m, m], 1e-300))
        q = [0.0] * 4
        q[0] = (r[m, j] - r[j, m]) / s
        q[1 + i] = s / 4
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + m] = (r[m, i] + r[i, m]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def orthonormal(r) -> np.ndarray:
    """The rotation nearest to ``r`` (scene poses may carry a little scale or shear)."""
    u, _, vt = np.linalg.svd(np.asarray(r, np.float64))
    out = u @ vt
    if np.linalg.det(out) < 0:
        out = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return out


def to_viser(camera: Camera) -> tuple[np.ndarray, np.ndarray, float]:
    """(position [3], wxyz [4], vertical fov in radians) of ``camera`` in viser's convention."""
    r = orthonormal(camera.c2w[:, :3]) * FLIP
    return camera.c2w[:, 3].copy(), matrix_to_quat(r), camera.fov_y


def from_viser(position, wxyz, fov: float, width: int, height: int) -> Camera:
    """The Camera of a viser client camera whose canvas is ``width`` x ``height`` pixels."""
    c2w = np.concatenate([quat_to_matrix(wxyz) * FLIP, np.asarray(position, np.float64).reshape(3, 1)], 1)
    return lens(int(width), int(height), c2w, fov_y=math.degrees(float(fov)))


def same_view(a: Camera, b: Camera, tol: float = 1e-5) -> bool:
    """Whether two cameras share size, pose and vertical field of view (to ``tol``, positions relative to the
    larger distance from the origin): a browser echoing the pose it was sent has not moved."""
    if (a.width, a.height) != (b.width, b.height):
        return False
    scale = max(1.0, float(np.abs(a.c2w[:, 3]).max()), float(np.abs(b.c2w[:, 3]).max()))
    return (np.abs(a.c2w[:, :3] - b.c2w[:, :3]).max() <= tol and np.abs(a.c2w[:, 3] - b.c2w[:, 3]).max() <= tol * scale
            and abs(a.fov_y - b.fov_y) <= tol)


__all__ = ["FLIP", "from_viser", "matrix_to_quat", "orthonormal", "quat_to_matrix", "same_view", "to_viser"]
