"""Radiance benchmark: the RBF decoder vs a small ReLU-MLP decoder on the same grid and sampler.

For each case (lego_400 at --downscale 4 and 2, fern at images_8) and each decoder, one
``fieldfit SCENE --method rbf --decoder D --time-budget T`` run in a fresh process (so the CLI's
tcmalloc preload applies), one at a time. Equal wall-clock: both decoders get the same budget.
Reported per run: test PSNR / SSIM, training rays per second, render ms per frame, samples per
ray, parameters, steps; per case the RBF / MLP ratios (ratios hold across noisy machines).

    python bench/radiance_bench.py                       # all cases, 300 s each (about 1 h 10)
    python bench/radiance_bench.py --cases lego100 --budget 60
    python bench/radiance_bench.py --cases fern --rbf-flags "--split on"
    python bench/radiance_bench.py --data ../shared/data --out bench/results/radiance.json

Writes JSON with the machine description (CPU, cores, load average before and after each run,
torch version and threads, allocator) to bench/results/radiance.json.
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "lego100": ("lego_400", ["--downscale", "4"]),
    "lego200": ("lego_400", ["--downscale", "2"]),
    "fern": ("fern_llff", []),  # the loader picks images_8 (the smallest factor present)
}
DECODERS = ("rbf", "mlp")
KEYS = ("render_ms_per_frame", "rays_per_second", "samples_per_ray", "params", "steps", "train_seconds",
        "render_size")


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    tcmalloc = any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                                              "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4"))
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "tcmalloc": tcmalloc, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_one(scene: Path, flags: list, decoder: str, budget: float, out: Path, device: str, extra=()) -> dict:
    cmd = [sys.executable, "-m", "fieldfit", str(scene), "--method", "rbf", "--decoder", decoder,
           "--time-budget", str(budget), "--device", device, "--out", str(out), *flags, *extra]
    load_before = os.getloadavg()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    res = {"command": " ".join(cmd[1:]), "wall_seconds": wall, "load_before": load_before,
           "load_after": os.getloadavg()}
    if proc.returncode != 0:
        res["error"] = proc.stderr[-2000:]
        return res
    m = json.loads((out / "metrics.json").read_text())
    res.update(psnr=m["test"]["psnr"], ssim=m["test"]["ssim"], lpips=m["test"].get("lpips"),
               **{k: m.get(k) for k in KEYS})
    return res


def ratios(runs: dict) -> dict:
    a, b = runs.get("rbf", {}), runs.get("mlp", {})
    if "psnr" not in a or "psnr" not in b:
        return {}
    return {"psnr_db_rbf_minus_mlp": a["psnr"] - b["psnr"],
            "rays_per_second_rbf_over_mlp": a["rays_per_second"] / b["rays_per_second"],
            "render_ms_rbf_over_mlp": a["render_ms_per_frame"] / b["render_ms_per_frame"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--decoders", nargs="+", default=list(DECODERS), choices=list(DECODERS))
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per run (equal for both decoders)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default=str(ROOT / "runs" / "bench-radiance"), help="run folders (git-ignored)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "radiance.json"))
    p.add_argument("--rbf-flags", default="", help="more flags for the rbf runs, one string (e.g. \"--split on\")")
    a = p.parse_args(argv)
    result = {"machine": machine(), "budget_seconds": a.budget, "cases": {}}
    for case in a.cases:
        folder, flags = CASES[case]
        scene = Path(a.data) / folder
        if not scene.exists():
            print(f"skip {case}: {scene} not found")
            continue
        runs = {}
        for dec in a.decoders:
            print(f"{case} / {dec}: {a.budget:.0f} s ...", flush=True)
            extra = shlex.split(a.rbf_flags) if dec == "rbf" else []
            runs[dec] = run_one(scene, flags, dec, a.budget, Path(a.runs) / f"{case}-{dec}", a.device, extra)
            print("   ", {k: runs[dec].get(k) for k in ("psnr", "rays_per_second", "render_ms_per_frame", "error")})
        result["cases"][case] = {"runs": runs, "ratios": ratios(runs)}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")  # after every case: partial results survive
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
