"""A signed-distance fit's whole command, phase by phase, and its mesh export against the full-grid baseline.

Fits the mesh with the default command (`fieldfit MESH --time-budget T`, a fresh cache folder so preparation is
computed, not read back) and reports the command's wall clock and its phases from metrics.json (preparation by
phase, training, export). Then, on that run's field, times the export's grid evaluation both ways, the band around
the surface (``mesh.band``, the default) and every node of the grid (the baseline), with marching cubes after
each, and compares the two meshes (faces, largest vertex difference).

    python bench/sdf_command_bench.py [--mesh PATH] [--time-budget 60] [--repeats 2] [--out FILE]
        -> bench/results/sdf_command_<date>.json
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DATA, RESULTS, fit_into, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_field(run: Path):
    from fieldfit.fields.gaussian_rbf import SDFRBF, FieldConfig
    from fieldfit.runs import Run, load_model

    cfg = json.loads((run / "config.json").read_text())
    model = SDFRBF(FieldConfig.from_dict(cfg["field"]))
    load_model(Run(run), model)
    return model.eval()


def export_both(model, resolution: int, repeats: int) -> dict:
    import torch

    from fieldfit.mesh.extract import evaluate_grid, extract_sdf_mesh

    torch.set_grad_enabled(False)
    evaluate_grid(model.sdf, 64)  # first calls out of the timing
    times = {"band": [], "grid": []}
    meshes = {}
    for _ in range(repeats):
        for name in times:
            t = time.perf_counter()
            meshes[name] = extract_sdf_mesh(model.sdf, resolution, band=name == "band")
            times[name].append(time.perf_counter() - t)
    a, b = meshes["band"], meshes["grid"]
    same_faces = a.faces.shape == b.faces.shape and bool(np.array_equal(a.faces, b.faces))
    return {"seconds": {k: min(v) for k, v in times.items()}, "all_seconds": times,
            "speedup": min(times["grid"]) / min(times["band"]), "same_faces": same_faces,
            "max_vertex_difference": float(np.abs(a.vertices - b.vertices).max()) if same_faces else None,
            "faces": int(len(a.faces))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", default=str(DATA / "meshes" / "armadillo.obj"))
    ap.add_argument("--time-budget", type=float, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FIELDFIT_CACHE"] = str(Path(tmp) / "cache")
        load_start = os.getloadavg()
        m = fit_into(Path(tmp) / "run", a.mesh, budget=a.time_budget)
        command = {k: m[k] for k in ("wall_seconds", "prepare_seconds", "train_seconds", "export_seconds",
                                     "prepare_phases", "steps", "iou", "chamfer_l2", "euler", "watertight")
                   if k in m}
        command["training_share"] = m["train_seconds"] / m["wall_seconds"]
        command["load_avg_start"] = load_start
        print("command", command, flush=True)
        resolution = int(json.loads((Path(tmp) / "run" / "config.json").read_text())["config"]["resolution"])
        export = export_both(load_field(Path(tmp) / "run"), resolution, a.repeats)
        export["resolution"] = resolution
        print("export", export, flush=True)
    out = Path(a.out) if a.out else RESULTS / f"sdf_command_{time.strftime('%Y-%m-%d')}.json"
    write("sdf_command", {"mesh": a.mesh, "time_budget": a.time_budget, "repeats": a.repeats, "command": command,
                          "export": export, "load_avg_end": os.getloadavg()}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
