"""Convex parts as separate closed meshes: one .glb with a node per part, or a folder of .obj files.

A part is the convex hull of its corners (``convex_part``): corners closer than ``mesh.weld.WELD_TOL`` of the
part's diagonal are merged first, so the welds of other tools (trimesh's default load, a merge by distance)
find the same closed, convex mesh. Faces are counter-clockwise seen from outside.

Files (``write_parts``): ``*.glb``: one scene, nodes and meshes named part_000, part_001, ... in part order;
any other path without a suffix (or ending in /) is a folder that gets part_000.obj, part_001.obj, ...; the folder
must be new, empty, or hold only such files (a re-export replaces them). Every file is written atomically.
"""

import re
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

from .weld import WELD_TOL, diagonal, merge_close

PART = re.compile(r"part_\d{3,}\.obj")


def convex_part(points) -> tuple[np.ndarray, np.ndarray]:
    """Closed convex hull (vertices [V,3] float64, faces [F,3] int64) of corner points [N,3] (module doc); empty
    arrays when they span no volume."""
    from scipy.spatial import QhullError

    from .convex import oriented_hull

    p = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 3), axis=0)
    if len(p) >= 2:
        p, _ = merge_close(p, np.arange(len(p)).reshape(-1, 1).repeat(3, 1), WELD_TOL * diagonal(p))
    if len(p) < 4:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    try:
        return oriented_hull(p)
    except (QhullError, ValueError):  # flat: no volume
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)


def parts_target(out) -> str:
    """'glb' or 'folder' for an output path (module doc); InputError for another suffix."""
    text, p = str(out), Path(out)
    if p.suffix.lower() == ".glb":
        return "glb"
    if text.endswith(("/", "\\")) or not p.suffix or p.is_dir():
        return "folder"
    raise InputError(out, f"cannot write parts to '{p.suffix}'", "give a .glb file or a folder (e.g. parts/)")


def write_parts(parts: list, out) -> Path:
    """Write ``parts`` [(vertices, faces)] to ``out`` (module doc); returns the path written."""
    import trimesh

    from fieldfit.runs import write_bytes

    meshes = [trimesh.Trimesh(v, f, process=False) for v, f in parts]
    out = Path(out)
    if parts_target(out) == "glb":
        scene = trimesh.Scene()
        for k, m in enumerate(meshes):
            scene.add_geometry(m, node_name=f"part_{k:03d}", geom_name=f"part_{k:03d}")
        return write_bytes(out, scene.export(file_type="glb"))
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder", "give a new folder or a .glb file")
    others = sorted(p.name for p in out.iterdir() if not PART.fullmatch(p.name)) if out.is_dir() else []
    if others:
        raise InputError(out, f"is a folder that holds other files ({', '.join(others[:3])})",
                         "give a new or empty folder, or a .glb file")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():  # parts of an earlier export beyond the new count
        if PART.fullmatch(old.name) and int(old.stem[5:]) >= len(meshes):
            old.unlink()
    for k, m in enumerate(meshes):
        text = m.export(file_type="obj", include_normals=False, include_texture=False)
        write_bytes(out / f"part_{k:03d}.obj", text.encode() if isinstance(text, str) else text)
    return out


__all__ = ["convex_part", "parts_target", "write_parts"]
