"""Foundation benchmark: RBF decoder vs MLP decoder (same grid) vs SIREN, at equal wall-clock.

Images (kodim05, kodim08): PSNR and parameters at 10, 30, 60 s.
Shapes (armadillo, featuretype): IoU and Chamfer at 15, 30, 60 s (RBF vs MLP decoder).
Each budget is its own run, so every run completes its learning-rate schedule.

    python bench/foundation_bench.py [--quick]       -> bench/results/foundation.json
"""

import argparse
import sys

from _common import DATA, fit, write

IMAGE_DECODERS = {"rbf": [], "mlp": ["--decoder", "mlp"],
                  "siren": ["--decoder", "siren", "--hidden", "256", "--layers", "3"]}
SHAPE_DECODERS = {"rbf": [], "mlp": ["--decoder", "mlp"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one short budget per case (smoke test)")
    ap.add_argument("--only", choices=("images", "shapes"), help="run one half")
    a = ap.parse_args()
    img_budgets, shape_budgets = ([5], [8]) if a.quick else ([10, 30, 60], [15, 30, 60])
    rows = []
    for name in ("kodim05", "kodim08") if a.only != "shapes" else ():
        for dec, flags in IMAGE_DECODERS.items():
            for b in img_budgets:
                m = fit(DATA / "images" / "kodak" / f"{name}.png", *flags, budget=b)
                rows.append({"case": name, "decoder": dec, "budget_s": b, "psnr": m["psnr"], "ssim": m["ssim"],
                             "params": m["params"], "steps": m["steps"]})
                print(rows[-1], flush=True)
    for name in ("armadillo.obj", "featuretype.STL") if a.only != "images" else ():
        for dec, flags in SHAPE_DECODERS.items():
            for b in shape_budgets:
                try:
                    m = fit(DATA / "meshes" / name, *flags, budget=b)
                except RuntimeError as e:  # e.g. no surface yet after a very short budget
                    rows.append({"case": name, "decoder": dec, "budget_s": b, "error": str(e).splitlines()[-1]})
                    print(rows[-1], flush=True)
                    continue
                rows.append({"case": name, "decoder": dec, "budget_s": b,
                             "iou": m["iou"], "chamfer_l2": m["chamfer_l2"],
                             "normal_consistency": m["normal_consistency"], "watertight": m["watertight"],
                             "euler": m["euler"], "input_euler": m["input_euler"], "params": m["params"],
                             "steps": m["steps"], "wall_seconds": m["wall_seconds"]})
                print(rows[-1], flush=True)
    write("foundation" + (f"_{a.only}" if a.only else ""), {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
