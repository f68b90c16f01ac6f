"""Data-parallel fits against one process: the same fit as 1 process x T threads and as N processes (torchrun,
gloo on the CPU, NCCL on GPUs) x T/N threads.

    python bench/scale_bench.py                      # this CPU: csg by steps, csg and lego at equal wall clock
    python bench/scale_bench.py --nproc 4 --gpus     # a machine with 4 GPUs: one rank per GPU

Cases: ``steps``: ``fieldfit csg --steps 2000`` both ways (the same total batch and steps: the ranks split each
step's batch), IoU and training seconds; ``clock``: ``fieldfit csg --time-budget S`` and ``fieldfit lego_400
--downscale 4 --time-budget S`` both ways (equal wall clock), IoU / test PSNR and the steps each reached.
Writes bench/results/scale_<date>.json. Run it alone: anything else on the machine changes both sides.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, write  # noqa: E402

KEYS = ("iou", "chamfer_l2", "steps", "train_seconds", "prepare_seconds")


def run(out: Path, scene, flags: list, nproc: int, threads: int, gpus: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), FIELDFIT_NO_TCMALLOC="1")
    device = [] if gpus else ["--device", "cpu"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "fieldfit"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
               "fieldfit"]
    cmd += [str(scene), *map(str, flags), *device, "--out", str(out)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    row = {"command": " ".join(["python", *cmd[1:]]), "processes": nproc,
           "threads_per_process": threads, "load_before": load, "wall_seconds": time.perf_counter() - t0,
           **{k: m.get(k) for k in KEYS}}
    if "test" in m:
        row["test_psnr"] = m["test"]["psnr"]
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=2, help="ranks of the distributed side (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads of the one process")
    p.add_argument("--gpus", action="store_true", help="one rank per GPU (default: the CPU)")
    p.add_argument("--steps", type=int, default=2000, help="csg steps of the 'steps' case")
    p.add_argument("--seconds", type=float, default=60.0, help="budget of the 'clock' cases")
    p.add_argument("--only", nargs="*", choices=("steps", "clock"), help="cases (default both)")
    p.add_argument("--keep", default="/tmp/scale_bench", help="folder for the run folders")
    p.add_argument("--out", help="JSON path (default bench/results/scale_<date>.json)")
    a = p.parse_args()
    root = Path(a.keep) / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    per_rank = max(1, a.threads // a.nproc)
    cases = {}
    if "steps" in (a.only or ("steps", "clock")):
        cases["csg steps"] = ("csg", ["--steps", a.steps])
    if "clock" in (a.only or ("steps", "clock")):
        cases["csg clock"] = ("csg", ["--time-budget", a.seconds])
        cases["lego clock"] = (DATA / "lego_400", ["--downscale", 4, "--time-budget", a.seconds])
    rows = {}
    for name, (scene, flags) in cases.items():
        tag = name.replace(" ", "-")
        one = run(root / f"{tag}-1", scene, flags, 1, a.threads, a.gpus)
        many = run(root / f"{tag}-{a.nproc}", scene, flags, a.nproc, per_rank, a.gpus)
        rows[name] = {"one": one, "ranks": many}
    write(f"scale_{time.strftime('%Y-%m-%d')}", {"cases": rows, "nproc": a.nproc, "gpus": a.gpus},
          Path(a.out) if a.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
