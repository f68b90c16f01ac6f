"""Variants of one fit at a fixed step count: test PSNR, the training PSNR over the last 30% of the steps, samples per
test ray. Quality at a fixed step count does not depend on the machine's load, so variants may run side by side
(one thread each, ``--parallel`` at a time); the seconds they took do depend on it and are not a speed measurement.

    python bench/fixed_steps.py lego_400 --steps 1000 --flags "--downscale 2" \
        --variant none="--projection 0" --variant p16="--projection 16" --variant mlp="--decoder mlp" --seeds 0 1

Each variant runs ``fieldfit SCENE FLAGS VARIANT_FLAGS --steps N --seed S`` in a fresh process (all test views
rendered, as a fit does); JSON with the machine to bench/results/fixed_steps.json (``--out``).
"""

import argparse
import csv
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, RESULTS, fit_into, write  # noqa: E402


def train_psnr(run: Path, lo: int, hi: int) -> float:
    """PSNR of the mean training loss over steps [lo, hi) (metrics.csv)."""
    with open(run / "metrics.csv") as f:
        loss = [float(r["loss"]) for r in csv.DictReader(f) if lo <= int(r["step"]) < hi and r["loss"]]
    return float(-10 * np.log10(np.mean(loss))) if loss else float("nan")


def one(scene: Path, flags: list[str], name: str, extra: list[str], seed: int, steps: int, runs: Path) -> dict:
    out = runs / f"{name}-seed{seed}"
    m = fit_into(out, scene, *flags, *extra, "--seed", seed, "--overwrite", steps=steps)
    test = m.get("test", {})
    return {"variant": name, "flags": extra, "seed": seed, "psnr": test.get("psnr", m.get("psnr")),
            "ssim": test.get("ssim"), "train_psnr_last30": train_psnr(out, int(0.7 * steps), steps),
            "samples_per_ray": m.get("samples_per_ray"), "steps": m.get("steps"), "wall_seconds": m["wall_seconds"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", help="a folder of --data, or a path")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--flags", default="", help="flags every variant gets, one string")
    p.add_argument("--variant", action="append", default=[], help="NAME=\"FLAGS\" (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--parallel", type=int, default=2, help="fits at a time, one thread each")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--runs", default=str(REPO / "runs" / "bench-fixed-steps"), help="run folders (git-ignored)")
    p.add_argument("--out", default=str(RESULTS / "fixed_steps.json"))
    a = p.parse_args()
    scene = Path(a.data) / a.scene if (Path(a.data) / a.scene).exists() else Path(a.scene)
    variants = [v.split("=", 1) if "=" in v else (v, "") for v in a.variant] or [("defaults", "")]
    jobs = [(name, shlex.split(extra), seed) for seed in a.seeds for name, extra in variants]
    flags = shlex.split(a.flags)
    os.environ["OMP_NUM_THREADS"] = "1"  # the fits' processes inherit it
    with ThreadPoolExecutor(max(1, a.parallel)) as pool:
        rows = list(pool.map(lambda j: one(scene, flags, *j, a.steps, Path(a.runs)), jobs))
    for r in rows:
        print(f"{r['variant']:>12} seed {r['seed']}: test {r['psnr']:.2f} dB, train (last 30%) "
              f"{r['train_psnr_last30']:.2f}, {r['samples_per_ray']:.2f} samples a test ray")
    write("fixed_steps", {"scene": str(scene), "steps": a.steps, "flags": flags, "parallel": a.parallel,
                          "runs": rows}, Path(a.out))


if __name__ == "__main__":
    main()
