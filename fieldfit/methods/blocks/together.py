"""Blocks trained together: one optimiser over every block, through the blended field (``blend``).

Trained apart (``pipeline``), a block sees photos that also show what lies beyond its box; it cannot draw that,
so it fits it as haze at its faces (street, 4x1 at 240 s: 17.8 dB against one field's 21.7). Trained together,
each step draws rays from every training photo, marches them through the union of the blocks' occupancy grids
and renders the blended field, so a sample updates only the blocks whose box holds it, in proportion to its
blend weight, and every pixel is explained by the blocks along its ray.

A step takes as many samples as one field's step, each evaluated by the one block whose cell holds it (two or
four inside the overlap bands); on the CPU a sample costs 14-27% more than one field's (several smaller field
calls per pass, the blend's gathers and scatters: bench/README.md "Large scenes in blocks"). The budget is the
whole fit's (not split). The parent's checkpoint holds every block (resume goes on from it); at the end each
block's weights and grid are written into its own run folder (``blocks/<name>``: config.json, checkpoint,
metrics.json without test views, which a block alone does not draw whole), so the parent loads, renders, exports
and evaluates as it does after a fit apart. The ray batch, learning rates and grid schedule are rbf's
(``methods.rbf.radiance.Stepper``).
"""

import time
from pathlib import Path

import torch
from torch import nn

from fieldfit.fingerprint import input_record
from fieldfit.logs import LogOptions
from fieldfit.optim import count_params, make_adam, seed_everything
from fieldfit.runs import Run, model_state
from fieldfit.trainer import cpu_threads, fit_loop, plot_curve, resume_state, save

from .blend import blocks_grid


class Together(nn.Module):
    """The blended field (``field``, its blocks' fields and grids) with the union occupancy ``grid``, in the
    shape rbf's ``Stepper`` trains (no colour maps, no pose corrections)."""

    appearance = None
    poses = None

    def __init__(self, field, grid, models: list, boxes):
        super().__init__()
        self.field, self.grid = field, grid
        self._models = list(models)  # the blocks' RadianceModels (not registered: their tensors are in field)
        self._boxes = boxes

    @torch.no_grad()
    def update_grid(self, step: int, step_size: float, n_cells=None, threshold: float = 0.01,
                    decay: float = 0.95) -> None:
        """Refresh every block's grid (the same share of its cells) and then their union."""
        share = None if n_cells is None else n_cells / self.grid.binary.numel()
        for m in self._models:
            k = None if share is None else max(1, round(share * m.grid.binary.numel()))
            m.update_grid(step, step_size, k, threshold, decay)
        self.refresh_union()

    @torch.no_grad()
    def refresh_union(self) -> None:
        union = blocks_grid([m.grid for m in self._models], self._boxes, self.grid.aabb.tolist(),
                            self.grid.resolution, self.grid.binary.device)
        self.grid.binary.copy_(union.binary)


def block_runs(run: Run, plan, scene, options: dict, device, seed: int, test_every: int) -> list:
    """(child Run, RadianceRun) of every block of ``plan``: its scene folder (``scenes.subset``), its run folder
    made afresh with the config rbf would write for it (locked), its model built (untrained)."""
    parent = run.config()
    out = []
    try:
        for b in plan.blocks:
            out.append(_block_run(run, parent, b, scene, options, device, seed, test_every))
    except BaseException:
        for child, _ in out:
            child.release()
        raise
    return out


def _block_run(run: Run, parent: dict, b, scene, options: dict, device, seed: int, test_every: int) -> tuple:
    """``block_runs``' pair for block ``b``."""
    from fieldfit.fields.gaussian_rbf import FieldConfig
    from fieldfit.methods.rbf.config import RadianceConfig, field_for_device
    from fieldfit.methods.rbf.radiance import RadianceRun, build_model, run_config
    from fieldfit.scenes.inputs import classify
    from fieldfit.scenes.subset import subset, write_block_scene

    folder = write_block_scene(run.path / "scenes" / b.name, parent["source"], b.train, b.test, b.box,
                               scene.near, scene.far, test_every)
    inp = classify(str(Path(folder).resolve()))
    part = subset(scene, b.train + b.test, len(b.train), b.box, scene.near, scene.far)
    cfg = RadianceConfig.for_scene(part, device, **options)
    config = run_config(part, inp, cfg, seed)
    child = Run.claim(run.path / "blocks" / b.name, overwrite=True)
    config["field"] = field_for_device(FieldConfig.from_dict(config["field"]), device, child).to_dict()
    child.header = {**input_record(inp), "method": "rbf",
                    "command": f"{parent.get('command', '')} (block {b.name}, trained together)"}
    child.write_config(config)
    model, _ = build_model(config, device)
    return child, RadianceRun(child, child.config(), device, model=model, scene=part)


def fit_together(run: Run, plan, scene, options: dict, budget, device, seed: int, test_every: int) -> dict:
    """Train the blocks of ``plan`` together into the parent ``run`` (config written, locked) and write each
    block's run; return the training's figures for the parent's metrics (seconds, steps, rays per second)."""
    with cpu_threads(run, device):
        return _fit(run, plan, scene, options, budget, device, seed, test_every)


def _fit(run: Run, plan, scene, options: dict, budget, device, seed: int, test_every: int) -> dict:
    from fieldfit.methods.rbf.radiance import Stepper, param_groups
    from fieldfit.render.march import render_rays
    from fieldfit.render.metrics import psnr_from_mse
    from fieldfit.tasks.radiance import PixelStore, eval_rays_from

    from .model import BlocksRun

    t0 = time.perf_counter()
    seed_everything(seed)
    device = torch.device(device)
    children = block_runs(run, plan, scene, options, device, seed, test_every)
    try:
        blocks = [r for _, r in children]
        parent = BlocksRun(run, run.config(), device, scene=scene, blocks=blocks)
        model = Together(parent.field, parent.grid, [r.model for r in blocks], [b.box for b in plan.blocks])
        model.train()
        cfg = blocks[0].cfg
        opt = make_adam([g for r in blocks for g in param_groups(r.model, cfg)])
        store = PixelStore(scene, scene.split("train"))
        eval_batch = eval_rays_from(scene, cfg.eval_rays, seed)
        params = count_params(model.field.fields)
        run.log(f"{len(blocks)} blocks trained together through the blended field: {len(scene.split('train'))} "
                f"train views, {store.count:,} pixels, {params:,} parameters, march step {parent.march.step:.4g}; "
                f"budget {budget.describe()} in all")
        start, elapsed, history = 0, 0.0, None
        if run.has_checkpoint():
            start, elapsed, history = resume_state(run, model, opt, device)
        stepper = Stepper(model, opt, store, parent.march, cfg, device, seed + start)
        prepare_s = time.perf_counter() - t0

        def evaluate():
            rgb, _, _, _ = render_rays(model.field, model.grid, eval_batch.origins, eval_batch.dirs,
                                       eval_batch.background, parent.march, device, mode=parent.march_mode())
            return psnr_from_mse(torch.mean((rgb - eval_batch.target(eval_batch.background)) ** 2).item())

        if run.log_options is None:  # RUN/metrics.csv, as every fit writes
            run.log_options = LogOptions()
        t1 = time.perf_counter()
        history = fit_loop(stepper, budget, run, evaluate=evaluate, state=model_state(model, opt),
                           metric_name="psnr", eval_every_s=budget.eval_every(10), start_step=start,
                           start_elapsed=elapsed, history=history, unit="rays", preview=parent.preview)
        train_s = time.perf_counter() - t1
        plot_curve(run, history, "psnr")
        steps = max(stepper.last_step, start)
        for child, r in children:
            save(child, model_state(r.model, None), steps, elapsed + train_s, history)
            child.write_metrics({"task": "radiance", "trained": "together", "parent": "../..",
                                 "params": count_params(r.model), "steps": steps,
                                 "occupied_fraction": r.grid.occupied_fraction()})
    finally:
        for child, _ in children:
            child.release()
    return {"train_seconds": train_s, "steps": steps, "prepare_seconds": prepare_s,
            "rays_per_second": stepper.rays / max(train_s, 1e-9),
            "train_samples_per_ray": stepper.samples / max(stepper.rays, 1)}


__all__ = ["Together", "block_runs", "fit_together"]
