"""dnmp on posed photos: deformable neural mesh primitives rendered by rasterization (METHODS.md 2).

Pipeline: scene -> surface points (dnmp_geometry: the scene's points, else a short rbf fit;
alpha carving on request) -> voxels at two sizes (fine s, coarse 2s; s defaults to 3 pixel
footprints) -> one icosphere primitive per voxel, its shape decoded from an 8-D latent by
fieldfit's own frozen mesh decoder (dnmp_ae); with rbf points each primitive starts fitted to that
fit's density (dnmp_shapes; ``--shapes sphere``: the paper's start) -> geometry stage (``geo_frac``
of the budget) then radiance stage (dnmp_train) -> test renders, metrics, watertight mesh (dnmp_mesh).

What sets the quality is the primitives' geometry, so the rbf fit that gives it takes
``points_frac`` of the budget (half), and primitives shaped from its density skip the photometric
geometry stage (``geo_frac`` 0; 0.1 for ``--shapes sphere``, which has nothing else): on lego
200x200 at 300 s, with the density of the same rbf fit, 0.1 of the budget there (340 steps) gave
26.63 dB and none 28.87 (outline pixels 16.4 -> 19.1 dB, the rest of the object 23.3 -> 25.0): its
steps see 48x48 windows rasterized at pixel centres and pull the fitted surfaces away. Outline
pixels can be supersampled 2x2 in training and rendering (``antialias``, off by default: see
dnmp_edges), and the opacity reads the view angle (``rim``, fields.dnmp.Shader).

Outputs: as rbf (renders/test_NNN.png, metrics.json, mesh.ply, curve.png, checkpoint) plus the
paper's efficiency units ``render_ms_per_1k_pixels`` (wall time of a test view: rasterization,
shading and compositing, per 1000 pixels) and ``peak_mb_per_1k_pixels`` (see dnmp_mesh.peak_mb).
``--resume RUN`` continues the radiance stage from the last checkpoint (written every minute of it and at
its end); a run stopped before that starts again from its rbf point fit, which is kept as an rbf run in
RUN/points (``fieldfit view RUN/points`` shows it); one stopped during the point fit has nothing to resume.
"""

import time
from dataclasses import replace

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.dnmp import PrimitiveLevel, position_encoding
from fieldfit.render.raster import PinholeCamera

from ..runs import Run, restore_optimizer
from ..trainer import Budget, History, fit_loop, plot_curve
from .common import count_params, load_model, make_adam, model_state, psnr_from_mse, seed_everything
from .dnmp_ae import pretrained
from .dnmp_geometry import POINT_FIT, pixel_footprint, scene_points, voxelise
from .dnmp_rows import RowAdam
from .dnmp_render import DNMPModel, rasterize_levels, render_image
from .dnmp_train import FragmentCache, GeometryStepper, RadianceStepper, frame_dirs
from .radiance_data import PixelStore, eval_background, load_radiance_scene
from .radiance_eval import eval_rays_from, evaluate_views, render_video
from .rbf_radiance import cpu_threads

TASKS = ("radiance",)
DEFAULTS = {
    "voxel": None, "voxel_px": 3.0, "shell": 1, "points": "auto", "points_seconds": None, "points_frac": 0.5,
    "points_max_res": 128, "shapes": "density", "sh_degree": None, "rim": True, "antialias": False,
    "k_fine": 4, "k_coarse": 2,
    "freqs": 6, "hidden": 64, "lr": 0.01, "lr_geometry": 1e-3, "lr_final": 0.1, "batch": 8192,
    "window": 48, "geo_frac": None, "time_budget": 300.0, "resolution": 192, "eval_rays": 4096,
}


def _flag(name: str, v) -> bool:
    """An on/off option (``--antialias off``); anything else is an input error."""
    word = str(v).lower()
    if word not in ("on", "off", "true", "false", "1", "0"):
        raise InputError(f"--{name} {v}", "expected on or off", f"use --{name} on or --{name} off")
    return word in ("on", "true", "1")


def build_model(cfg: dict, decoder, sphere_code) -> DNMPModel:
    levels = [PrimitiveLevel(torch.zeros(lv["count"], 3), lv["voxel"], sphere_code, cfg["feat_dim"])
              for lv in cfg["levels"]]
    model = DNMPModel(decoder, levels, [lv["k"] for lv in cfg["levels"]], cfg["feat_dim"], cfg["hidden"],
                     cfg.get("sh_degree"), bool(cfg.get("rim", False)))
    model.antialias = bool(cfg.get("antialias", False))
    return model


def render_frame_fn(model, scene, background):
    """frame -> ([H,W,3] render, 0): the callable radiance_eval's evaluate_views / render_video take."""

    def render(frame):
        rgb, _ = render_image(model, PinholeCamera.of_frame(frame), frame_dirs(scene, frame), background)
        return rgb.reshape(frame.height, frame.width, 3).numpy(), 0

    return render


def _background(scene):
    return eval_background(scene) if scene.has_alpha else None


def _setup(inp, opts, run: Run):
    extra = {**DEFAULTS, **opts.extra}
    extra["rim"], extra["antialias"] = _flag("rim", extra["rim"]), _flag("antialias", extra["antialias"])
    if extra["geo_frac"] is None:  # see the module doc: density shapes lose quality in the photometric stage
        extra["geo_frac"] = 0.1 if extra["shapes"] == "sphere" else 0.0
    scene = load_radiance_scene(inp, extra)
    if extra["voxel"] is None:
        extra["voxel"] = float(extra["voxel_px"]) * pixel_footprint(scene)
    if extra["points_seconds"] is None:
        extra["points_seconds"] = float(extra["points_frac"]) * float(opts.time_budget or extra["time_budget"])
    if opts.steps and not extra.get("points_steps"):  # --steps: a run that does not depend on the clock
        extra["points_steps"] = max(64, int(opts.steps))
    points, source, density = scene_points(scene, inp, extra, opts.device, run)
    if len(points) == 0:
        raise InputError(scene.source, f"no surface points found ({source})",
                         "check the scene's alpha / bounding box, or pass --voxel with a larger size")
    s, origin = float(extra["voxel"]), np.asarray(scene.aabb[0], np.float64)
    centres = [voxelise(points, s, origin), voxelise(points, 2 * s, origin)]
    decoder, code = pretrained(log=run.log)
    cfg = {"task": "radiance", "method": "dnmp", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
           "scene": scene.name, "scene_kind": scene.kind, "aabb": np.asarray(scene.aabb).tolist(),
           "feat_dim": 3 + 6 * int(extra["freqs"]), "hidden": int(extra["hidden"]), "points": source,
           "sh_degree": None if extra["sh_degree"] in (None, "none") else int(extra["sh_degree"]),
           "rim": extra["rim"], "antialias": extra["antialias"],
           "levels": [{"voxel": s, "count": len(centres[0]), "k": int(extra["k_fine"])},
                      {"voxel": 2 * s, "count": len(centres[1]), "k": int(extra["k_coarse"])}],
           "options": extra, "seed": opts.seed}
    model = build_model(cfg, decoder, code)
    with torch.no_grad():
        for lv, c in zip(model.levels, centres):
            lv.centres.copy_(c)
    if density is not None and extra["shapes"] == "density":
        from .dnmp_ae import load_encoder
        from .dnmp_shapes import shape_levels

        shape_levels(model, load_encoder(), density.fn, density.sigma_min, log=run.log)
    elif extra["shapes"] not in ("density", "sphere"):
        raise InputError(f"--shapes {extra['shapes']}", "unknown primitive start shape", "use density or sphere")
    mid, half = points.mean(0), np.abs(points - points.mean(0)).max() + 1e-9
    with torch.no_grad():
        for lv in model.levels:
            x = (lv.vertices(model.decoder) - torch.as_tensor(mid).float()) / float(half)
            lv.features.copy_(position_encoding(x, int(extra["freqs"])))
    run.write_config(cfg)
    run.log(f"dnmp: {len(points):,} surface points ({source}); voxels {s:.4g} / {2 * s:.4g}: "
            f"{len(centres[0]):,} + {len(centres[1]):,} primitives, "
            f"{80 * (len(centres[0]) + len(centres[1])):,} faces")
    return extra, scene, model, cfg


def fit(inp, opts, run: Run) -> dict:
    with cpu_threads(run, opts.device):
        return _resume(inp, opts, run) if opts.resume else _fit(inp, opts, run)


def _fit(inp, opts, run: Run) -> dict:
    t0 = time.perf_counter()
    seed_everything(opts.seed)
    extra, scene, model, cfg = _setup(inp, opts, run)
    ids = scene.split("train")
    store = PixelStore(scene, ids)
    total = opts.time_budget or extra["time_budget"]
    geo_params = [p for lv in model.levels for p in (lv.latents, lv.offsets)]
    mlp_params = [*model.shader.parameters(), *model.background.parameters()]
    feats = RowAdam([lv.features for lv in model.levels], extra["lr"])
    opt = (make_adam([{"params": geo_params, "lr": extra["lr_geometry"]}, {"params": mlp_params, "lr": extra["lr"]}]),
           feats)
    # geometry stage: its share of what is left once the fragment cache is paid for (timed on one view)
    t1 = time.perf_counter()
    with torch.no_grad():
        rasterize_levels(model, PinholeCamera.of_frame(scene.frames[ids[0]]))
    cache_estimate = (time.perf_counter() - t1) * len(ids)
    t1 = time.perf_counter()
    geo = GeometryStepper(model, opt, store, scene, extra, opts.seed)
    frac = float(extra["geo_frac"])
    geo_left = max(0.0, total - (t1 - t0) - cache_estimate) * frac
    geo_steps = int(opts.steps * frac) if opts.steps else 0
    geo_budget = Budget(steps=max(1, geo_steps) if opts.steps else None,
                        time_budget=None if opts.steps else max(geo_left, 1e-6))  # 0 would mean "no limit"
    i, last = 0, float("nan")
    while (geo_steps > 0 or geo_left > 0) and not geo_budget.done(i, time.perf_counter() - t1):
        last = float(geo(i, geo_budget.progress(i, time.perf_counter() - t1))["loss"])
        i += 1
    geo_s = time.perf_counter() - t1
    run.log(f"dnmp geometry stage: {i} steps in {geo_s:.0f}s, last loss {last:.4g}")
    stage = {"geometry_steps": i, "geometry_seconds": geo_s, "before_radiance_seconds": time.perf_counter() - t0}
    return _radiance(model, scene, store, extra, opts, run, t0, stage, feats, cfg)


def resumable(run: Run) -> bool:
    """Whether ``--resume`` has something to go on from: a radiance-stage checkpoint or a finished point fit."""
    return run.has_checkpoint() or Run(run.path / POINT_FIT).has_checkpoint()


def _resume(inp, opts, run: Run) -> dict:
    """Continue the radiance stage of a run from its checkpoint (the geometry is frozen by then; the fragment
    cache is rebuilt). A run stopped after its rbf point fit (kept in RUN/points) but before the radiance
    stage checkpointed starts again from that fit."""
    from .dnmp_ae import MeshDecoder

    t0 = time.perf_counter()
    cfg = run.config()
    extra = {**DEFAULTS, **opts.extra}
    tensors, meta = run.load_checkpoint("cpu") if run.has_checkpoint() else ({}, {})
    if "dnmp_stage" not in meta:
        points = Run(run.path / POINT_FIT)
        if not points.has_checkpoint():
            raise InputError(run.path, "nothing to resume: the run stopped before its point fit ended",
                             "start a new run")
        spent = float(points.checkpoint_meta().get("elapsed", 0.0))
        left = max(1.0, float(opts.time_budget or extra["time_budget"]) - spent)
        run.log(f"resume: the point fit ({spent:.0f}s) is reused from {points.path}; the stages after it start again "
                f"with the {left:.0f}s left")
        return _fit(inp, replace(opts, resume=False, time_budget=None if opts.steps else left,
                                 extra={**opts.extra, "points": str(points.path)}), run)
    scene = load_radiance_scene(inp, extra)
    model = build_model(cfg, MeshDecoder(), torch.zeros(8))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    feats = RowAdam([lv.features for lv in model.levels], extra["lr"])
    return _radiance(model, scene, PixelStore(scene, scene.split("train")), extra, opts, run, t0, meta["dnmp_stage"],
                     feats, cfg, resume=(tensors, meta))


def _state(model, adam, rows: RowAdam, stage: dict):
    """Checkpoint (tensors, meta): weights, both optimizers' states and the stage bookkeeping (for resume)."""

    weights_and_adam = model_state(model, adam)

    def state():
        tensors, meta = weights_and_adam()
        for k, (m, v) in enumerate(zip(rows.m, rows.v)):
            tensors[f"rows.m.{k}"], tensors[f"rows.v.{k}"] = m, v
        return tensors, dict(meta, rows_t=rows.t, dnmp_stage=stage)

    return state


def _radiance(model, scene, store, extra, opts, run: Run, t0: float, stage: dict, feats: RowAdam, cfg: dict,
              resume=None) -> dict:
    """The radiance stage (geometry frozen, fragments cached), then test renders, mesh and metrics."""
    ids = scene.split("train")
    eval_batch = eval_rays_from(scene, extra["eval_rays"], opts.seed)
    t2 = time.perf_counter()
    model.freeze()
    cache = FragmentCache(model, scene, ids)
    cache_s = time.perf_counter() - t2
    run.log(f"dnmp fragment cache: {len(cache.pixels):,} of {store.count:,} training pixels hit, {cache_s:.0f}s")
    adam = make_adam([{"params": [*model.shader.parameters(), *model.background.parameters()], "lr": extra["lr"]}])
    start, elapsed, history = 0, 0.0, None
    if resume is not None:
        tensors, meta = resume
        restore_optimizer(adam, tensors, meta)
        for k in range(len(feats.m)):
            feats.m[k].copy_(tensors[f"rows.m.{k}"])
            feats.v[k].copy_(tensors[f"rows.v.{k}"])
        feats.t = int(meta["rows_t"])
        start, elapsed, history = int(meta["step"]), float(meta["elapsed"]), History.from_meta(meta.get("history"))
        run.log(f"resumed the radiance stage from step {start} ({elapsed:.0f}s of it)")
    stepper = RadianceStepper(model, (adam, feats), store, scene, extra, opts.seed + 1 + start, cache)
    eval_layers = cache_eval(model, scene, extra["eval_rays"], opts.seed)

    def evaluate():
        with torch.no_grad():
            from .dnmp_render import shade

            bg = torch.as_tensor(eval_batch.background).float()
            bgr = bg.expand(eval_batch.dirs.shape[0], 3) if scene.has_alpha else model.background(eval_batch.dirs)
            rgb, _ = shade(model, eval_layers, eval_batch.dirs, bgr)
            return psnr_from_mse(torch.mean((rgb.clamp(0, 1) - eval_batch.target(bg)) ** 2).item())

    total = opts.time_budget or extra["time_budget"]
    if resume is None or opts.time_budget:  # the stage's share of the total, once the cache is built
        stage["radiance_budget_s"] = max(1.0, total - stage["before_radiance_seconds"] - cache_s)
    geo_i = stage["geometry_steps"]
    budget = Budget(steps=max(1, opts.steps - geo_i) if opts.steps else None,
                    time_budget=None if opts.steps else stage["radiance_budget_s"])
    t3 = time.perf_counter()
    history = fit_loop(stepper, budget, run, evaluate=evaluate, state=_state(model, adam, feats, stage),
                       metric_name="psnr", eval_every_s=max(5.0, (budget.time_budget or 60) / 10), start_step=start,
                       start_elapsed=elapsed, history=history)
    rad_s = time.perf_counter() - t3
    train_s = time.perf_counter() - t0
    metrics = _evaluate(model, scene, run)
    from .dnmp_mesh import export_occupancy_mesh

    t4 = time.perf_counter()
    metrics.update(export_occupancy_mesh(model, run.path / "mesh.ply", int(extra["resolution"])))
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=count_params(model), primitives=[lv.count for lv in model.levels],
                   train_seconds=train_s, geometry_seconds=stage["geometry_seconds"], geometry_steps=geo_i,
                   cache_seconds=cache_s, radiance_seconds=rad_s, steps=geo_i + start + stepper.calls,
                   export_seconds=time.perf_counter() - t4, rays_per_second=stepper.rays / max(rad_s, 1e-9),
                   points_source=cfg["points"])
    run.write_metrics(metrics)
    return metrics


def cache_eval(model, scene, n: int, seed: int):
    """Layers of the pixels ``eval_rays_from(scene, n, seed)`` draws (same frames, same generator)."""
    from .dnmp_train import frame_offsets

    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // 8)][:8]
    count = int(frame_offsets(scene, ids)[-1])
    idx = np.random.default_rng(seed + 1).choice(count, size=min(n, count), replace=False)
    return FragmentCache(model, scene, ids).lookup(idx)


def _evaluate(model, scene, run: Run) -> dict:
    from .dnmp_mesh import peak_mb

    model.freeze()
    render = render_frame_fn(model, scene, _background(scene))
    metrics = evaluate_views(model, scene, None, run, "cpu", render_fn=render)
    w, h = metrics["render_size"]
    metrics.pop("samples_per_ray", None)
    metrics["render_ms_per_1k_pixels"] = metrics["render_ms_per_frame"] / (w * h / 1000.0)
    ids = scene.split("test") or scene.split("train")
    frame = scene.frames[ids[0]]
    mb = peak_mb(lambda: render(frame))
    metrics["peak_mb_per_1k_pixels"] = mb / (frame.width * frame.height / 1000.0)
    return metrics


def load(run: Run, device="cpu"):
    from .dnmp_ae import MeshDecoder

    cfg = run.config()
    model = build_model(cfg, MeshDecoder(), torch.zeros(8))
    load_model(run, model, device)
    model.freeze()
    model.eval()
    return model, cfg


def _scene_of(cfg: dict):
    from fieldfit.scenes.inputs import Input

    inp = Input("radiance", None if cfg.get("builtin") else cfg["source"], cfg.get("scene", ""), cfg.get("builtin"))
    return load_radiance_scene(inp, {**DEFAULTS, **cfg.get("options", {})})


def evaluate(run: Run, opts: dict) -> dict:
    with cpu_threads(run, "cpu"):
        model, cfg = load(run)
        metrics = {**run.metrics(), **_evaluate(model, _scene_of(cfg), run)}
    run.write_metrics(metrics)
    return metrics


def render_path(run: Run, path: str, out, opts: dict):
    with cpu_threads(run, "cpu"):
        model, cfg = load(run)
        scene = _scene_of(cfg)
        written, note = render_video(model, scene, None, path, out, int(opts.get("frames", 60)), "cpu",
                                     render_fn=render_frame_fn(model, scene, _background(scene)))
    if note:
        print(note)
        run.log(note, echo=False)
    return written


def export_mesh(run: Run, out, opts: dict) -> dict:
    from .dnmp_mesh import export_occupancy_mesh

    with cpu_threads(run, "cpu"):
        model, cfg = load(run)
        res = opts.get("resolution") or cfg.get("options", {}).get("resolution", DEFAULTS["resolution"])
        return export_occupancy_mesh(model, out, int(res))
