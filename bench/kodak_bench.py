"""Every kodak image fitted by the same command: the worst and the mean PSNR (issue 29's image targets).

    python bench/kodak_bench.py                                    # --grid-ratio 0.25 --time-budget 60, all twelve
    python bench/kodak_bench.py --images kodim08 kodim05 -- --decoder mlp
    python bench/kodak_bench.py --full                             # the default grid (no --grid-ratio)
    python bench/kodak_bench.py --images kodim08 --seeds 4         # seeds 0-3: the spread between seeds

A compact fit's result moves with the seed (kodim08 at 60 s: 37.06-37.78 dB over seeds 0-3), more than most
changes one would screen: compare configurations over several seeds. With ``--seeds``, an image's row is its mean
over the seeds (and their min and max); the worst image is the one with the lowest mean.

One fit at a time through the CLI (its allocator and thread settings), each in its own run folder under
``--runs``; the JSON is rewritten after every image, so a stopped run keeps what it measured. Run it alone.
"""

import argparse
import sys
from pathlib import Path

from _common import DATA, fit_into, write

KODAK = DATA / "images" / "kodak"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="*", help="names without .png (default: every image in the folder)")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of training per image")
    ap.add_argument("--full", action="store_true", help="the default grid instead of --grid-ratio 0.25")
    ap.add_argument("--seeds", type=int, default=1, help="fit each image with seeds 0..N-1 (default 1: seed 0)")
    ap.add_argument("--runs", default="/tmp/kodak_bench", help="parent folder of the run folders")
    ap.add_argument("--out", help="JSON path (default bench/results/kodak_<grid>_<budget>s.json)")
    ap.add_argument("flags", nargs="*", help="after --: more fieldfit flags")
    a = ap.parse_args()
    names = a.images or sorted(p.stem for p in KODAK.glob("*.png"))
    flags = ([] if a.full else ["--grid-ratio", "0.25"]) + a.flags
    rows = {}
    for name in names:
        fits = []
        for seed in range(a.seeds):
            out = Path(a.runs) / (name if a.seeds == 1 else f"{name}_seed{seed}")
            more = [] if a.seeds == 1 else ["--seed", str(seed)]
            cmd = ["fieldfit", str(KODAK / f"{name}.png"), "--time-budget", f"{a.budget:g}", *flags, *more,
                   "--out", str(out), "--overwrite"]
            m = fit_into(out, KODAK / f"{name}.png", *flags, *more, "--overwrite", budget=a.budget)
            fits.append({"command": " ".join(cmd), "psnr": m["psnr"], "ssim": m["ssim"], "steps": m["steps"],
                         "train_seconds": m["train_seconds"], "params": m["params"]})
            print(name, f"{m['psnr']:.2f} dB, {m['steps']} steps", *more, flush=True)
        psnr = [f["psnr"] for f in fits]
        rows[name] = fits[0] if a.seeds == 1 else {"psnr": sum(psnr) / len(psnr), "psnr_min": min(psnr),
                                                    "psnr_max": max(psnr), "seeds": fits}
        psnrs = {k: r["psnr"] for k, r in rows.items()}
        worst = min(psnrs, key=psnrs.get)
        write("", {"flags": flags, "budget_s": a.budget, "seeds": a.seeds, "runs": rows,
                   "worst": [worst, psnrs[worst]], "mean": sum(psnrs.values()) / len(psnrs)},
              a.out or Path(__file__).parent / "results" / f"kodak_{'full' if a.full else 'q025'}_{a.budget:g}s.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
