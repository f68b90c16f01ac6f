"""How busy the fused frame kernel keeps its lanes, for ray orders and lane-refill settings: counted on any machine.

The kernel (fieldfit.cuda.render_fused, cuda/_fused_triton.py) runs BLOCK rays per program in passes: each pass,
every live lane steps over empty cells (skip iterations, occupancy reads only), then the block evaluates the field
once for all lanes (the costly part, paid whether a lane is live or not). From a trained run's test view
(``fieldfit.load``), this script takes each ray's march (its occupied intervals and where it stops, from the
fieldfit.cuda ops on CPU tensors: their torch references) and replays the kernel's schedule, counting block
passes, skip iterations and refills: programs advance in step, taking rays from one queue in order. Lane use =
field evaluations / (passes x BLOCK). Counts, not timings: a GPU's time also depends on memory and on what a pass
costs.

    python bench/fused_lanes.py RUN [--size 400] [--programs 528] [--out PATH] -> bench/results/fused_lanes.json
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import write


def marches(run: Path, size: int):
    """Per ray of the run's first test view at size x size: (evaluated step indices, end step or -1 when it
    stops opaque), the rays' span lengths through the occupied box, and the march's totals."""
    import torch

    import fieldfit
    from fieldfit.cuda import render_fused, traverse_occupancy
    from fieldfit.render.march import fusable, spans
    from fieldfit.render.rays import ray_aabb
    from fieldfit.tasks.radiance import camera_rays

    model = fieldfit.load(run, "cpu")  # CPU tensors: the fieldfit.cuda ops below run their torch references
    field, grid, march = model.field, model.grid, model.march
    if not fusable(field):
        raise SystemExit(f"{run}: the fused kernel draws RBF fields on a hash grid or a tri-plane only")
    c0 = model.scene.cameras("test")[0]
    k = size / c0.width
    cam = replace(c0, width=size, height=size, fx=c0.fx * k, fy=c0.fy * k, cx=c0.cx * k, cy=c0.cy * k)
    o, d = camera_rays(model.scene, cam)
    bg = torch.as_tensor(model.background, dtype=torch.float32).expand(3).contiguous()
    parts = field.fused_parts()
    with torch.no_grad():
        t_min, t_max, m, sh = spans(grid, o, d, march, parts.sh_degree)
        *_, evals = render_fused(o, d, sh, t_min, t_max, grid.binary, grid.aabb, march.step, m, parts, bg,
                                 march.early_stop, march.alpha_thre)
        ts, _, ri = traverse_occupancy(o, d, t_min, t_max, grid.binary, grid.aabb, march.step, m)
        t0, t1, _ = ray_aabb(o, d, grid.occupied_box())
    n = o.shape[0]
    evals, ri = evals.numpy().astype(np.int64), ri.numpy()
    step_of = np.rint(((ts - t_min[ri]) / march.step).numpy()).astype(np.int64)
    cand = np.bincount(ri, minlength=n)
    first = np.cumsum(cand) - cand
    steps = np.ceil(((t_max - t_min) / march.step).numpy()).astype(np.int64)
    live = (t_max > t_min).numpy()
    plans = [None] * n
    for r in np.flatnonzero(live):
        ks = step_of[first[r]:first[r] + evals[r]]
        plans[r] = (ks, int(steps[r]) if evals[r] == cand[r] else -1)  # all intervals seen: it runs out
    totals = {"rays": n, "rays_with_a_span": int(live.sum()), "candidate_intervals": int(cand.sum()),
              "field_evaluations": int(evals.sum())}
    psnr = model.metrics.get("test", {}).get("psnr")
    return plans, (t1 - t0).numpy(), totals, psnr


def replay(plans, order, block: int, refill: int, programs: int) -> dict:
    """The kernel's schedule: ``programs`` programs of ``block`` lanes, in step, taking rays of ``order`` from
    one queue; a program's done lanes take new rays once ``refill`` (at most ``block``) of them are done.
    refill = block is a launch of fixed blocks run by ``programs`` resident slots. Rounds: passes of the
    busiest program (the frame's time if each pass cost the same and the programs ran side by side)."""
    queue, head = [r for r in order if plans[r] is not None], 0
    refill = min(max(refill, 1), block)
    lanes = [[None] * block for _ in range(programs)]  # [plan, next index into ks, current step]
    passes = skips = refills = rounds = evaluations = 0
    busy = True
    while busy:
        busy = False
        rounds += 1
        for lane in lanes:
            dead = [i for i, s in enumerate(lane) if s is None]
            if head < len(queue) and len(dead) >= refill:
                refills += 1
                for i in dead[:len(queue) - head]:
                    lane[i] = [plans[queue[head]], 0, 0]
                    head += 1
            gaps = []
            for i, s in enumerate(lane):
                if s is None:
                    continue
                (ks, end), j, cur = s
                if j < len(ks):
                    evaluations += 1
                    gaps.append(ks[j] - cur)
                    s[1], s[2] = j + 1, ks[j] + 1
                    if j + 1 == len(ks) and end < 0:
                        lane[i] = None  # opaque after this sample
                else:  # no occupied interval left: it steps to the end of its span
                    gaps.append(max(end - cur, 0))
                    lane[i] = None
            if gaps:
                passes += 1
                skips += int(max(gaps))
            busy = busy or bool(gaps) or head < len(queue)
    return {"block_passes": passes, "skip_iterations": skips, "refills": refills, "rounds": rounds - 1,
            "field_evaluations": evaluations}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a trained rbf radiance run on a hash grid or a tri-plane")
    ap.add_argument("--size", type=int, default=400, help="frame side in pixels")
    ap.add_argument("--programs", type=int, default=264,
                    help="programs running at once (an H100: 132 SMs x 2 of 8 warps at 128 registers)")
    ap.add_argument("--block", type=int, default=32, help="rays per program (the kernel's BLOCK)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    plans, spans, totals, psnr = marches(a.run, a.size)
    n, b = len(plans), a.block
    image = np.arange(n)
    schedules = {  # name -> (order, lanes done before a refill)
        "image order, fixed blocks (no refill)": (image, b),
        "span order, fixed blocks (no refill)": (np.argsort(spans, kind="stable"), b),
        **{f"image order, refill after {k} lanes": (image, k) for k in sorted({1, max(b // 4, 1), max(b // 2, 1)})},
    }
    out = {"run": str(a.run), "test_psnr": psnr, "size": a.size, "block": b, "programs": a.programs, **totals,
           "note": "counted on the CPU from the reference's marches; not timings", "schedules": {}}
    for name, (order, refill) in schedules.items():
        row = replay(plans, order, b, refill, a.programs)
        row["lane_use"] = totals["field_evaluations"] / max(row["block_passes"] * b, 1)
        out["schedules"][name] = row
        print(f"{name:40s}: {row['block_passes']:8d} block passes, {row['skip_iterations']:9d} skip iterations, "
              f"{row['refills']:7d} refills, {row['rounds']:6d} rounds, lane use {row['lane_use']:.3f}", flush=True)
    write("fused_lanes", out, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
