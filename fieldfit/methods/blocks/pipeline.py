"""A fit in blocks: partition, one rbf run per block (trained together or one after another), the parent run.

Layout of a parent run folder PARENT:

    PARENT/config.json          method "blocks", task "radiance": the scene, the partition, the blocks (relative
                                paths), the options given to every block
    PARENT/scenes/<name>/       block.json: the block's views and box (``scenes.subset``), its input
    PARENT/blocks/<name>/       the block's own rbf run (config.json, checkpoint, metrics.json, mesh.ply, ...)
    PARENT/metrics.json, renders/test_NNN.png, mesh.ply    the blended field on the scene's test views

Trained together (the default, ``together``): one optimiser over all blocks through the blended field, for the
whole budget. Trained apart (``--train apart``): the budget (``--steps`` or ``--time-budget``) is the total,
split evenly over the blocks, each fitted alone on the photos that see it. Every block is fitted
with the same march step (together: one field's of the scene; apart: the smallest any block would choose),
box-bounded (no contraction) and without
per-photo colour maps, so their fields blend per sample (``blend``). Running the same command again with the
same --out goes on: together, from the parent's checkpoint; apart, a block whose run has metrics.json is kept,
one with a checkpoint is resumed, the others are fitted afresh; then the parent is measured again.
"""

import time
from pathlib import Path

from fieldfit.errors import FitError, InputError, Stopped
from fieldfit.runs import CONFIG, METRICS, Run
from fieldfit.trainer import Budget

from .config import BlocksConfig
from .partition import check_overlap, parse_grid, partition

BLOCK_METHOD = "rbf"
FORCED = {"contract": "off", "appearance": "off"}  # what blending per sample needs of every block


def check_options(options: dict) -> dict:
    """The blocks' rbf options, checked; InputError for the ones blending cannot honour."""
    from fieldfit.config import given_options
    from fieldfit.methods.rbf.config import RadianceConfig

    parsed = given_options(RadianceConfig, options, f"--method {BLOCK_METHOD} on radiance inputs")
    for name, value in FORCED.items():
        if parsed.get(name, value) != value:
            raise InputError(f"--{name} {parsed[name]}", "blocks are box-bounded and blended per sample",
                             f"leave --{name} out")
    return {**parsed, **FORCED}


def block_step(scene, blocks, options: dict, together: bool) -> float:
    """The march step of every block. Together: the step one field of the whole scene would take (the blocks are
    marched as one field; street 4x1 at 60 s: 19.3 dB against 18.6 with the finer step below, which costs 1.3x
    the samples). Apart: the smallest of the steps each block would choose alone (``grid_and_step``)."""
    from fieldfit.scenes.subset import subset
    from fieldfit.tasks.radiance import grid_and_step

    if options.get("step"):
        return float(options["step"])
    if together:
        return float(grid_and_step(scene, options.get("grid_res"))[1])
    steps = []
    for b in blocks:
        part = subset(scene, b.train + b.test, len(b.train), b.box, scene.near, scene.far)
        steps.append(grid_and_step(part, options.get("grid_res"))[1])
    return float(min(steps))


def parent_config(inp, scene, cfg: BlocksConfig, plan, step: float, options: dict, budget: Budget) -> dict:
    return {"task": "radiance", "method": "blocks", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
            "scene": scene.name, "scene_kind": scene.kind, "aabb": scene.aabb.tolist(), "near": scene.near,
            "far": scene.far, "config": cfg.to_dict(), "block_method": BLOCK_METHOD, "block_options": options,
            "step": step, "budget": {"steps": budget.steps, "time_budget": budget.time_budget},
            **{k: v for k, v in plan.to_dict().items() if k != "blocks"},
            "blocks": [{**b.to_dict(), "run": f"blocks/{b.name}", "scene_dir": f"scenes/{b.name}"}
                       for b in plan.blocks]}


def _same_plan(saved: dict, new: dict) -> bool:
    keys = ("source", "axes", "edges", "margins", "block_options", "step")
    return all(saved.get(k) == new.get(k) for k in keys) and \
        [b["name"] for b in saved.get("blocks", [])] == [b["name"] for b in new["blocks"]] and \
        saved.get("config", {}).get("grid") == new["config"]["grid"] and \
        BlocksConfig.from_dict(saved.get("config", {})).train == new["config"]["train"]  # none saved: apart


def fit_blocks(inp, run: Run, cfg: BlocksConfig, budget: Budget, *, device: str = "cpu", seed: int = 0,
               options: dict | None = None) -> dict:
    """Fit ``inp`` (a radiance Input) in blocks into the parent ``run`` (locked by the caller; resumed when it
    already holds a parent's config.json) and return the parent's metrics."""
    from fieldfit.api import fit
    from fieldfit.tasks.radiance import load_radiance_scene

    grid = parse_grid(cfg.grid)
    check_overlap(cfg.overlap)
    options = check_options(dict(options or {}, downscale=cfg.downscale, test_every=cfg.test_every))
    if inp.task != "radiance":
        raise InputError(inp.path or inp.name, f"is a {inp.task} input, not posed images",
                         "--blocks fits posed-image scenes, e.g. fieldfit street --blocks 4x1")
    scene = load_radiance_scene(inp, cfg.downscale, cfg.test_every)
    if scene.ndc:
        raise InputError(scene.source, "a forward-facing (LLFF, NDC) scene has no world-space ground to cut",
                         "fit it whole: fieldfit SCENE")
    plan = partition(scene, grid, cfg.overlap, cfg.min_share)
    options["step"] = block_step(scene, plan.blocks, options, cfg.train == "together")
    config = parent_config(inp, scene, cfg, plan, options["step"], options, budget)
    if (run.path / CONFIG).is_file():
        if not _same_plan(run.config(), config):
            raise InputError(run.path, "holds the blocks of another scene, grid, overlap or block options",
                             "give the command it was made with to go on, or a new --out")
    run.write_config(config)
    n = len(plan.blocks)
    if cfg.train == "together":
        from .together import fit_together

        run.log(f"{scene.name}: {n} blocks ({grid[0]}x{grid[1]} along axes {plan.axes}, overlap {cfg.overlap:g}), "
                f"trained together for {budget.describe()}")
        t0 = time.perf_counter()
        trained = fit_together(run, plan, scene, options, budget, device, seed, scene_test_every(run))
        metrics = finish(run, time.perf_counter() - t0, device, train_seconds=trained["train_seconds"])
        metrics.update(train="together", **trained)
        run.write_metrics(metrics)
        return metrics
    each = budget.share(1.0 / n)
    run.log(f"{scene.name}: {n} blocks ({grid[0]}x{grid[1]} along axes {plan.axes}, overlap {cfg.overlap:g}); "
            f"budget {budget.describe()} in all, split evenly: {each.describe()} per block, one after another")
    t0 = time.perf_counter()
    for k, b in enumerate(plan.blocks, 1):
        _fit_block(fit, run, b, f"block {k}/{n} {b.name}", each, device, seed, options, scene)
    return finish(run, time.perf_counter() - t0, device)


def _fit_block(fit, run: Run, b, tag: str, budget: Budget, device, seed, options: dict, scene) -> None:
    """Fit (or resume, or keep) one block's run; one line naming the block when it fails."""
    from fieldfit.scenes.subset import write_block_scene

    child = run.path / "blocks" / b.name
    if (child / METRICS).is_file():
        run.log(f"{tag}: finished before, kept")
        return
    source = run.config()["source"]
    folder = write_block_scene(run.path / "scenes" / b.name, source, b.train, b.test, b.box, scene.near, scene.far,
                               scene_test_every(run))
    resume = (child / CONFIG).is_file() and (child / "checkpoint.safetensors").is_file()
    run.log(f"{tag}: {len(b.train)} train / {len(b.test)} test views, box {b.box.round(3).tolist()}; "
            f"{'resumed' if resume else 'fitted'} for {budget.describe()}")
    kw = {"time_budget": budget.time_budget, "steps": budget.steps, "device": device, "seed": seed}
    try:
        if resume:
            fit(None, resume=str(child), **kw, **options)
        else:
            fit(str(folder), BLOCK_METHOD, out=str(child), overwrite=True, **kw, **options)
    except InputError as e:
        raise InputError(tag, f"failed: {e}", "fix it and run the same command again: finished blocks are kept") \
            from None
    except (FitError, FloatingPointError) as e:
        raise FitError(f"{tag} failed: {e} (run the same command again: finished blocks are kept)") from None
    except Stopped as e:
        raise Stopped(f"{tag} stopped, its checkpoint kept: run the same command again to go on", e.exit_code - 128) \
            from None


def scene_test_every(run: Run) -> int:
    return int(run.config()["config"]["test_every"])


def finish(run: Run, seconds: float, device, train_seconds: float | None = None) -> dict:
    """Measure the parent on the scene's test views, write its mesh and metrics.json; return the metrics.
    ``train_seconds``: of blocks trained together (else the sum of the blocks' own)."""
    from .model import BlocksRun

    model = BlocksRun(run, run.config(), device)
    metrics = model.measure()
    metrics.update(model.export_mesh(run.path / "mesh.ply", model.config["block_options"].get("resolution")))
    blocks = []
    for spec, child in zip(run.config()["blocks"], model.blocks, strict=True):
        m = child.metrics
        blocks.append({"name": spec["name"], "train_views": len(spec["train"]), "test_views": len(spec["test"]),
                       "params": m.get("params"), "steps": m.get("steps"), "train_seconds": m.get("train_seconds"),
                       "test_psnr": m.get("test", {}).get("psnr")})
    metrics.update(task="radiance", method="blocks", blocks=blocks,
                   params=sum(int(b["params"] or 0) for b in blocks),
                   train_seconds=train_seconds if train_seconds is not None else
                   sum(float(b["train_seconds"] or 0.0) for b in blocks), seconds=seconds)
    run.write_metrics(metrics)
    return metrics


def fit_job(job) -> dict:
    """``fieldfit SCENE --method blocks`` (a ``registry.Job``): the blocks with rbf's default options."""
    cfg = BlocksConfig(**job.options) if not job.resume else \
        BlocksConfig.from_dict(job.saved.get("config", {})).replace(**job.options)
    options = {} if not job.resume else {k: v for k, v in job.saved.get("block_options", {}).items()
                                         if k not in (*FORCED, "step", "downscale", "test_every")}
    return fit_blocks(job.input, job.run, cfg, job.budget, device=job.device, seed=job.seed, options=options)


def parent_run(scene_name: str, out, overwrite: bool = False) -> Run:
    """The parent run folder, locked: ``out`` when it already holds a parent (to go on), else a new or empty one
    (``Run.claim``), or runs/<scene>-blocks-<time>."""
    if out is None:
        return Run.create_unique(Path("runs"), f"{scene_name}-blocks-{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(out)
    if (out / CONFIG).is_file() and not overwrite:
        cfg = Run.open(out).config()
        if not isinstance(cfg, dict) or cfg.get("method") != "blocks":
            raise InputError(out, "is a run folder of another kind", "pass a new or empty --out")
        return Run(out).acquire()
    return Run.claim(out, overwrite)


__all__ = ["check_options", "fit_blocks", "fit_job", "parent_run"]
