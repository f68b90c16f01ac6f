"""BSP meshes as other tools load them: spot and featuretype fitted with bsp, exported, reloaded welded.

Each mesh is fitted with `fieldfit MESH --method bsp` (a subprocess, as a user runs it), then every mesh the run
wrote (mesh.ply, mesh.obj) is read back three ways: as written (no merge), as trimesh loads it by default
(``process=True``: positions rounded to 1e-8 and merged) and merged by distance at ``WELD_TOL`` of the bounding-box
diagonal (MeshLab's merge of close vertices, Blender's merge by distance: ``mesh.weld.load_welded``). For each:
closed 2-manifold, signed volume, Euler number and shells, beside the input's Euler number and what metrics.json
reports. Then the union alone, of the run's trained convexes and of 64 convexes freshly seeded in spot:
the boolean and the weld timed apart, and what trimesh's weld finds in the boolean before ``weld_safe``. The
load average is recorded with each row: the machine is shared.

    python bench/bsp_weld.py [--time-budget S] [--only spot.obj] [--out FILE]
        -> bench/results/bsp_weld_<date>.json
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, RESULTS, fit_into, write

MESHES = ("spot.obj", "featuretype.STL")


def figures(path: Path, tol) -> dict:
    """Closed / volume / Euler / shells of ``path`` loaded with merge tolerance ``tol`` (see ``load_welded``);
    tol "raw": as written, nothing merged."""
    from fieldfit.mesh.weld import load_welded, mesh_report

    v, f = load_welded(path, 0.0 if tol == "raw" else tol)
    return mesh_report(v, f)


def run_one(mesh: Path, budget: float | None, out: Path) -> dict:
    from fieldfit.mesh.weld import WELD_TOL
    from fieldfit.scenes.shapes import load_shape

    load = os.getloadavg()[0]
    try:
        m = fit_into(out, mesh, "--method", "bsp", budget=budget)
    except RuntimeError as e:
        return {"case": mesh.name, "error": str(e)[-1500:]}
    keys = ("iou", "chamfer_l2", "watertight", "euler", "components", "faces", "polygons", "convexes", "steps",
            "train_seconds", "extraction_seconds", "reload")
    shape = load_shape(mesh)
    row = {"case": mesh.name, "budget_s": budget, "input_euler": shape.euler, "input_components": shape.components,
           "reported": {k: m.get(k) for k in keys}, "wall_seconds": m["wall_seconds"]}
    for name in ("mesh.ply", "mesh.obj"):
        row[name] = {"as_written": figures(out / name, "raw"), "trimesh_process": figures(out / name, None),
                     f"merged_{WELD_TOL:g}": figures(out / name, WELD_TOL)}
    row["weld_timing"] = weld_timing(out)
    row.update(load_avg_1min_start=load, load_avg_1min_end=os.getloadavg()[0])
    return row


def weld_timing(run: Path) -> dict:
    """``union_timing`` of the run's trained (pruned) convexes."""
    import fieldfit

    return union_timing(fieldfit.load(run, "cpu").field)


def seeded_timing() -> dict:
    """``union_timing`` of 64 convexes freshly seeded in spot (overlapping far more than trained ones)."""
    import numpy as np

    from fieldfit.fields.bsp import BSPField, BSPFieldConfig
    from fieldfit.scenes.shapes import load_shape

    shape = load_shape(DATA / "meshes" / "spot.obj")
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (200_000, 3)).astype(np.float32)
    inside = shape.inside(p)
    field = BSPField(BSPFieldConfig(planes=512, convexes=64))
    field.seed_all(p[inside], p[~inside], rng)
    return union_timing(field)


def union_timing(field, repeats: int = 3) -> dict:
    """Seconds of the boolean union and of ``weld_safe`` on the live convexes of a ``BSPField``, and what a weld
    at 1e-8 (trimesh's) finds in the boolean's own output, before ``weld_safe``."""
    import numpy as np
    import torch

    from fieldfit.mesh.convex import boolean_union, convex_polytope
    from fieldfit.mesh.weld import WELD_TOL, diagonal, merge_by_distance, mesh_report, weld_safe
    from fieldfit.methods.bsp.pipeline import BOX

    alive = torch.nonzero(field.alive).flatten().tolist()
    polys = [convex_polytope(field.convex_planes(j), BOX) for j in alive]
    boolean_s, weld_s = np.inf, np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        v, f, _ = boolean_union(polys)
        t1 = time.perf_counter()
        v2, f2, _ = weld_safe(v, f)
        boolean_s, weld_s = min(boolean_s, t1 - t), min(weld_s, time.perf_counter() - t1)
    return {"convexes": len(alive), "faces_boolean": int(len(f)), "faces_weld_safe": int(len(f2)),
            "vertices_boolean": int(len(np.unique(f))), "vertices_weld_safe": int(len(np.unique(f2))),
            "boolean_welded_1e-8": mesh_report(*merge_by_distance(v, f, 1e-8)),
            "weld_safe_merged": mesh_report(*merge_by_distance(v2, f2, WELD_TOL * diagonal(v2))),
            "boolean_seconds": boolean_s, "weld_seconds": weld_s,
            "load_avg_1min": os.getloadavg()[0]}


def closed_everywhere(row: dict) -> bool:
    """Every reload of every file closed, with positive volume and the Euler number and shells reported."""
    rep = row["reported"]
    loads = [v for name in ("mesh.ply", "mesh.obj") for v in row[name].values()]
    return bool(rep["watertight"]) and all(x["closed"] and x["volume"] > 0 and x["euler"] == rep["euler"]
                                           and x["shells"] == rep["components"] for x in loads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-budget", type=float, help="seconds of each fit (default: bsp's own default)")
    ap.add_argument("--only", nargs="*", help="mesh file names (default: spot.obj featuretype.STL)")
    ap.add_argument("--out", help="JSON to write (default bench/results/bsp_weld_<date>.json)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.only or MESHES:
            rows.append(run_one(DATA / "meshes" / name, a.time_budget, Path(tmp) / name))
            print(json.dumps(rows[-1]), flush=True)
    seeded = seeded_timing()
    print("64 seeded convexes:", json.dumps(seeded), flush=True)
    ok = all("error" not in r and closed_everywhere(r) for r in rows) and seeded["weld_safe_merged"]["ok"]
    out = Path(a.out) if a.out else RESULTS / f"bsp_weld_{time.strftime('%Y-%m-%d')}.json"
    write(out.stem, {"time_budget_s": a.time_budget, "rows": rows, "seeded_64": seeded, "all_closed": ok}, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
