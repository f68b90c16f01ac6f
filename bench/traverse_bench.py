"""The occupancy traversal on a CPU: the torch path (blocks of empty steps skipped) against the reference.

For each trained radiance run (a box or NDC scene; contracted captures march another way), the run's own occupancy
grid and march step, and a training-sized batch of rays through random pixels of its training views: the time of
``traverse_blocks`` and of ``traverse_occupancy_ref`` on the same rays (median of alternating rounds), and whether
their intervals are equal (they must be, bit for bit).

    python bench/traverse_bench.py RUN [RUN ...] [--rays 4096] [--rounds 7] [--out bench/results/traverse.json]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def training_rays(model, n: int, seed: int):
    import torch

    from fieldfit.tasks.radiance import camera_rays

    g = torch.Generator().manual_seed(seed)
    cams = model.cameras("train")
    os_, ds = [], []
    for k in torch.randint(0, len(cams), (n,), generator=g).tolist():
        c = cams[k]
        xy = torch.rand(1, 2, generator=g) * torch.tensor([c.width, c.height])
        o, d = camera_rays(model.scene, c, xy)
        os_.append(o)
        ds.append(d)
    return torch.cat(os_), torch.cat(ds)


def bench_run(path: str, n_rays: int, rounds: int) -> dict:
    import torch

    import fieldfit.api as api
    from fieldfit.cuda._torch_ref import traverse_occupancy_ref
    from fieldfit.cuda._traverse_torch import plan, traverse_blocks
    from fieldfit.render.march import spans

    model = api.load(path, device="cpu")
    grid, march = model.grid, model.march
    if grid.contraction is not None:
        return {"run": path, "skipped": "contracted scene: its candidates do not come from this traversal"}
    o, d = training_rays(model, n_rays, 0)
    t_min, t_max, m, _ = spans(grid, o, d, march)
    jitter = torch.rand(o.shape[0], generator=torch.Generator().manual_seed(1))
    args = (o, d, t_min, t_max, grid.binary, grid.aabb, march.step, m, jitter)
    times, outs = {"blocks": [], "reference": []}, {}
    for _ in range(rounds):
        for name, fn in (("blocks", traverse_blocks), ("reference", traverse_occupancy_ref)):
            t = time.perf_counter()
            outs[name] = fn(*args)
            times[name].append(time.perf_counter() - t)
    ref = outs["reference"]
    equal = all(torch.equal(a, b) for a, b in zip(outs["blocks"], ref, strict=True))
    factor, per_block = plan(d, grid.binary, grid.aabb, march.step)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    res = {"run": path, "rays": o.shape[0], "max_steps": m, "grid": list(grid.binary.shape),
           "occupied_fraction": grid.occupied_fraction(), "coarse_factor": factor, "steps_per_block": per_block,
           "intervals": int(ref[0].numel()), "equal": equal, "blocks_ms": ms["blocks"],
           "reference_ms": ms["reference"], "speedup": ms["reference"] / ms["blocks"],
           "threads": torch.get_num_threads()}
    print(f"{path}: {res['intervals']:,} intervals of {res['rays']:,} rays ({m} steps at most); blocks "
          f"{ms['blocks']:.1f} ms, reference {ms['reference']:.1f} ms ({res['speedup']:.2f}x); equal: {equal}")
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="trained radiance run folders")
    p.add_argument("--rays", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out")
    a = p.parse_args()
    results = [bench_run(r, a.rays, a.rounds) for r in a.runs]
    write(f"traverse_{time.strftime('%Y-%m-%d')}", {"command": " ".join(sys.argv), "results": results},
          Path(a.out) if a.out else None)
    return 0 if all(r.get("equal", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
