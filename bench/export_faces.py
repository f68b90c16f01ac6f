"""Decimated export of a fitted armadillo: ``fieldfit export RUN --mesh low.ply --faces 5000``, as a user runs it.

The run: an existing run folder (``--run RUN``, e.g. a long fit), else armadillo (../shared/data/meshes) fitted with
``fieldfit MESH`` (rbf SDF; the method's default budget, or ``--time-budget`` / ``--steps``) into a kept folder.
Then two exports through the command line (subprocesses): the full mesh (``--mesh full.ply``) and the decimated one
(``--faces N``). Reported: faces before and after, watertight and Euler number of both files as other tools load
them (``mesh.weld.reload_report``: trimesh's default load and a merge by distance), components, Chamfer-L2 full vs
decimated as the export prints it (the fit's convention in the full mesh's unit frame), the note when the target
was not reached, the seconds of the decimation alone (``mesh.decimate.decimate`` on the full mesh, in this process)
and the wall seconds of each export (the marching cubes dominate them; the machine's load is recorded).

    python bench/export_faces.py [--run RUN | --time-budget S | --steps N] [--faces 5000] [--resolution R]
                                 [--keep DIR] [--out FILE]
        -> bench/results/export_faces_<date>.json
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, RESULTS, fit_into, write


def export(run: Path, out: Path, *flags) -> tuple[str, float]:
    """``fieldfit export RUN --mesh OUT FLAGS``: (its output, wall seconds); RuntimeError when it fails."""
    cmd = [sys.executable, "-m", "fieldfit", "export", str(run), "--mesh", str(out), *map(str, flags)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return res.stdout, time.perf_counter() - t0


def printed(output: str) -> tuple[dict, str]:
    """(figures, note) of the export's output: its line 'wrote PATH: faces 5000 (before 99976), watertight True,
    euler 2 (before 2), ...' (other lines are the run's log) and the line after it, when the target was not reached."""
    lines = output.strip().splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("wrote "))
    body = lines[k].split(": ", 1)[1]
    figures = {}
    for key, value, before in re.findall(r"(\w+) ([^,( ]+)(?: \(before ([^)]+)\))?", body):
        figures[key] = value
        if before:
            figures[f"{key}_before"] = before
    return figures, lines[k + 1] if k + 1 < len(lines) else ""


def decimation_seconds(full: Path, faces: int) -> float:
    """Seconds of ``mesh.decimate.decimate`` alone on the full mesh (as the export loads it), in this process."""
    import trimesh

    from fieldfit.mesh.decimate import decimate

    mesh = trimesh.load(str(full), process=False, force="mesh")
    t0 = time.perf_counter()
    decimate(mesh.vertices, mesh.faces, faces)
    return time.perf_counter() - t0


def tools(path: Path) -> dict:
    from fieldfit.mesh.weld import reload_report

    return {how: {k: r[k] for k in ("faces", "closed", "ok", "euler", "shells")}
            for how, r in reload_report(path).items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="an existing run folder (default: fit armadillo)")
    ap.add_argument("--time-budget", type=float, help="seconds of the armadillo fit (default: rbf's own)")
    ap.add_argument("--steps", type=int, help="steps of the armadillo fit instead of a time budget")
    ap.add_argument("--faces", type=int, default=5000)
    ap.add_argument("--resolution", type=int, help="marching-cubes resolution of the export (default: the run's)")
    ap.add_argument("--keep", help="folder for the fit and the meshes (default: a temporary one)")
    ap.add_argument("--out", help="JSON to write (default bench/results/export_faces_<date>.json)")
    a = ap.parse_args()
    tmp = None if a.keep else tempfile.TemporaryDirectory(prefix="export_faces_")
    work = Path(a.keep or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    fit = None
    if a.run:
        run = Path(a.run)
    else:
        mesh = DATA / "meshes" / "armadillo.obj"
        if not mesh.is_file():
            print(f"no {mesh}: pass --run RUN or put the shared data beside the repository", file=sys.stderr)
            return 2
        run = work / "armadillo-rbf"
        m = fit_into(run, mesh, budget=a.time_budget, steps=a.steps)
        fit = {k: m.get(k) for k in ("iou", "chamfer_l2", "faces", "watertight", "euler", "steps", "train_seconds",
                                     "wall_seconds")}
    res = ["--resolution", a.resolution] if a.resolution else []
    full_out, full_s = export(run, work / "full.ply", *res)
    low_out, low_s = export(run, work / "low.ply", *res, "--faces", a.faces)
    figures, note = printed(low_out)
    row = {"run": str(run.resolve()), "fit": fit, "faces_target": a.faces, "printed": figures, "note": note,
           "full_printed": printed(full_out)[0], "full": tools(work / "full.ply"), "decimated": tools(work / "low.ply"),
           "decimate_seconds": decimation_seconds(work / "full.ply", a.faces),
           "full_export_seconds": full_s, "decimated_export_seconds": low_s,
           "load_avg_1min_start": load, "load_avg_1min_end": os.getloadavg()[0]}
    print(f"faces {figures['faces']} (before {figures['faces_before']}), watertight {figures['watertight']}, euler "
          f"{figures['euler']} (before {figures['euler_before']}), chamfer_l2 {figures['chamfer_l2']}, decimation "
          f"{row['decimate_seconds']:.2f} s" + (f"\n{note}" if note else ""))
    out = Path(a.out) if a.out else RESULTS / f"export_faces_{time.strftime('%Y-%m-%d')}.json"
    write(out.stem, row, out)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
