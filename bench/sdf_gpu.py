"""GPU: armadillo SDF fit, time until the in-training IoU reaches 0.99, and final metrics (with the command's
phases: preparation by phase, training, export).

    python bench/sdf_gpu.py [--budget 20]    -> bench/results/sdf_gpu.json
The in-training IoU uses 100k uniform probe points; the final IoU 1M points after export.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import DATA, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def history_of(run: Path) -> dict:
    """The fit's loss / metric history, from its checkpoint's metadata."""
    from fieldfit.api import open_run

    return open_run(run).checkpoint_meta()["history"]


def main() -> int:
    import subprocess

    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=1 << 17)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--decoders", default="rbf")
    a = ap.parse_args()
    rows = []
    for dec in a.decoders.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            cmd = [sys.executable, "-m", "fieldfit", str(DATA / "meshes" / "armadillo.obj"), "--device", a.device,
                   "--time-budget", str(a.budget), "--batch", str(a.batch), "--eval-every", "0.5",
                   "--decoder", dec, "--out", str(run)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr[-3000:])
                return 1
            m = json.loads((run / "metrics.json").read_text())
            h = history_of(run)
            hit = next((s for s, v in zip(h["metric_seconds"], h["metric"], strict=True)
                        if v is not None and v >= 0.99), None)
            rows.append({"decoder": dec, "seconds_to_iou_0.99": hit,
                         "final_iou": m["iou"], "chamfer_l2": m["chamfer_l2"],
                         "train_seconds": m["train_seconds"], "prepare_seconds": m["prepare_seconds"],
                         "export_seconds": m["export_seconds"], "prepare_phases": m.get("prepare_phases"),
                         "steps": m["steps"], "batch": a.batch, "watertight": m["watertight"]})
            print(rows[-1], flush=True)
    write("sdf_gpu", {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
