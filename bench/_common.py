"""Shared bench helpers: machine description, running a fit through the CLI, writing JSON."""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FIELDFIT_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results"


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    try:
        info["load_avg_start"] = os.getloadavg()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fit_into(out: Path, scene, *flags, budget: float | None = None, steps: int | None = None) -> dict:
    """Run `fieldfit SCENE FLAGS --out OUT` (the method's default budget when neither is given); return its
    metrics.json with ``wall_seconds``. RuntimeError with the end of stderr when it fails."""
    cmd = [sys.executable, "-m", "fieldfit", str(scene), "--out", str(out), *map(str, flags)]
    cmd += ["--time-budget", str(budget)] if budget else ["--steps", str(steps)] if steps else []
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    m = json.loads((Path(out) / "metrics.json").read_text())
    m["wall_seconds"] = time.perf_counter() - t0
    return m


def fit(scene, *flags, budget: float | None = None, steps: int | None = None) -> dict:
    """Run `fieldfit SCENE FLAGS` in a fresh run folder; return its metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        return fit_into(Path(tmp) / "run", scene, *flags, budget=budget, steps=steps)


def write(name: str, payload: dict, path: Path | None = None) -> Path:
    """payload with the machine's description, as JSON at ``path`` (default bench/results/NAME.json)."""
    p = Path(path) if path else RESULTS / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {p}")
    return p
