"""Checks that need several ranks, run by test_distributed.py under torchrun (gloo on the CPU):

    torchrun --nproc_per_node 2 tests/distributed/_ranks.py OUT

Every rank writes what it saw to OUT/rank<r>.json; the test compares the ranks and the one-process results.
Gradient checks: each rank takes its half of a batch that every rank draws alike, the gradients are averaged
over the ranks (``fieldfit.dist``), and each rank also computes the full batch's gradient alone: the two must agree.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fieldfit import dist
from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.gaussian_rbf import SDFRBF, FieldConfig

TINY = FieldConfig(grid=GridConfig(levels=2, base_res=4, max_res=8, features=2), units=8)


def _half(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // dist.world()
    return x[dist.rank() * n:(dist.rank() + 1) * n]


def _grads(model) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in model.parameters()])


def _averaged_vs_full(model, loss_of, batch: list) -> float:
    """Largest |averaged gradient of the halves - full batch's gradient| relative to the largest gradient."""
    model.zero_grad(set_to_none=True)
    loss_of(*[_half(b) for b in batch]).backward()
    dist.average_gradients(list(model.parameters()))
    averaged = _grads(model).clone()
    model.zero_grad(set_to_none=True)
    loss_of(*batch).backward()
    full = _grads(model)
    return float((averaged - full).abs().max() / full.abs().max().clamp_min(1e-30))


def sdf_gradient() -> float:
    from fieldfit.methods.rbf.sdf import sdf_loss

    torch.manual_seed(0)
    model = SDFRBF(TINY).double()
    x = torch.rand(512, 3, dtype=torch.float64) * 2 - 1
    return _averaged_vs_full(model, lambda xs, ys: sdf_loss(model.sdf(xs), ys), [x, x.norm(dim=1) - 0.5])


def radiance_gradient() -> tuple[float, list]:
    """(gradient error, the occupancy grid's checksum after an update drawn differently on each rank)."""
    from fieldfit.fields.radiance_rbf import RadianceRBF
    from fieldfit.render import OccupancyGrid
    from fieldfit.render.march import MarchConfig, render

    torch.manual_seed(0)
    box = [[-1.0, -1, -1], [1, 1, 1]]
    field = RadianceRBF(TINY, box, density_shift=2.0).double()
    grid = OccupancyGrid(box, resolution=8, warmup_steps=0).double()
    march = MarchConfig(step=0.05, near=0.0, far=10.0, early_stop=0.0, alpha_thre=0.0)
    g = torch.Generator().manual_seed(1)
    origins = torch.tensor([0.0, 0.0, -3.0], dtype=torch.float64).expand(256, 3).contiguous()
    dirs = torch.nn.functional.normalize(torch.cat([torch.rand(256, 2, generator=g, dtype=torch.float64) * 0.6 - 0.3,
                                                    torch.ones(256, 1, dtype=torch.float64)], 1), dim=1)
    target = torch.rand(256, 3, generator=g, dtype=torch.float64)

    def loss_of(o, d, t):
        out, _ = render(field, grid, o, d, torch.zeros(3, dtype=torch.float64), march)
        return torch.nn.functional.mse_loss(out.rgb, t)

    error = _averaged_vs_full(field, loss_of, [origins, dirs, target])
    torch.manual_seed(100 + dist.rank())  # each rank would draw other cells: rank 0's grid must win
    grid.update(lambda x: field.density(x) * 0.05, step=10, n_cells=200)
    return error, [float(grid.density.sum()), int(grid.binary.sum())]


def rows_step() -> float:
    """dnmp's row-sparse Adam: each rank gathers other rows; one step with the ranks' gradients averaged must
    equal one step of a single optimizer that saw both halves (at half weight each)."""
    from fieldfit.methods.dnmp.rows import RowAdam

    torch.manual_seed(0)
    start = torch.randn(64, 4, dtype=torch.float64)
    rows = torch.randint(0, 64, (2, 40))
    weights = torch.randn(2, 40, 4, dtype=torch.float64)
    table = start.clone().requires_grad_(True)
    opt = RowAdam([table], lr=0.1)
    r = dist.rank()
    (opt.gather(0, rows[r]) * weights[r]).sum().backward()
    opt.step()
    with dist_off():
        alone = start.clone().requires_grad_(True)
        ref = RowAdam([alone], lr=0.1)
        sum((ref.gather(0, rows[k]) * weights[k]).sum() / 2 for k in range(2)).backward()
        ref.step()
    return float((table.detach() - alone.detach()).abs().max())


class dist_off:
    """Make ``fieldfit.dist`` answer as one process inside the block (a reference computed on one rank)."""

    def __enter__(self):
        self.saved = dist.active
        dist.active = lambda: False

    def __exit__(self, *exc):
        dist.active = self.saved


def agreed_loop(out: Path) -> dict:
    """fit_loop with a slower rank 1 and a loss that is NaN on rank 1 only at step 5 (once): every rank must
    stop at the same step, roll back together, and only rank 0 writes the run."""
    from fieldfit.runs import Run, model_state
    from fieldfit.trainer import Budget, fit_loop

    run = Run.create(out / "run") if dist.is_main() else Run.mirror(out / "run")
    w = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([w], lr=0.01)
    failed, last = [], [0]

    def step(i, progress):
        last[0] = i + 1
        time.sleep(0.01 if dist.rank() else 0.001)
        loss = (w ** 2).sum()
        if dist.rank() == 1 and i == 5 and not failed:
            failed.append(i)
            loss = loss * float("nan")
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    history = fit_loop(step, Budget(time_budget=0.6), run, state=model_state(w_module(w), opt))
    run.release()
    return {"steps": last[0], "losses": history.loss, "mirror_gone": not run.path.exists()}


def curve(out: Path, name: str) -> list:
    """The losses of a short rbf SDF fit through fit_loop with rank-seeded batches (run it twice: the same)."""
    from fieldfit.methods.rbf.sdf import sdf_loss
    from fieldfit.optim import make_adam, seed_everything
    from fieldfit.runs import Run, model_state
    from fieldfit.trainer import Budget, fit_loop

    gen = seed_everything(0)
    dist.fork_generator(gen, 0)
    model = SDFRBF(TINY)
    opt = make_adam([{"params": model.parameters(), "lr": 1e-2}])
    pts = torch.rand(4096, 3, generator=torch.Generator().manual_seed(5)) * 2 - 1
    target, batch = pts.norm(dim=1) - 0.5, dist.share(512)

    def step(i, progress):
        idx = torch.randint(0, len(pts), (batch,), generator=gen)
        loss = sdf_loss(model.sdf(pts[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    run = Run.create(out / name) if dist.is_main() else Run.mirror(out / name)
    history = fit_loop(step, Budget(steps=25), run, state=model_state(model, opt))
    run.release()
    return history.loss


def w_module(w):
    m = torch.nn.Module()
    m.w = w
    return m


def main(out: Path) -> None:
    dist.setup("cpu")
    torch.set_num_threads(1)
    result = {"rank": dist.rank(), "world": dist.world(), "sdf": sdf_gradient()}
    result["radiance"], result["grid"] = radiance_gradient()
    result["rows"] = rows_step()
    result["loop"] = agreed_loop(out)
    result["split"] = dist.collect([(k, dist.rank()) for k in dist.deal(list(range(5)))], 5)
    result["curves"] = [curve(out, "curve1"), curve(out, "curve2")]
    (out / f"rank{dist.rank()}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.teardown()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main(Path(sys.argv[1]))
    sys.stdout.flush()
    os._exit(0)  # as fieldfit.cli.main leaves a rank: no interpreter shutdown after the process group
