"""Where a fit's training steps spend their time: torch.profiler over steps of a real fit.

    python bench/profile_fit.py ../shared/data/lego_400 --downscale 4                 # rbf, lego 100x100
    python bench/profile_fit.py ../shared/data/lego_400 --downscale 4 --decoder mlp
    python bench/profile_fit.py armadillo.obj --skip 20 --active 40
    python bench/profile_fit.py --resume RUN          # the late steps of a finished fit (RUN is trained on)

The fit runs through ``fieldfit.api`` with a step hook that advances the profiler (the hook's time is not
training time), so only steps ``skip`` .. ``skip + active`` are recorded: no preparation, evaluation or export.
Prints the ops by self CPU time and writes bench/results/profile_<scene>_<decoder>_<date>.json. The numbers are
shares of a step; run it alone for absolute times.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene", nargs="?")
    p.add_argument("--resume", help="profile the steps after RUN's last one (the run is trained further)")
    p.add_argument("--skip", type=int, default=30, help="steps before recording (warm-up, first grid refresh)")
    p.add_argument("--active", type=int, default=30, help="steps recorded")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", help="JSON path")
    a, flags = p.parse_known_args()
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    import fieldfit.api as api

    options = {}
    for k in range(0, len(flags), 2):  # --name value pairs: the method's options
        options[flags[k].lstrip("-").replace("-", "_")] = _value(flags[k + 1])
    steps = a.skip + a.active + 1
    if a.resume:
        run = api.open_run(a.resume)
        start = int(run.metrics().get("steps", 0))
        package, job = api.prepare(method=run.config()["method"], resume=a.resume, steps=start + steps, device="cpu")
        a.scene = run.config().get("scene", a.resume)
        options.setdefault("decoder", run.config().get("config", {}).get("decoder", "rbf"))
    else:
        package, job = api.prepare(a.scene, options.pop("method", "rbf"), steps=steps, device="cpu",
                                   out=f"/tmp/profile_fit/{time.strftime('%Y%m%d-%H%M%S')}", options=options)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts, schedule=schedule(wait=a.skip - 1, warmup=1, active=a.active)) as prof:
        job.run.step_hook = lambda i, state: prof.step()
        try:
            package.fit(job)
        finally:
            job.run.release()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(({"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / a.active,
                    "share": e.self_cpu_time_total / total, "calls_per_step": e.count / a.active} for e in events),
                  key=lambda r: -r["share"])[:a.top]
    print(f"{'op':60s} {'ms/step':>9s} {'share':>7s}")
    for r in rows:
        print(f"{r['op'][:60]:60s} {r['self_cpu_ms_per_step']:9.2f} {100 * r['share']:6.1f}%")
    print(f"total self CPU per step: {total / 1e3 / a.active:.1f} ms, threads {torch.get_num_threads()}")
    name = Path(a.scene).name + "_" + str(options.get("decoder", "rbf"))
    write(f"profile_{name}_{time.strftime('%Y-%m-%d')}", {"command": " ".join(sys.argv), "steps": a.active,
                                                           "cpu_ms_per_step": total / 1e3 / a.active, "ops": rows},
          Path(a.out) if a.out else None)
    return 0


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    sys.exit(main())
