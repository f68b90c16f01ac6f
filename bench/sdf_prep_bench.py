"""SDF preparation of a mesh fit, phase by phase: the reference signs against the fast ones, and the cache.

In one process, on one mesh (default armadillo from ../shared/data/meshes) with the rbf SDF fit's settings
(2M training points, thin_frac 0.1, 100k probe points, seed 0):
- ``reference``: ``mesh.sampling.sdf_training_set(..., fast=False)``: every winding number at libigl's default
  accuracy (as before the fast path);
- ``fast``: ``fast=True`` (the fit's path): a cheap first pass, the reference again only near w = 0.5;
the two are run alternately ``--repeats`` times (the machine is shared: the load is recorded, the best of the
repeats kept) on the same points, and compared: sign agreement over all points and over the points farther than
0.01 from the surface, largest distance difference. Then ``fieldfit.tasks.sdf_samples.prepare`` in a fresh
cache folder twice: the first call computes and writes, the second reads back (arrays compared).
Wall and CPU seconds (CPU: all threads of the process) of each phase.

    python bench/sdf_prep_bench.py [--mesh PATH] [--points 2000000] [--repeats 2] [--out FILE]
        -> bench/results/sdf_prep_<date>.json
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import DATA, RESULTS, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THIN_FRAC = 0.1  # the rbf SDF fit's default
PROBE = 100_000


def timed(fn):
    """(fn(), wall seconds, CPU seconds)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def training_set(shape, n: int, fast: bool) -> dict:
    from fieldfit.mesh.sampling import sdf_training_set

    phases: dict = {}
    rng = np.random.default_rng(0)
    (pts, sdf), wall, cpu = timed(lambda: sdf_training_set(shape.vertices, shape.faces, n, rng,
                                                           thin_frac=THIN_FRAC, fast=fast, timings=phases))
    return {"points": pts, "sdf": sdf, "wall": wall, "cpu": cpu, "phases": phases}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", default=str(DATA / "meshes" / "armadillo.obj"))
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from fieldfit.scenes.shapes import load_shape
    from fieldfit.tasks import sdf_samples

    shape, load_wall, load_cpu = timed(lambda: load_shape(a.mesh))
    runs = {"reference": [], "fast": []}
    for _ in range(a.repeats):
        for name in runs:
            runs[name].append(training_set(shape, a.points, name == "fast"))
            print(name, {k: round(v, 3) for k, v in runs[name][-1]["phases"].items()},
                  f"wall {runs[name][-1]['wall']:.2f}s cpu {runs[name][-1]['cpu']:.2f}s", flush=True)
    ref, fast = runs["reference"][0], runs["fast"][0]
    assert np.array_equal(ref["points"], fast["points"])
    far = np.abs(ref["sdf"]) > 0.01
    same = np.sign(ref["sdf"]) == np.sign(fast["sdf"])
    agreement = {"signs_all": float(same.mean()), "signs_farther_than_0.01": float(same[far].mean()),
                 "sign_differences": int((~same).sum()),
                 "max_abs_distance_difference": float(np.abs(np.abs(ref["sdf"]) - np.abs(fast["sdf"])).max())}
    print(agreement)

    def best(name):
        rows = runs[name]
        keys = rows[0]["phases"]
        return {"wall": min(r["wall"] for r in rows), "cpu": min(r["cpu"] for r in rows),
                "phases_wall": {k: round(min(r["phases"][k] for r in rows), 4) for k in keys}}

    with tempfile.TemporaryDirectory() as tmp:
        before = os.environ.get("FIELDFIT_CACHE")
        os.environ["FIELDFIT_CACHE"] = tmp
        try:
            cold, cold_wall, cold_cpu = timed(lambda: sdf_samples.prepare(shape, a.points, 0, PROBE,
                                                                          thin_frac=THIN_FRAC))
            warm, warm_wall, warm_cpu = timed(lambda: sdf_samples.prepare(shape, a.points, 0, PROBE,
                                                                          thin_frac=THIN_FRAC))
        finally:
            if before is None:
                os.environ.pop("FIELDFIT_CACHE")
            else:
                os.environ["FIELDFIT_CACHE"] = before
    assert not cold.cached
    assert warm.cached
    same_arrays = all(np.array_equal(getattr(cold, k), getattr(warm, k))
                      for k in ("points", "sdf", "probe", "probe_inside"))
    cache = {"cold": {"wall": cold_wall, "cpu": cold_cpu, "phases_wall": cold.seconds},
             "warm": {"wall": warm_wall, "cpu": warm_cpu, "phases_wall": warm.seconds},
             "same_arrays": same_arrays}
    print("cache", cache, flush=True)
    r, f = best("reference"), best("fast")
    payload = {"mesh": str(a.mesh), "faces": int(len(shape.faces)), "points": a.points, "thin_frac": THIN_FRAC,
               "repeats": a.repeats, "load": {"wall": load_wall, "cpu": load_cpu},
               "reference": r, "fast": f, "speedup_wall": r["wall"] / f["wall"], "speedup_cpu": r["cpu"] / f["cpu"],
               "agreement": agreement, "cache": cache, "load_avg_end": os.getloadavg()}
    out = Path(a.out) if a.out else RESULTS / f"sdf_prep_{time.strftime('%Y-%m-%d')}.json"
    write("sdf_prep", payload, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
