"""DNMP benchmark: dnmp (rasterized mesh primitives) vs rbf (ray marching) on the same scene and budget.

Both methods fit lego_400 at --downscale 2 (200x200) with the same --time-budget, one at a time,
each in a fresh ``fieldfit`` process (bench/_common.fit). Reported per method: test PSNR / SSIM,
render ms per frame and per 1000 pixels (the DNMP paper's unit; for rbf computed from its
render_ms_per_frame and render size), training seconds, steps; and the ratios dnmp / rbf.
The JSON (bench/results/dnmp.json by default) carries the machine description.

    python bench/dnmp_bench.py                         # 900 s per method (about 40 min with evaluation)
    python bench/dnmp_bench.py --budget 20 --name dnmp_smoke
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, fit, write

KEYS = ("render_ms_per_frame", "render_ms_per_1k_pixels", "peak_mb_per_1k_pixels", "train_seconds", "steps",
        "params", "render_size", "primitives", "wall_seconds")


def summary(m: dict) -> dict:
    out = {"psnr": m["test"]["psnr"], "ssim": m["test"]["ssim"], **{k: m.get(k) for k in KEYS if k in m}}
    if out.get("render_ms_per_1k_pixels") is None:
        w, h = m["render_size"]
        out["render_ms_per_1k_pixels"] = m["render_ms_per_frame"] / (w * h / 1000.0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default=str(DATA / "lego_400"))
    p.add_argument("--downscale", type=int, default=2)
    p.add_argument("--budget", type=float, default=900.0, help="training seconds per method (equal for both)")
    p.add_argument("--methods", nargs="+", default=["dnmp", "rbf"], choices=["dnmp", "rbf"])
    p.add_argument("--name", default="dnmp", help="results file bench/results/NAME.json")
    a = p.parse_args(argv)
    runs = {}
    for method in a.methods:
        print(f"{method}: {a.budget:.0f} s on {a.scene} (downscale {a.downscale}) ...", flush=True)
        try:
            runs[method] = summary(fit(a.scene, "--method", method, "--downscale", a.downscale, budget=a.budget))
        except RuntimeError as e:
            runs[method] = {"error": str(e)[-2000:]}
        print("   ", runs[method], flush=True)
    ratios = {}
    if "psnr" in runs.get("dnmp", {}) and "psnr" in runs.get("rbf", {}):
        d, r = runs["dnmp"], runs["rbf"]
        ratios = {"psnr_db_dnmp_minus_rbf": d["psnr"] - r["psnr"],
                  "render_ms_per_1k_pixels_dnmp_over_rbf": d["render_ms_per_1k_pixels"] / r["render_ms_per_1k_pixels"]}
    write(a.name, {"scene": a.scene, "downscale": a.downscale, "budget_seconds": a.budget, "runs": runs,
                   "ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
