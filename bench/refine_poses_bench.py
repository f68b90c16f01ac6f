"""Pose refinement: lego (Blender format) with its training poses knocked off, fitted with and without
``--refine-poses on``, against the fit on the true poses; all three measured on the untouched test views.

    python bench/refine_poses_bench.py                     # lego 100x100, 1500 steps each, 1.5 deg / 0.02
    python bench/refine_poses_bench.py --steps 3000 --degrees 2

The perturbed copy is a folder of links to lego's images with a new transforms_train.json: every training
camera turned by ``--degrees`` about a random axis through its centre and moved by ``--shift`` (scene units;
lego's cameras are 4 units from the object) in a random direction. A fixed number of steps (not seconds) keeps
the three fits comparable on a loaded machine. Writes bench/results/refine_poses_<date>.json.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, fit_into, write  # noqa: E402


def perturbed_copy(src: Path, dst: Path, degrees: float, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name != "transforms_train.json" and not (dst / entry.name).exists():
            os.symlink(entry.resolve(), dst / entry.name)
    meta = json.loads((src / "transforms_train.json").read_text())
    for frame in meta["frames"]:
        c2w = np.asarray(frame["transform_matrix"], np.float64)
        axis = rng.normal(size=3)
        turn = Rotation.from_rotvec(axis / np.linalg.norm(axis) * np.radians(degrees)).as_matrix()
        move = rng.normal(size=3)
        c2w[:3, :3] = turn @ c2w[:3, :3]
        c2w[:3, 3] += move / np.linalg.norm(move) * shift
        frame["transform_matrix"] = c2w.tolist()
    (dst / "transforms_train.json").write_text(json.dumps(meta))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scene", default=str(DATA / "lego_400"))
    p.add_argument("--downscale", type=int, default=4)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--degrees", type=float, default=1.5)
    p.add_argument("--shift", type=float, default=0.02)
    p.add_argument("--keep", default="/tmp/refine_poses_bench")
    p.add_argument("--out", help="JSON path (default bench/results/refine_poses_<date>.json)")
    a = p.parse_args()
    root = Path(a.keep) / time.strftime("%Y%m%d-%H%M%S")
    off = root / "scene_off"
    perturbed_copy(Path(a.scene), off, a.degrees, a.shift, seed=0)
    cases = {"true poses": (Path(a.scene), []), "poses off": (off, []),
             "poses off, --refine-poses on": (off, ["--refine-poses", "on"])}
    rows = {}
    for name, (scene, extra) in cases.items():
        load = os.getloadavg()[0]
        flags = ["--downscale", a.downscale, *extra]
        m = fit_into(root / name.replace(" ", "_").replace(",", ""), scene, *flags, steps=a.steps)
        rows[name] = {"command": f"fieldfit {scene} {' '.join(map(str, flags))} --steps {a.steps}",
                      "load_before": load, "test_psnr": m["test"]["psnr"], "test_ssim": m["test"]["ssim"],
                      "train_seconds": m["train_seconds"], "pose_corrections": m.get("pose_corrections")}
        print(name, json.dumps(rows[name]), flush=True)
    lost = rows["true poses"]["test_psnr"] - rows["poses off"]["test_psnr"]
    won = rows["poses off, --refine-poses on"]["test_psnr"] - rows["poses off"]["test_psnr"]
    summary = {"psnr_lost_db": lost, "psnr_recovered_db": won, "recovered_share": won / lost if lost > 0 else None}
    print(json.dumps(summary))
    write(f"refine_poses_{time.strftime('%Y-%m-%d')}", {"cases": rows, "summary": summary, "degrees": a.degrees,
                                                         "shift": a.shift, "steps": a.steps},
          Path(a.out) if a.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
