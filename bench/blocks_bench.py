"""The street in 4 blocks against one field of the same parameter count, at equal total compute.

    python bench/blocks_bench.py                         # 4x1 blocks, 4000 steps in all (both ways)
    python bench/blocks_bench.py --blocks 2x2 --time-budget 1200
    python bench/blocks_bench.py --steps 40 --quick      # a smoke run: tiny budget, small meshes
    python bench/blocks_bench.py --large --time-budget 240   # street_large: 256 views of 128x96

Blocks: ``fieldfit street --blocks 4x1 --train together --steps N`` (rbf's defaults; ``--train apart``: N / 4
steps per block). One field:
``fieldfit street --steps N --features F``, F the feature count whose field has the parameter count nearest the
blocks' sum (found by 1-step probe fits, their ``params``). Equal compute: the same total steps (each step the
same number of field samples) or, with --time-budget, the same total seconds. Both are measured on the street's
test views (test.psnr, SSIM). Writes bench/results/blocks_<train>_<date>.json with the machine, the commands and both
results. Run it alone: another process on the machine changes what a time budget buys.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fit_into, write  # noqa: E402

FEATURES = (4, 6, 8, 12, 16, 24, 32)  # candidate feature counts of the one field


def blocks(scene: str, out: Path, grid: str, train: str, budget: list, extra: list) -> dict:
    cmd = [sys.executable, "-m", "fieldfit", scene, "--blocks", grid, "--train", train, "--out", str(out), *budget,
           *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    m["wall_seconds"] = time.perf_counter() - t0
    m["command"] = "fieldfit " + " ".join(cmd[3:])
    return m


def matching_features(scene: str, root: Path, params: int, extra: list) -> tuple[int, int]:
    """(features, parameters) of the one field whose parameter count is nearest ``params``."""
    best = None
    for f in FEATURES:
        m = fit_into(root / f"probe-{f}", scene, "--features", f, "--resolution", "16", *extra, steps=1)
        gap = abs(m["params"] - params)
        print(f"  probe --features {f}: {m['params']:,} parameters", flush=True)
        if best is None or gap < best[2]:
            best = (f, m["params"], gap)
        if m["params"] > params:
            break
    return best[0], best[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", dest="grid", default="4x1", help="blocks (default 4x1: along the street)")
    p.add_argument("--large", action="store_true", help="the built-in street_large (256 views of 128x96)")
    p.add_argument("--train", default="together", choices=("together", "apart"), help="how the blocks train")
    p.add_argument("--steps", type=int, default=4000, help="optimisation steps in all, both ways")
    p.add_argument("--time-budget", type=float, help="seconds in all, both ways (instead of --steps)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="small meshes (a smoke run)")
    p.add_argument("--keep", default="/tmp/blocks_bench", help="folder for the run folders")
    p.add_argument("--out", help="JSON path (default bench/results/blocks_<train>_<date>.json)")
    a = p.parse_args()
    root = Path(a.keep) / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    budget = ["--time-budget", str(a.time_budget)] if a.time_budget else ["--steps", str(a.steps)]
    extra = ["--device", a.device] + (["--resolution", "32"] if a.quick else [])
    print(f"blocks {a.grid} trained {a.train}, {' '.join(budget)}", flush=True)
    scene = "street_large" if a.large else "street"
    mb = blocks(scene, root / "blocks", a.grid, a.train, budget, extra)
    print(f"  test PSNR {mb['test']['psnr']:.2f} dB, {mb['params']:,} parameters in {len(mb['blocks'])} blocks",
          flush=True)
    features, params = matching_features(scene, root, mb["params"], extra)
    print(f"one field, --features {features} ({params:,} parameters), {' '.join(budget)}", flush=True)
    flags = ["--features", features, *extra]
    m1 = fit_into(root / "one", scene, *flags, budget=a.time_budget, steps=None if a.time_budget else a.steps)
    print(f"  test PSNR {m1['test']['psnr']:.2f} dB", flush=True)
    one_cmd = f"fieldfit {scene} {' '.join(map(str, flags))} {' '.join(budget)}"
    rows = {
        "blocks": {"command": mb["command"], "test_psnr": mb["test"]["psnr"], "test_ssim": mb["test"]["ssim"],
                   "params": mb["params"], "train_seconds": mb["train_seconds"], "wall_seconds": mb["wall_seconds"],
                   "watertight": mb.get("watertight"), "blocks": mb["blocks"], "run": str(root / "blocks")},
        "one_field": {"command": one_cmd, "test_psnr": m1["test"]["psnr"], "test_ssim": m1["test"]["ssim"],
                      "params": m1["params"], "steps": m1.get("steps"), "train_seconds": m1["train_seconds"],
                      "wall_seconds": m1["wall_seconds"], "watertight": m1.get("watertight"), "run": str(root / "one")},
    }
    rows["psnr_gain_db"] = rows["blocks"]["test_psnr"] - rows["one_field"]["test_psnr"]
    print(f"blocks - one field: {rows['psnr_gain_db']:+.2f} dB", flush=True)
    write(f"blocks_{a.train}{'_large' if a.large else ''}_{time.strftime('%Y-%m-%d')}",
          {"scene": scene, "grid": a.grid, "train": a.train, "budget": " ".join(budget), "cases": rows},
          Path(a.out) if a.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
