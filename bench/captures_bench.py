"""Real captures through the default command: fox (instant-ngp json), bonsai, cup and tank (COLMAP models).

    python bench/captures_bench.py                       # every case below, one after another (about 60 min)
    python bench/captures_bench.py --only fox --compare  # one case, and the same fit with --contract off

Each case is ``fieldfit SCENE --downscale N --time-budget S`` (no other flag: the loader and the defaults decide),
and with ``--compare`` the same command with ``--contract off`` (the box-bounded march of before). Writes
bench/results/captures_<date>.json with test PSNR, SSIM, steps, samples per ray and the command of each number.
Run it alone: a second process on a 2-core machine cuts the steps a fit takes in its budget.
"""

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, fit_into, write  # noqa: E402

CASES = {  # name: (scene folder under the data root, downscale, seconds)
    "fox": ("fox_ingp", 4, 300),
    "cup": ("colmap/cup_object", 4, 300),
    "tank": ("colmap/tank_opencv", 2, 300),
    "bonsai": ("colmap/bonsai_selfsfm", 2, 900),
}
KEYS = ("steps", "train_seconds", "samples_per_ray", "train_samples_per_ray", "occupied_fraction",
        "render_ms_per_frame", "wall_seconds")


def run_case(name: str, out_root: Path, extra: tuple = ()) -> dict:
    folder, down, seconds = CASES[name]
    scene = DATA / folder
    out = out_root / (name + ("-" + "-".join(a.strip("-") for a in extra) if extra else ""))
    flags = ("--downscale", down, *extra)
    cmd = f"fieldfit {shlex.quote(str(scene))} {' '.join(map(str, flags))} --time-budget {seconds}"
    print(f"{name}: {cmd}", flush=True)
    load = os.getloadavg()[0]
    m = fit_into(out, scene, *flags, budget=seconds)
    row = {"command": cmd, "load_before": load, "test_psnr": m["test"]["psnr"], "test_ssim": m["test"]["ssim"],
           **{k: m.get(k) for k in KEYS}, "run": str(out)}
    print(f"  test PSNR {row['test_psnr']:.2f} dB, SSIM {row['test_ssim']:.3f}, {row['steps']} steps", flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run (default all)")
    p.add_argument("--compare", action="store_true", help="also each case with --contract off")
    p.add_argument("--keep", default="/tmp/captures_bench", help="folder for the run folders")
    p.add_argument("--out", help="JSON path (default bench/results/captures_<date>.json)")
    a = p.parse_args()
    root = Path(a.keep) / time.strftime("%Y%m%d-%H%M%S")  # run folders must be new
    root.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in a.only or CASES:
        rows[name] = run_case(name, root)
        if a.compare:
            rows[name + " --contract off"] = run_case(name, root, ("--contract", "off"))
    write(f"captures_{time.strftime('%Y-%m-%d')}", {"cases": rows}, Path(a.out) if a.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
