"""BSP benchmark: every shared mesh through `fieldfit MESH --method bsp`, exported meshes checked.

For each mesh: IoU, Chamfer, faces, convexes, planes, extraction time, and whether every file
the run exported (mesh.ply, mesh.obj read back as triangles, convexes.ply) is one watertight,
consistently oriented, edge-manifold surface. Then the extraction alone (64 convexes: polytopes
+ union, ``fieldfit.load(run).mesh()``), timed from the spot run's checkpoint. The load average is
recorded with each row: the machine is shared, and timings are only comparable at similar load.

    python bench/bsp_bench.py [--budget 60] [--only spot.obj]   -> bench/results/bsp_60s.json
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, fit_into, write

MESHES = ("spot.obj", "featuretype.STL", "armadillo.obj", "bunny_ngp_small.obj", "bunny_zipper_res2.ply",
          "stanford-bunny.obj", "teapot.obj")


def closed(path: Path) -> bool:
    import trimesh

    from fieldfit.mesh.topology import edge_stats, is_watertight

    m = trimesh.load(path, process=False, force="mesh")
    st = edge_stats(m.faces)
    return bool(is_watertight(m.vertices, m.faces) and st["nonmanifold"] == 0)


def obj_closed(path: Path) -> bool:
    """The n-gon .obj: every directed polygon edge has its reversed twin, once."""
    edges = {}
    for line in path.read_text().splitlines():
        if line.startswith("f "):
            idx = [int(t.split("/")[0]) for t in line.split()[1:]]
            for a, b in zip(idx, idx[1:] + idx[:1], strict=True):
                edges[(a, b)] = edges.get((a, b), 0) + 1
    return bool(edges) and all(n == 1 and edges.get((b, a)) == 1 for (a, b), n in edges.items())


def run_one(mesh: Path, budget: float, out: Path) -> dict:
    load = os.getloadavg()[0]
    try:
        m = fit_into(out, mesh, "--method", "bsp", budget=budget)
    except RuntimeError as e:
        return {"case": mesh.name, "error": str(e)[-1500:]}
    keys = ("iou", "chamfer_l2", "normal_consistency", "watertight", "faces", "polygons", "convexes", "planes",
            "components", "euler", "input_euler", "steps", "extraction_seconds", "train_seconds")
    row = {"case": mesh.name, "budget_s": budget, **{k: m.get(k) for k in keys}}
    row.update(files_closed={f: (obj_closed if f.endswith(".obj") else closed)(out / f)
                             for f in ("mesh.ply", "mesh.obj", "convexes.ply")},
               wall_seconds=m["wall_seconds"], load_avg_1min_start=load, load_avg_1min_end=os.getloadavg()[0])
    return row


def extraction_timing(run: Path, repeats: int = 3) -> dict:
    """Polytopes + union (``BSPRun.mesh``): the trained (pruned) convexes of ``run``, then 64 freshly seeded ones."""
    import numpy as np

    import fieldfit
    from fieldfit.fields.bsp import BSPField, BSPFieldConfig
    from fieldfit.scenes.shapes import load_shape

    def seconds(model) -> float:
        t = time.perf_counter()
        model.mesh()
        return time.perf_counter() - t

    model = fieldfit.load(run, "cpu")  # a fieldfit.methods.bsp BSPRun
    trained = min(seconds(model) for _ in range(repeats))
    shape = load_shape(DATA / "meshes" / "spot.obj")
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (200_000, 3)).astype(np.float32)
    inside = shape.inside(p)
    seeded = BSPField(BSPFieldConfig(planes=512, convexes=64))
    seeded.seed_all(p[inside], p[~inside], rng)
    fresh = fieldfit.load(run, "cpu", trained=False)
    fresh.field = seeded  # the run's mesh() of the seeded convexes
    return {"trained_convexes": int(model.field.alive.sum()), "trained_seconds": trained,
            "seeded_convexes": 64, "seeded_seconds": min(seconds(fresh) for _ in range(repeats)),
            "load_avg_1min": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--only", nargs="*", help="mesh file names (default: all shared meshes)")
    a = ap.parse_args()
    rows, timing = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.only or MESHES:
            rows.append(run_one(DATA / "meshes" / name, a.budget, Path(tmp) / name))
            print(rows[-1], flush=True)
            if name == "spot.obj" and "error" not in rows[-1]:
                timing = extraction_timing(Path(tmp) / name)
                print("extraction:", timing, flush=True)
    ok = all(r.get("watertight") and all(r["files_closed"].values()) for r in rows)
    write(f"bsp_{a.budget:g}s", {"budget_s": a.budget, "rows": rows, "extraction": timing, "all_closed": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
