"""Write meshes to disk atomically (a reader never sees a half-written file)."""

import os
import tempfile
from pathlib import Path

import numpy as np
import trimesh

from fieldfit.errors import InputError

from .io import SUPPORTED_MESH_EXTS


def export_mesh(vertices, faces, path, vertex_colors=None) -> Path:
    """Save a triangle mesh as .ply .obj .stl .off or .glb, atomically.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so an interrupted export never leaves a truncated mesh under ``path``.

    Args:
        vertices: [V,3] float.
        faces: [F,3] int.
        path: output file; the extension picks the format. Missing folders are created.
        vertex_colors: optional [V,3] or [V,4], uint8 0-255 or float 0-1 (dropped by .stl,
            which has no colours).

    Returns:
        Path of the written file.

    Raises:
        InputError: unsupported extension.
        ValueError: arrays of the wrong shape.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_MESH_EXTS:
        raise InputError(p, f"cannot export to '{p.suffix}'", f"use one of {' '.join(SUPPORTED_MESH_EXTS)}")
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"vertices must be [V,3] and faces [F,3], got {v.shape} and {f.shape}")
    colors = None
    if vertex_colors is not None:
        colors = np.asarray(vertex_colors)
        if colors.shape[0] != len(v) or colors.shape[1] not in (3, 4):
            raise ValueError(f"vertex_colors must be [V,3] or [V,4], got {colors.shape}")
        if colors.dtype.kind == "f":
            colors = np.clip(np.round(colors * 255), 0, 255).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices=v, faces=f, vertex_colors=colors, process=False)
    data = mesh.export(file_type=ext[1:])
    if isinstance(data, str):
        data = data.encode("utf-8")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
