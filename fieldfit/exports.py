"""``fieldfit export`` beyond the run's own mesh: a decimated mesh (``--faces``), a point cloud (``--points``) and
convex parts (``--parts``). Each takes a loaded run (``fieldfit.load``) and returns the figures the command prints.

Decimated meshes (``decimated_mesh``): the run's watertight mesh (or its ``--via bsp`` proxy) is made first, then
decimated by ``mesh.decimate`` (topology kept, checked as other tools load it) and written; watertight, Euler
number and components are those of the written file loaded as other tools load it (``tasks.shapes.reloaded``).
``chamfer_l2`` compares the full and the decimated mesh with the fit's convention (``mesh.metrics.chamfer_l2``:
mean Euclidean nearest-neighbour distance of 100k area-weighted samples, both ways averaged) in the full mesh's
unit frame (its box centred at 0 with diagonal 1.9, as shapes are fitted).
"""

import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError

MAX_FACES = 50_000_000
MAX_POINTS = 50_000_000


def _load_full(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices, faces, vertex colours uint8 [V,4] or None) of a mesh file as written (no merging)."""
    import trimesh

    mesh = trimesh.load(str(path), process=False, force="mesh")
    colours = np.asarray(mesh.visual.vertex_colors) if mesh.visual.kind == "vertex" else None
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64), colours


def decimated_mesh(model, out: Path, faces: int, write_full) -> dict:
    """Write at most ``faces`` faces of the mesh ``write_full(path) -> figures`` makes (module doc) to ``out``."""
    from fieldfit.mesh.decimate import decimate, topology
    from fieldfit.mesh.export import export_mesh
    from fieldfit.mesh.io import normalization, to_unit
    from fieldfit.mesh.metrics import chamfer_l2

    from .tasks.shapes import reloaded

    with tempfile.TemporaryDirectory(prefix="fieldfit-export-") as tmp:
        full = Path(tmp) / "full.ply"
        m = write_full(full)
        if m.get("mesh_error") or not full.is_file():
            return m
        v, f, colours = _load_full(full)
    before = topology(v, f)
    try:
        d = decimate(v, f, faces, colours)
    except ValueError:
        raise InputError(model.run.path, "its mesh is not a closed 2-manifold once welded: no topology to keep",
                         "export it without --faces") from None
    export_mesh(d.vertices, d.faces, out, vertex_colors=d.colours)
    again = reloaded(out)
    center, scale = normalization(v)
    chamfer = chamfer_l2((to_unit(v, center, scale), f), (to_unit(d.vertices, center, scale), d.faces))
    return {"mesh": str(out), "faces": int(len(d.faces)), "faces_before": int(len(f)),
            "watertight": bool(again["watertight"]), "euler": again["euler"], "euler_before": before.euler,
            "components": again["components"], "components_before": before.shells, "chamfer_l2": chamfer,
            "passes": d.passes, "note": d.note}


def points(model, out: Path, max_points: int) -> dict:
    """Write the run's point cloud (``Model.point_cloud``) as a binary PLY (``mesh.points.write_ply``)."""
    from fieldfit.mesh.points import write_ply

    cloud = model.point_cloud(int(max_points))
    write_ply(cloud, out)
    return {"points": len(cloud), "normals": cloud.normals is not None}


def parts(model, out: Path, via_bsp: bool = False, convexes: int | None = None, budget=None) -> dict:
    """Write the run's convex parts (``Model.parts``, or with ``via_bsp`` those of a bsp proxy fitted to it) to a
    .glb or a folder (``mesh.parts.write_parts``)."""
    from fieldfit.mesh.parts import write_parts
    from fieldfit.mesh.topology import signed_volume

    if via_bsp:
        from fieldfit.methods.bsp.proxy import parts_via_bsp

        found = parts_via_bsp(model, convexes, budget)
    else:
        found = model.parts()
    if not found:
        raise InputError(model.run.path, "the run has no convex part with volume", "train the run longer")
    write_parts(found, out)
    return {"parts": len(found), "volume_sum": float(sum(signed_volume(v, f) for v, f in found))}


__all__ = ["MAX_FACES", "MAX_POINTS", "decimated_mesh", "parts", "points"]
