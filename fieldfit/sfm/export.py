"""A COLMAP reconstruction as the nerfstudio ``transforms.json`` fieldfit reads (``fieldfit.scenes.nerfstudio``),
plus its sparse points as a PLY.

Conventions:
* World coordinates: COLMAP fixes no origin, orientation or scale; ``fieldfit poses`` moves the model into
  ``align.canonical_frame`` (``upright``: z up, the point the cameras look at at the origin, the cameras 4 units
  from it) before it writes both ``sparse/0`` and ``transforms.json``, so the two describe the same cameras and
  points.
* ``transform_matrix``: the OpenGL camera-to-world 4x4 of COLMAP's world-from-camera (OpenCV axes: x right, y
  down, z forward) with its y and z axes negated.
* Intrinsics in pixels; COLMAP and fieldfit both put pixel (row i, col j)'s centre at (j + 0.5, i + 0.5), so cx, cy
  carry over unchanged. One shared camera -> the intrinsics at the top level, else per frame. Camera models:
  SIMPLE_PINHOLE / PINHOLE -> "PINHOLE"; SIMPLE_RADIAL (f, cx, cy, k) -> "OPENCV" with k1 = k; RADIAL -> "OPENCV"
  k1, k2; OPENCV -> "OPENCV" k1, k2, p1, p2.
* Frames: the registered images sorted by name, ``file_path`` "images/NAME"; ``ply_file_path`` "points3D.ply"
  (every 3D point with its colour, float xyz and uint8 rgb).
"""

from pathlib import Path

import numpy as np

from fieldfit.errors import FitError
from fieldfit.runs import atomic_write, write_json

GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
POINTS_FILE = "points3D.ply"


def intrinsics(camera) -> dict:
    """The nerfstudio keys of a pycolmap Camera (see the module doc)."""
    model, p = camera.model_name, [float(v) for v in camera.params]
    out = {"w": int(camera.width), "h": int(camera.height)}
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        out.update(fl_x=p[0], fl_y=p[0], cx=p[1], cy=p[2])
        dist = {"k1": p[3]} if model == "SIMPLE_RADIAL" else {"k1": p[3], "k2": p[4]} if model == "RADIAL" else {}
    elif model in ("PINHOLE", "OPENCV"):
        out.update(fl_x=p[0], fl_y=p[1], cx=p[2], cy=p[3])
        dist = dict(zip(("k1", "k2", "p1", "p2"), p[4:8], strict=True)) if model == "OPENCV" else {}
    else:
        raise FitError(f"camera model {model} has no transforms.json form (use PINHOLE, SIMPLE_RADIAL or OPENCV)")
    dist = {k: v for k, v in dist.items() if v != 0.0}
    out["camera_model"] = "OPENCV" if dist else "PINHOLE"
    out.update(dist)
    return out


def c2w_opengl(image) -> np.ndarray:
    """[4,4] OpenGL camera-to-world of a registered pycolmap Image."""
    pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
    m = np.eye(4)
    m[:3] = pose.inverse().matrix()
    return m @ GL_FROM_CV


def upright(rec) -> tuple[float, np.ndarray, np.ndarray]:
    """Move reconstruction ``rec`` (its cameras and points) into ``align.canonical_frame`` of its registered
    cameras; returns the similarity (s, R, t) applied, x -> s R x + t."""
    import pycolmap

    from .align import canonical_frame

    poses = np.stack([c2w_opengl(im)[:3] for im in rec.images.values() if im.has_pose])
    s, r, t = canonical_frame(poses)
    rec.transform(pycolmap.Sim3d(s, pycolmap.Rotation3d(r), t))
    return s, r, t


def transforms(rec, image_dir: str = "images") -> dict:
    """The transforms.json dict of reconstruction ``rec`` (see the module doc)."""
    images = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    cams = {im.camera_id for im in images}
    meta = intrinsics(rec.cameras[next(iter(cams))]) if len(cams) == 1 else {}
    frames = []
    for im in images:
        f = {"file_path": f"{image_dir}/{im.name}", "transform_matrix": c2w_opengl(im).tolist()}
        if len(cams) > 1:
            f.update(intrinsics(rec.cameras[im.camera_id]))
        frames.append(f)
    return {**meta, "frames": frames, "ply_file_path": POINTS_FILE}


def points(rec) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [N,3] float64, rgb [N,3] uint8) of every 3D point, in point-id order."""
    ids = sorted(rec.points3D)
    if not ids:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xyz = np.stack([rec.points3D[i].xyz for i in ids]).astype(np.float64)
    rgb = np.stack([rec.points3D[i].color for i in ids]).astype(np.uint8)
    return xyz, rgb


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """A binary little-endian PLY of coloured points (float x y z, uchar red green blue)."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(xyz)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rows = np.empty(len(xyz), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    rows["p"], rows["c"] = xyz, rgb

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rows.tobytes())

    return atomic_write(path, write)


def write_scene(rec, scene: Path) -> dict:
    """transforms.json and points3D.ply of ``rec`` into ``scene``; returns the transforms dict."""
    meta = transforms(rec)
    write_ply(scene / POINTS_FILE, *points(rec))
    write_json(scene / "transforms.json", meta)
    return meta


__all__ = ["c2w_opengl", "intrinsics", "points", "transforms", "upright", "write_ply", "write_scene"]
