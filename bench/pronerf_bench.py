"""ProNeRF benchmark: learned samples vs rbf's occupancy-grid marching vs uniform 128-sample marching.

Per case, with the same scene and the same training budget:
- ``pronerf``: ``fieldfit SCENE --method pronerf --samples N --time-budget T`` (fresh process);
- ``rbf``: ``fieldfit SCENE --method rbf --time-budget T`` (its own field, occupancy-grid marching);
- ``uniform128``: the pronerf run's field alone, marched with 128 uniform samples per ray
  (``fieldfit.load(run).evaluate_uniform(128)``): the same field without the sampler.
Reported: test PSNR / SSIM, render ms per frame, samples per ray; ratios pronerf vs the others
(ratios hold across noisy machines) and the issue's targets (fern: PSNR >= 23 dB with <= 12
samples, render >= 5x faster than uniform 128 at <= 1 dB lower PSNR).

    python bench/pronerf_bench.py                                 # fern, 1200 s per fit (about 45 min)
    python bench/pronerf_bench.py --cases lego100 --budget 600    # lego at 100x100, 32 samples
    python bench/pronerf_bench.py --cases blocks --budget 10 --out /tmp/pronerf_smoke.json   # smoke run

Writes one JSON (machine description, load averages) to bench/results/pronerf_<cases>.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, RESULTS, machine

CASES = {  # name: (scene folder, samples per ray, extra flags for both methods)
    "fern": ("fern_llff", 12, []),
    "lego100": ("lego_400", 32, ["--downscale", "4"]),  # 200 test views: the uniform baseline takes ~15 min
    "blocks": ("blocks", 8, ["--downscale", "2"]),  # the built-in scene: a smoke test of this script
}
KEYS = ("render_ms_per_frame", "samples_per_ray", "steps", "train_seconds", "rays_per_second", "params",
        "render_size")


def fit(scene: Path, method: str, flags: list, budget: float, out: Path, device: str) -> dict:
    cmd = [sys.executable, "-m", "fieldfit", str(scene), "--method", method, "--time-budget", str(budget),
           "--device", device, "--out", str(out), *flags]
    load_before, t = os.getloadavg(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    res = {"command": " ".join(cmd[1:]), "wall_seconds": time.perf_counter() - t, "load_before": load_before,
           "load_after": os.getloadavg()}
    if proc.returncode != 0:
        return {**res, "error": proc.stderr[-2000:]}
    m = json.loads((out / "metrics.json").read_text())
    return {**res, "psnr": m["test"]["psnr"], "ssim": m["test"]["ssim"], **{k: m.get(k) for k in KEYS}}


def uniform(run: Path, n: int, device: str) -> dict:
    import fieldfit

    t = time.perf_counter()
    m = fieldfit.load(run, device).evaluate_uniform(n)  # a ProNeRFRun: renders go to RUN/uniform<n>/renders
    return {"psnr": m["test"]["psnr"], "ssim": m["test"]["ssim"], "render_ms_per_frame": m["render_ms_per_frame"],
            "samples_per_ray": m["samples_per_ray"], "wall_seconds": time.perf_counter() - t}


def ratios(p: dict, r: dict, u: dict) -> dict:
    out = {}
    if "psnr" in p and "psnr" in u:
        out.update(render_speedup_vs_uniform=u["render_ms_per_frame"] / p["render_ms_per_frame"],
                   psnr_db_pronerf_minus_uniform=p["psnr"] - u["psnr"])
    if "psnr" in p and "psnr" in r:
        out.update(render_speedup_vs_rbf=r["render_ms_per_frame"] / p["render_ms_per_frame"],
                   psnr_db_pronerf_minus_rbf=p["psnr"] - r["psnr"])
    return out


def targets(p: dict, rat: dict) -> dict:
    if "psnr" not in p or "render_speedup_vs_uniform" not in rat:
        return {}
    return {"psnr_at_least_23": p["psnr"] >= 23.0, "samples_at_most_12": p["samples_per_ray"] <= 12,
            "speedup_at_least_5x": rat["render_speedup_vs_uniform"] >= 5.0,
            "psnr_within_1db_of_uniform": rat["psnr_db_pronerf_minus_uniform"] >= -1.0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--cases", nargs="+", default=["fern"], choices=list(CASES))
    p.add_argument("--budget", type=float, default=1200.0, help="training seconds per fit (equal for both methods)")
    p.add_argument("--samples", type=int, help="pronerf samples per ray (default: the case's)")
    p.add_argument("--uniform", type=int, default=128, help="samples per ray of the uniform baseline")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default=str(REPO / "runs" / "bench-pronerf"), help="run folders (git-ignored)")
    p.add_argument("--out", help="JSON file (default bench/results/pronerf_<cases>.json)")
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else RESULTS / f"pronerf_{'_'.join(a.cases)}.json"
    result = {"machine": machine(), "budget_seconds": a.budget, "uniform_samples": a.uniform, "cases": {}}
    for case in a.cases:
        folder, samples, flags = CASES[case]
        scene = folder if folder == "blocks" else Path(a.data) / folder
        if not Path(scene).exists() and folder != "blocks":
            print(f"skip {case}: {scene} not found")
            continue
        n = a.samples or samples
        runs = Path(a.runs)
        print(f"{case}: pronerf ({n} samples), {a.budget:.0f} s ...", flush=True)
        pr = fit(scene, "pronerf", ["--samples", str(n), *flags], a.budget, runs / f"{case}-pronerf", a.device)
        print("   ", {k: pr.get(k) for k in ("psnr", "render_ms_per_frame", "error")}, flush=True)
        print(f"{case}: rbf, {a.budget:.0f} s ...", flush=True)
        rb = fit(scene, "rbf", flags, a.budget, runs / f"{case}-rbf", a.device)
        print("   ", {k: rb.get(k) for k in ("psnr", "render_ms_per_frame", "error")}, flush=True)
        un = uniform(runs / f"{case}-pronerf", a.uniform, a.device) if "psnr" in pr else {}
        print(f"    uniform{a.uniform}:", {k: un.get(k) for k in ("psnr", "render_ms_per_frame")}, flush=True)
        rat = ratios(pr, rb, un)
        result["cases"][case] = {"samples": n, "runs": {"pronerf": pr, "rbf": rb, f"uniform{a.uniform}": un},
                                 "ratios": rat, "targets": targets(pr, rat) if case == "fern" else {}}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every case: partial results survive
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
