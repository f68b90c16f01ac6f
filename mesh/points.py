"""Coloured point clouds: thinning on a voxel grid and binary PLY files.

A ``PointCloud`` is points [N,3] float (the run's world frame), colours [N,3] uint8 and optional unit normals
[N,3]. ``voxel_thin`` keeps one point per occupied cell of a cubic grid (the mean position, colour and normal of
the points in it), with the smallest cell (doubling from ``min_cell``) that leaves at most ``max_points``.

PLY files (``write_ply``): ``binary_little_endian 1.0``, one element ``vertex`` with float32 properties x y z,
then nx ny nz when there are normals, then uchar red green blue; written atomically.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class PointCloud:
    """points [N,3] float64, colours [N,3] uint8, normals [N,3] float (unit) or None."""

    points: np.ndarray
    colours: np.ndarray
    normals: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)

    def take(self, keep) -> "PointCloud":
        return PointCloud(self.points[keep], self.colours[keep], None if self.normals is None else self.normals[keep])

    @staticmethod
    def concat(clouds: list["PointCloud"]) -> "PointCloud":
        clouds = [c for c in clouds if len(c)]
        if not clouds:
            return PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
        normals = None if any(c.normals is None for c in clouds) else np.concatenate([c.normals for c in clouds])
        return PointCloud(np.concatenate([c.points for c in clouds]), np.concatenate([c.colours for c in clouds]),
                          normals)


def to_uint8(colours) -> np.ndarray:
    """float colours in [0,1] (or uint8) [N,3] -> uint8, rounded."""
    c = np.asarray(colours)
    if c.dtype == np.uint8:
        return c
    return (np.clip(c, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _cells(points: np.ndarray, size: float) -> tuple[np.ndarray, int]:
    """(cell id of each point [N], number of distinct cells) on a grid of cubes of side ``size``."""
    _, inverse = np.unique(np.floor((points - points.min(axis=0)) / size).astype(np.int64), axis=0,
                           return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max()) + 1 if len(inverse) else 0


def voxel_thin(cloud: PointCloud, max_points: int, min_cell: float) -> PointCloud:
    """One point per occupied cell (mean position, colour, normal), the cell the smallest of ``min_cell`` * 2^k
    that leaves at most ``max_points`` (module doc)."""
    if len(cloud) == 0:
        return cloud
    size = float(min_cell)
    cell, count = _cells(cloud.points, size)
    while count > max_points:
        size *= 2.0
        cell, count = _cells(cloud.points, size)
    n = np.bincount(cell, minlength=count).astype(np.float64)[:, None]

    def mean(x):
        return np.stack([np.bincount(cell, weights=x[:, j], minlength=count) for j in range(x.shape[1])], 1) / n

    normals = None
    if cloud.normals is not None:
        normals = mean(np.asarray(cloud.normals, np.float64))
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    colours = to_uint8(mean(cloud.colours.astype(np.float64)) / 255.0)
    return PointCloud(mean(np.asarray(cloud.points, np.float64)), colours, normals)


def ply_bytes(cloud: PointCloud) -> bytes:
    """The binary PLY of ``cloud`` (module doc)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if cloud.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.empty(len(cloud), dtype=fields)
    for j, axis in enumerate("xyz"):
        rows[axis] = cloud.points[:, j]
        if cloud.normals is not None:
            rows["n" + axis] = cloud.normals[:, j]
    for j, name in enumerate(("red", "green", "blue")):
        rows[name] = cloud.colours[:, j]
    kinds = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment fieldfit point cloud", f"element vertex {len(cloud)}"]
    header += [f"property {kinds[t]} {name}" for name, t in fields] + ["end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + rows.tobytes()


def write_ply(cloud: PointCloud, path) -> Path:
    """Write ``cloud`` as a binary PLY at ``path``, atomically (``fieldfit.runs.write_bytes``)."""
    from fieldfit.runs import write_bytes

    return write_bytes(Path(path), ply_bytes(cloud))


__all__ = ["PointCloud", "ply_bytes", "to_uint8", "voxel_thin", "write_ply"]
