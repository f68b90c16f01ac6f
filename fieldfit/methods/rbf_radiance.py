"""rbf on posed photos: an RBF radiance field (METHODS.md 1.3) trained by ray marching.

Pipeline: scene -> training pixels on the host (radiance_data) -> each step draws random
pixels, marches their rays through the occupancy grid (radiance_render), evaluates the field
once per surviving sample and composites on a random background colour per ray (so alpha
scenes learn their alpha and real scenes become opaque). The number of rays per step adapts so
that a step holds about ``target_samples`` field samples. The grid is evaluated in full at
the steps ``grid_full`` and on a random subset of cells every ``grid_every`` steps; before the
first refresh rays are marched with a ``coarse_step`` times larger step. An optional
distortion loss (mip-NeRF 360) concentrates each ray's weights.

Choices (``grid_and_step``, ``scene_defaults``): the field and the occupancy grid cover the
scene's box (Blender: [-1.5, 1.5]^3; instant-ngp: its aabb_scale box; LLFF: the NDC box, see
radiance_data); the grid has about one cell per pixel footprint (at most 128^3) and the step is
0.7 pixel footprint (at least half a cell); samples behind T < 1e-3 or with alpha < 1e-3 are
skipped. Test views are composited on the scene's background (white for Blender, black else).

Outputs: renders/test_NNN.png (test split order, test-image size), metrics.json, mesh.ply
(marching cubes on the density, closed at the box), curve.png, checkpoint.
"""

import os
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import RadianceRBF, default_density_scale
from fieldfit.render import OccupancyGrid

from ..runs import Run
from ..trainer import Budget, fit_loop, plot_curve
from .common import (count_params, load_model, make_adam, model_state, psnr_from_mse, resume_state, seed_everything,
                     set_lr)
from .radiance_data import PixelStore, load_radiance_scene, march_bounds, unit_box
from .radiance_eval import eval_rays_from, evaluate_views, export_density_mesh, render_video
from .radiance_render import MarchConfig, RadianceModel, distortion_loss, render_rays

DEFAULTS = {
    "grid": None, "levels": None, "base_res": 16, "max_res": None, "features": None, "volume_max_res": 32,
    "init_scale": 0.1, "units": 32, "kernel": "gaussian", "decoder": "rbf", "hidden": 64, "layers": 2,
    "lr": 0.02, "lr_decoder": None, "lr_final": 0.1, "batch": None, "target_samples": None,
    "grid_res": None, "grid_full": (16, 48, 128, 256, 512), "grid_every": 16, "grid_cells": 1 / 16,
    "grid_threshold": 0.01, "grid_dilation": 0, "coarse_step": 4.0, "step": None,
    "early_stop": 1e-3, "alpha_thre": 1e-3, "distortion": None,
    "density_shift": -5.0,  # GNF: -10; -5 turns opaque sooner (short fits) and ends equal on lego
    "time_budget": 300.0, "eval_rays": 4096, "resolution": 256, "background": None,
}
LR_DECODER = {"rbf": 0.02, "mlp": 0.01}  # GNF's lr_large for the RBF; instant-ngp's 1e-2 for the MLP
# (rays per step at most, field samples per step) by device type. On 2 CPU cores small steps win;
# on a GPU a step's fixed cost (a few hundred kernel launches, host syncs in the marcher) needs
# instant-ngp's / nerfacc's 2^18 samples per step to be amortised.
STEP_SIZES = {"cpu": (8192, 1 << 14), "cuda": (1 << 18, 1 << 18)}


def field_config(extra: dict) -> FieldConfig:
    grid = GridConfig(kind=extra["grid"], levels=extra["levels"], base_res=extra["base_res"],
                      max_res=extra["max_res"], features=extra["features"], table_log2=extra.get("table_log2", 19),
                      init_scale=extra["init_scale"], volume_max_res=extra["volume_max_res"])
    return FieldConfig(grid=grid, decoder=extra["decoder"], units=extra["units"], kernel=extra["kernel"],
                       hidden=extra["hidden"], layers=extra["layers"])


def build_model(cfg: dict, device) -> tuple[RadianceModel, MarchConfig]:
    """The model and marching settings described by a run config (or the one fit is writing)."""
    field = RadianceRBF(FieldConfig.from_dict(cfg["field"]), cfg["aabb"], cfg["density_shift"],
                        cfg["density_scale"], device=device)
    grid = OccupancyGrid(cfg["aabb"], resolution=cfg["grid_res"], warmup_steps=0, dilation=cfg.get("grid_dilation", 1))
    return RadianceModel(field, grid).to(device), MarchConfig(**cfg["march"])


def box_extent(scene) -> float:
    """Mean side of the scene's ``unit_box`` (marching-space units)."""
    box = unit_box(scene)
    return float(np.mean(box[1] - box[0]))


def pixel_footprint(scene) -> float:
    """Median width of a pixel at the point the training cameras look at (world units)."""
    from fieldfit.scenes.nerfstudio import look_at_centre

    frames = [scene.frames[i] for i in scene.split("train")]
    centre = look_at_centre(frames)
    return float(np.median([np.linalg.norm(f.c2w[:, 3] - centre) / f.fx for f in frames]))


def grid_and_step(scene, extra: dict) -> tuple[int, float]:
    """Occupancy-grid resolution and marching step (see the module doc), unless set in ``extra``.

    World scenes: cells about 0.8 pixel footprint (32..128 per axis, multiples of 16) and a step of
    0.7 footprint, at least half a cell (TensoRF's step; big boxes around real captures).
    NDC scenes: 128 cells and a step of one cell.
    """
    extent = box_extent(scene)
    if scene.ndc:
        res = int(extra["grid_res"] or 128)
        return res, float(extra["step"] or extent / res)
    foot = pixel_footprint(scene)
    res = int(extra["grid_res"] or np.clip(16 * np.ceil(1.25 * extent / foot / 16), 32, 128))
    return res, float(extra["step"] or max(0.7 * foot, 0.5 * extent / res))


# (levels, features) of a grid when --levels / --features are not given; other grids: (4, 4).
GRID_SHAPES = {"hash": (16, 2)}  # instant-ngp's hash grid


def device_defaults(extra: dict, device, scene=None) -> dict:
    """``extra`` with the per-device step sizes (``STEP_SIZES``) and feature grid where they are not set.

    Grid: on a GPU, for a world-space scene (``scene`` given, not NDC) and no --grid, instant-ngp's
    hash grid (16 levels of 2 features, 2^19 entries each; ``GRID_SHAPES``) up to about two texels per
    pixel footprint, 128..2048 (lego 400x400: 1024). Otherwise the tri-plane, 4 levels of 4 features;
    on a GPU its finest level follows the footprint, about one texel per pixel, 128..512 (lego
    400x400: 512); the CPU keeps 128 (scene_defaults), which its step rate trains in the budgets
    measured there.
    Measured on an H200, lego 400x400, 180 s (bench/radiance_gpu.py): hash 33.6 dB, tri-plane 31.5 dB.
    """
    kind = torch.device(device).type
    batch, samples = STEP_SIZES.get(kind, STEP_SIZES["cpu"])
    out = dict(extra)
    out["batch"] = int(out.get("batch") or batch)
    out["target_samples"] = int(out.get("target_samples") or samples)
    world_gpu = kind == "cuda" and scene is not None and not scene.ndc
    out["grid"] = out.get("grid") or ("hash" if world_gpu else "triplane")
    levels, features = GRID_SHAPES.get(out["grid"], (4, 4))
    out["levels"] = int(out.get("levels") or levels)
    out["features"] = int(out.get("features") or features)
    if world_gpu and extra.get("max_res") is None:
        footprint = 2 ** np.ceil(np.log2(box_extent(scene) / pixel_footprint(scene)))
        hashed = out["grid"] == "hash"
        out["max_res"] = int(np.clip(2 * footprint, 128, 2048) if hashed else np.clip(footprint, 128, 512))
    return out


def scene_defaults(scene, extra: dict) -> dict:
    """``extra`` with the scene-dependent defaults filled in: the distortion loss (t in marching-space
    units) is on (0.01) for captures without alpha (real scenes, NDC), where it clears the fog a
    random background alone leaves (fox, fern: 3-8x fewer samples per ray, so faster steps and
    renders), and off for alpha scenes, where it changed nothing measurable (lego). The finest
    grid level is 128, or 256 for NDC scenes, whose box holds the whole image width (fern, 300 s:
    20.2 dB at 256, 19.8 at 512 with 5 levels; the 900 s run at 128 gave 20.3).

    Training background: a random colour per ray for scenes with alpha (so the field learns
    their alpha) and for NDC scenes (their box reaches infinity, so every ray can turn opaque in
    it; fern 300 s: 22.9 dB in training evaluation with random, 20.6 with black), black for world-
    space captures without alpha, whose rays leave the box: there a random colour is noise the
    field silences by turning opaque where rays start, in front of each camera (fox 300 s:
    training views 21.7 dB, test views 13.6 dB, floaters; black: 19.4 dB at 150 s)."""
    out = dict(extra)
    if out.get("max_res") is None:
        out["max_res"] = 256 if scene.ndc else 128
    if out.get("distortion") is None:
        out["distortion"] = 0.0 if scene.has_alpha else 0.01
    if out.get("background") is None:
        out["background"] = "random" if (scene.has_alpha or scene.ndc) else "black"
    if out["background"] not in ("random", "black"):
        raise InputError("--background", f"unknown training background {out['background']!r}", "use random or black")
    return out


def run_config(scene, inp, extra: dict, seed: int) -> dict:
    aabb = np.asarray(scene.aabb, np.float64)
    near, far = march_bounds(scene)
    grid_res, step = grid_and_step(scene, extra)
    march = {"step": step, "near": near, "far": far, "early_stop": extra["early_stop"],
             "alpha_thre": extra["alpha_thre"]}
    field = RadianceRBF(field_config(extra), aabb, extra["density_shift"], default_density_scale(unit_box(scene)))
    return {"task": "radiance", "method": "rbf", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
            "scene": scene.name, "scene_kind": scene.kind, "ndc": bool(scene.ndc), "aabb": aabb.tolist(),
            "field": field.cfg.to_dict(), "density_shift": field.density_shift, "density_scale": field.density_scale,
            "grid_res": grid_res, "grid_dilation": int(extra["grid_dilation"]), "march": march, "options": extra,
            "seed": seed}


def _param_groups(model: RadianceModel, extra: dict) -> list[dict]:
    lr_decoder = extra["lr_decoder"] or LR_DECODER[extra["decoder"]]
    return [{"params": list(model.field.encoding.parameters()), "lr": extra["lr"]},
            {"params": list(model.field.decoder.parameters()), "lr": lr_decoder}]


class Stepper:
    """One optimisation step per call, with the ray count adapted to the samples per ray."""

    def __init__(self, model, opt, store: PixelStore, march: MarchConfig, extra: dict, device, seed: int):
        self.model, self.opt, self.store, self.march, self.extra = model, opt, store, march, extra
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.spr = 64.0  # running mean of samples per ray
        self.rays = self.samples = 0
        self.last_step = 0
        g3 = model.grid.binary.numel()
        self.n_cells = max(1, int(g3 * extra["grid_cells"]))

    def _grid(self, i: int) -> MarchConfig:
        """Refresh the grid when due; the marching settings of step i (coarser before the first refresh)."""
        e = self.extra
        full, first = i in e["grid_full"], min(e["grid_full"])
        if full or (i > first and i % e["grid_every"] == 0):
            self.model.update_grid(i, self.march.step, None if full else self.n_cells, e["grid_threshold"])
        if i < first:
            return replace(self.march, step=self.march.step * e["coarse_step"], alpha_thre=0.0)
        return self.march if self.spr >= 1.0 else replace(self.march, alpha_thre=0.0)

    def __call__(self, i: int, progress: float) -> dict:
        e = self.extra
        set_lr(self.opt, progress, e["lr_final"])
        march = self._grid(i)
        n = int(np.clip(e["target_samples"] / max(self.spr, 1.0), 256, e["batch"]))
        batch = self.store.sample(n, self.rng).to(self.device)
        bg = (torch.rand if e["background"] == "random" else torch.zeros)(n, 3, device=self.device)
        out, samples = self.model.render(batch.origins, batch.dirs, bg, march, stratified=True)
        loss = torch.nn.functional.mse_loss(out.rgb, batch.target(bg))
        if e["distortion"] > 0:
            loss = loss + e["distortion"] * distortion_loss(out.weights, samples)
        self.spr = 0.9 * self.spr + 0.1 * samples.n_samples / n
        self.rays += n
        self.samples += samples.n_samples
        self.last_step = i + 1
        if loss.requires_grad:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return {"loss": loss.detach()}


@contextmanager
def cpu_threads(run: Run, device):
    """Intra-op threads for CPU work: one when the machine is already busy (OMP_NUM_THREADS unset).

    On a CPU whose cores are all taken by other processes, torch's OpenMP threads wait on each
    other at every op; one thread then trains 5-15x faster than two (measured on 2 cores, load 6).
    The previous thread count is restored on exit.
    """
    before = torch.get_num_threads()
    change = (torch.device(device).type == "cpu" and not os.environ.get("OMP_NUM_THREADS") and before > 1
              and hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or 1))
    if change:
        torch.set_num_threads(1)
        run.log(f"machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: 1 thread "
                "(set OMP_NUM_THREADS to choose)")
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def fit(inp, opts, run: Run) -> dict:
    with cpu_threads(run, opts.device):
        return _fit(inp, opts, run)


def _fit(inp, opts, run: Run) -> dict:
    t0 = time.perf_counter()
    extra = {**DEFAULTS, **opts.extra}
    device = torch.device(opts.device)
    seed_everything(opts.seed)
    scene = load_radiance_scene(inp, extra)
    extra = scene_defaults(scene, device_defaults(extra, device, scene))
    cfg = run_config(scene, inp, extra, opts.seed)
    run.write_config(cfg)
    model, march = build_model(cfg, device)
    opt = make_adam(_param_groups(model, extra))
    store = PixelStore(scene, scene.split("train"))
    where = f" (on {device})" if device.type != "cpu" and store.keep_on(device) else ""  # batches gathered there
    eval_batch = eval_rays_from(scene, extra["eval_rays"], opts.seed)
    params = count_params(model)
    run.log(f"scene {scene.name} ({scene.kind}{', NDC' if scene.ndc else ''}): {len(scene.split('train'))} train / "
            f"{len(scene.split('test'))} test views of {scene.frames[0].width}x{scene.frames[0].height}, "
            f"{store.count:,} training pixels{where}; field {params:,} parameters {model.field.param_groups()}; "
            f"march step {march.step:.4g}")
    start, elapsed, history = resume_state(run, model, opt, device) if opts.resume else (0, 0.0, None)
    model.refresh()
    stepper = Stepper(model, opt, store, march, extra, device, opts.seed + start)
    prepare_s = time.perf_counter() - t0

    def evaluate():
        rgb, _, _ = render_rays(model, eval_batch.origins, eval_batch.dirs, eval_batch.background, march, device)
        return psnr_from_mse(torch.mean((rgb - eval_batch.target(eval_batch.background)) ** 2).item())

    budget = Budget(steps=opts.steps, time_budget=None if opts.steps else (opts.time_budget or extra["time_budget"]))
    t1 = time.perf_counter()
    history = fit_loop(stepper, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="psnr",
                       eval_every_s=max(5.0, (budget.time_budget or 60) / 10), start_step=start,
                       start_elapsed=elapsed, history=history)
    train_s = time.perf_counter() - t1
    metrics = evaluate_views(model, scene, march, run, device)
    t2 = time.perf_counter()
    metrics.update(export_density_mesh(model, scene, run.path / "mesh.ply", extra["resolution"], march.step, device))
    export_s = time.perf_counter() - t2
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=params, grid_params=model.field.param_groups()["grid"],
                   steps=stepper.last_step, prepare_seconds=prepare_s,
                   train_seconds=train_s, export_seconds=export_s,
                   rays_per_second=stepper.rays / max(train_s, 1e-9),
                   train_samples_per_ray=stepper.samples / max(stepper.rays, 1),
                   occupied_fraction=model.grid.occupied_fraction())
    run.write_metrics(metrics)
    return metrics


def load(run: Run, device="cpu") -> tuple[RadianceModel, MarchConfig, dict]:
    cfg = run.config()
    model, march = build_model(cfg, device)
    load_model(run, model, device)
    model.refresh()
    model.eval()
    return model, march, cfg


def _scene_of(cfg: dict):
    from fieldfit.scenes.inputs import Input

    inp = Input("radiance", None if cfg.get("builtin") else cfg["source"], cfg.get("scene", ""), cfg.get("builtin"))
    return load_radiance_scene(inp, {**DEFAULTS, **cfg.get("options", {})})


def evaluate(run: Run, opts: dict) -> dict:
    """Re-render the test views from the checkpoint; metrics.json keeps its training entries."""
    device = opts.get("device", "cpu")
    with cpu_threads(run, device):
        model, march, cfg = load(run, device)
        metrics = {**run.metrics(), **evaluate_views(model, _scene_of(cfg), march, run, device)}
    run.write_metrics(metrics)
    return metrics


def render_path(run: Run, path: str, out, opts: dict):
    """Render ``path`` (orbit | spiral | test) to a video file; returns the path written."""
    device = opts.get("device", "cpu")
    with cpu_threads(run, device):
        model, march, cfg = load(run, device)
        written, note = render_video(model, _scene_of(cfg), march, path, out, int(opts.get("frames", 60)), device)
    if note:
        print(note)
        run.log(note, echo=False)
    return written


def export_mesh(run: Run, out, opts: dict) -> dict:
    """Watertight coloured mesh of the density of a radiance run (radiance_eval.export_density_mesh)."""
    device = opts.get("device", "cpu")
    with cpu_threads(run, device):
        model, march, cfg = load(run, device)
        res = opts.get("resolution") or cfg.get("options", {}).get("resolution", DEFAULTS["resolution"])
        return export_density_mesh(model, _scene_of(cfg), out, int(res), march.step, device)
