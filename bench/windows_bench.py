"""The training march on a CPU a window at a time (``render.windows``) against every candidate then ``terminate``.

For each trained radiance run: its own field, occupancy grid and march, and a training-sized batch of rays through
random pixels of its training views; the time of ``march_windows`` and of ``candidates`` + ``terminate`` on the same
rays with the same jitter (median of alternating rounds), and whether their samples are equal (they must be, bit
for bit). With ``--fit-steps N``, also whole training steps: copies of the run trained N steps further from its
checkpoint, alternately with the windows and without (``render.march.windowed`` forced off), ms per step after
the first ``--skip`` (the fits run in this process, one at a time).

    python bench/windows_bench.py RUN [RUN ...] [--rays 1024] [--rounds 7] [--fit-steps 200 --pairs 3]
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traverse_bench import training_rays  # noqa: E402

from _common import write  # noqa: E402


def bench_march(path: str, n_rays: int, rounds: int) -> dict:
    import torch

    import fieldfit.api as api
    from fieldfit.render.march import candidates, windowed
    from fieldfit.render.termination import terminate
    from fieldfit.render.windows import march_windows

    model = api.load(path, device="cpu")
    grid, cfg, field = model.grid, model.march, model.field
    o, d = training_rays(model, n_rays, 0)

    def every():
        c = candidates(grid, o, d, cfg, True)
        return terminate(field.density, o, d, c, cfg.early_stop, cfg.alpha_thre), c.n_samples

    def windows():
        return march_windows(field.density, grid, o, d, cfg, True), None

    times, outs = {"windows": [], "every": []}, {}
    for r in range(rounds):
        for name, fn in (("windows", windows), ("every", every)):
            torch.manual_seed(r)  # the same jitter for both
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    (a, _), (b, n_cand) = outs["windows"], outs["every"]
    equal = (a.n_samples == b.n_samples and torch.equal(a.t_starts, b.t_starts) and torch.equal(a.t_ends, b.t_ends)
             and torch.equal(a.ray_indices, b.ray_indices))
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    res = {"run": path, "rays": o.shape[0], "contracted": grid.contraction is not None,
           "occupied_fraction": grid.occupied_fraction(), "windowed_by_default": windowed(grid, "cpu"),
           "candidates": n_cand, "kept": a.n_samples, "equal": equal, "windows_ms": ms["windows"],
           "every_ms": ms["every"], "speedup": ms["every"] / ms["windows"], "threads": torch.get_num_threads()}
    print(f"{path}: {n_cand:,} candidates, {a.n_samples:,} kept of {o.shape[0]:,} rays; windows {ms['windows']:.1f} "
          f"ms, every candidate {ms['every']:.1f} ms ({res['speedup']:.2f}x); equal: {equal}")
    return res


def fit_ms_per_step(path: str, steps: int, skip: int, windows: bool) -> float:
    import fieldfit.api as api
    import fieldfit.render.march as march

    default = march.windowed
    if not windows:
        march.windowed = lambda grid, device: False
    tmp = Path(tempfile.mkdtemp(prefix="windows_bench_"))
    try:
        dst = tmp / "run"
        shutil.copytree(path, dst)
        start = int(api.open_run(dst).metrics().get("steps", 0))
        package, job = api.prepare(method="rbf", resume=str(dst), steps=start + steps, device="cpu")
        stamps = []
        job.run.step_hook = lambda i, state: stamps.append(time.perf_counter())
        try:
            package.fit(job)
        finally:
            job.run.release()
    finally:
        march.windowed = default
        shutil.rmtree(tmp, ignore_errors=True)
    return 1e3 * (stamps[-1] - stamps[skip]) / (len(stamps) - 1 - skip)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="trained radiance run folders")
    p.add_argument("--rays", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--fit-steps", type=int, default=0, help="also time N training steps with and without")
    p.add_argument("--skip", type=int, default=30, help="steps of each fit not timed")
    p.add_argument("--pairs", type=int, default=3, help="alternating fits with and without the windows")
    p.add_argument("--out")
    a = p.parse_args()
    results = []
    for r in a.runs:
        res = bench_march(r, a.rays, a.rounds)
        if a.fit_steps > 0:
            on, off = [], []
            for _ in range(a.pairs):
                on.append(fit_ms_per_step(r, a.fit_steps, a.skip, True))
                off.append(fit_ms_per_step(r, a.fit_steps, a.skip, False))
            res.update(fit_ms_windows=on, fit_ms_every=off,
                       fit_speedup=statistics.mean(off) / statistics.mean(on))
            print(f"{r}: training steps {statistics.mean(on):.1f} ms with the windows, {statistics.mean(off):.1f} "
                  f"without ({res['fit_speedup']:.2f}x; {a.pairs} pairs of {a.fit_steps} steps)")
        results.append(res)
    write(f"windows_{time.strftime('%Y-%m-%d')}", {"command": " ".join(sys.argv), "results": results},
          Path(a.out) if a.out else None)
    return 0 if all(r["equal"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
