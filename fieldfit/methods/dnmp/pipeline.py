"""dnmp on posed photos: deformable neural mesh primitives rendered by rasterization (METHODS.md 2).

Pipeline: scene -> surface points (``points``: the scene's points, else a short rbf fit; alpha carving on
request) -> voxels at two sizes (fine s, coarse 2s; s defaults to 3 pixel footprints) -> one icosphere primitive
per voxel, its shape decoded from an 8-D latent by fieldfit's own frozen mesh decoder (``autoencoder``); with
rbf points each primitive starts fitted to that fit's density (``shapes``; ``--shapes sphere``: the paper's
start) -> geometry stage (``geo_frac`` of the budget) then radiance stage (``train``) -> test renders, metrics,
watertight mesh (``mesh``).

What sets the quality is the primitives' geometry, so the rbf fit that gives it takes ``points_frac`` of the
budget (half), and primitives shaped from its density skip the photometric geometry stage (``geo_frac`` 0; 0.1
for ``--shapes sphere``, which has nothing else): on lego 200x200 at 300 s, with the density of the same rbf fit,
0.1 of the budget there (340 steps) gave 26.63 dB and none 28.87 (outline pixels 16.4 -> 19.1 dB, the rest of the
object 23.3 -> 25.0): its steps see 48x48 windows rasterized at pixel centres and pull the fitted surfaces away.
Outline pixels can be supersampled 2x2 in training and rendering (``antialias``, off by default: see ``edges``),
and the opacity reads the view angle (``rim``, fields.dnmp.Shader).

Outputs: as rbf (renders/test_NNN.png, metrics.json, mesh.ply, curve.png, checkpoint) plus the paper's
efficiency units ``render_ms_per_1k_pixels`` (wall time of a test view: rasterization, shading and compositing,
per 1000 pixels) and ``peak_mb_per_1k_pixels`` (see ``mesh.peak_mb``). ``--resume RUN`` continues the radiance
stage from the last checkpoint (written every minute of it and at its end); a run stopped before that starts
again from its rbf point fit, which is kept as an rbf run in RUN/points (``fieldfit view RUN/points`` shows it);
one stopped during the point fit has nothing to resume.

Devices: everything runs on ``job.device`` (``--device``): the point fit, the model (built on the host, then
moved), its primitives' shapes, the fragments (on a GPU rasterized by ``fieldfit.cuda``'s Triton K-buffer kernel
through ``render.raster``), the fragment cache (``train.FragmentCache``: on the GPU while it fits), the features'
``RowAdam`` state, shading, compositing and the test renders. The random draws stay on the CPU (numpy, torch's
CPU generator), so a CPU run is what it was; training pixels stay in host memory unless ``PixelStore.keep_on``
fits them on the GPU, and batches are moved to the model. ``DNMPRun(run, config, device)`` loads the weights onto
``device`` and renders there.
"""

import math
import time

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import frequency_encoding
from fieldfit.fields.dnmp import MeshDecoder, PrimitiveLevel
from fieldfit.logs import MetricLog
from fieldfit.model import Occupancy, Rendering, model_tensors
from fieldfit.optim import count_params, make_adam, seed_everything
from fieldfit.render.metrics import psnr_from_mse
from fieldfit.runs import Run, load_model, model_state, restore_optimizer
from fieldfit.tasks.radiance import PixelStore, eval_background, eval_rays_from, load_radiance_scene
from fieldfit.tasks.views import SceneModel
from fieldfit.trainer import Budget, History, cpu_threads, fit_loop, plot_curve

from .autoencoder import load_encoder, pretrained
from .config import DNMPConfig
from .mesh import export_occupancy_mesh, occupancy_volume, peak_mb
from .model import DNMPModel, rasterize_levels, shade
from .points import POINT_FIT, scene_points, voxelise
from .render import render_image
from .rows import RowAdam
from .shapes import shape_levels
from .train import FragmentCache, GeometryStepper, RadianceStepper, camera_dirs, frame_offsets


def build_model(config: dict, decoder, sphere_code, device="cpu") -> DNMPModel:
    """The model of a run config on ``device`` (built on the host, where the initial weights are drawn, then
    moved: the same weights on every device)."""
    levels = [PrimitiveLevel(torch.zeros(lv["count"], 3, device="cpu"), lv["voxel"], sphere_code.cpu(),
                             config["feat_dim"]) for lv in config["levels"]]
    model = DNMPModel(decoder.cpu(), levels, [lv["k"] for lv in config["levels"]], config["feat_dim"],
                      config["hidden"], config.get("sh_degree"), bool(config.get("rim", False)))
    model.antialias = bool(config.get("antialias", False))
    return model.to(device)


def scene_background(scene):
    """The colour rays are composited on: the scene's (alpha scenes), else None (the model's background MLP)."""
    return eval_background(scene) if scene.has_alpha else None


def _setup(job, cfg: DNMPConfig, scene):
    run, device = job.run, torch.device(job.device)
    if job.budget.steps is not None:  # a run that does not depend on the clock: the point fit gets as many steps
        points_budget = Budget(steps=max(64, int(job.budget.steps)))
    else:
        points_budget = Budget(time_budget=max(float(cfg.points_frac) * job.budget.time_budget, 1e-6))
    points, source, density, s = scene_points(scene, job.input, cfg, points_budget, job.device, run)
    if len(points) == 0:
        raise InputError(scene.source, f"no surface points found ({source})",
                         "check the scene's alpha / bounding box, or pass --voxel with a larger size")
    origin = np.asarray(scene.aabb[0], np.float64)
    centres = [voxelise(points, s, origin), voxelise(points, 2 * s, origin)]
    decoder, code = pretrained(log=run.log)
    run_cfg = {"task": "radiance", "method": "dnmp", "source": job.input.builtin or str(job.input.path),
               "builtin": job.input.builtin, "scene": scene.name, "scene_kind": scene.kind,
               "aabb": np.asarray(scene.aabb).tolist(), "feat_dim": 3 + 6 * int(cfg.freqs), "hidden": int(cfg.hidden),
               "points": source, "sh_degree": cfg.sh_degree, "rim": cfg.rim, "antialias": cfg.antialias,
               "levels": [{"voxel": s, "count": len(centres[0]), "k": int(cfg.k_fine)},
                          {"voxel": 2 * s, "count": len(centres[1]), "k": int(cfg.k_coarse)}],
               "config": cfg.replace(voxel=s).to_dict(), "seed": job.seed}
    model = build_model(run_cfg, decoder, code, device)
    with torch.no_grad():
        for lv, c in zip(model.levels, centres, strict=True):
            lv.centres.copy_(c)
    if density is not None and cfg.shapes == "density":
        shape_levels(model, load_encoder().to(device), density.fn, density.sigma_min, log=run.log)
    mid, half = points.mean(0), np.abs(points - points.mean(0)).max() + 1e-9
    with torch.no_grad():
        for lv in model.levels:
            x = (lv.vertices(model.decoder) - torch.as_tensor(mid, device=device).float()) / float(half)
            lv.features.copy_(frequency_encoding(x, int(cfg.freqs), math.pi))
    run.write_config(run_cfg)
    run.log(f"dnmp: {len(points):,} surface points ({source}); voxels {s:.4g} / {2 * s:.4g}: "
            f"{len(centres[0]):,} + {len(centres[1]):,} primitives, {80 * (len(centres[0]) + len(centres[1])):,} faces")
    return model, run_cfg


def fit(job) -> dict:
    with cpu_threads(job.run, job.device):
        return _resume(job) if job.resume else _fit(job)


def _fit(job) -> dict:
    t0 = time.perf_counter()
    seed_everything(job.seed)
    given = job.options
    scene = load_radiance_scene(job.input, given.get("downscale", 1), given.get("test_every", 8))
    cfg = DNMPConfig.for_scene(scene, **given)
    model, run_cfg = _setup(job, cfg, scene)
    ids = scene.split("train")
    store = PixelStore(scene, ids)
    store.keep_on(job.device)  # on a GPU, when the pixels fit: batches gathered there
    geo_params = [p for lv in model.levels for p in (lv.latents, lv.offsets)]
    mlp_params = [*model.shader.parameters(), *model.background.parameters()]
    feats = RowAdam([lv.features for lv in model.levels], cfg.lr)
    opt = (make_adam([{"params": geo_params, "lr": cfg.lr_geometry}, {"params": mlp_params, "lr": cfg.lr}]), feats)
    # geometry stage: its share of what is left once the fragment cache is paid for (timed on one view)
    t1 = time.perf_counter()
    with torch.no_grad():
        rasterize_levels(model, scene.frames[ids[0]].camera)
    _synchronize(model.device)
    cache_estimate = (time.perf_counter() - t1) * len(ids)
    t1 = time.perf_counter()
    geo = GeometryStepper(model, opt, store, scene, cfg, job.seed)
    frac = float(cfg.geo_frac)
    if job.budget.steps is not None:
        geo_steps = int(job.budget.steps * frac)
        geo_budget = Budget(steps=max(1, geo_steps))
        go = geo_steps > 0
    else:
        geo_left = max(0.0, job.budget.time_budget - (t1 - t0) - cache_estimate) * frac
        geo_budget = Budget(time_budget=max(geo_left, 1e-6))  # 0 would mean "no limit"
        go = geo_left > 0
    i, last = 0, float("nan")
    with MetricLog(job.run, "psnr", "rays") as logs:  # the geometry stage's rows come first in metrics.csv
        while go and not geo_budget.done(i, time.perf_counter() - t1):
            out = geo(i, geo_budget.progress(i, time.perf_counter() - t1))
            last = float(out["loss"])
            i += 1
            logs.add(dict(out, loss=last))
            if logs.due(time.perf_counter() - t1):
                logs.row(i, time.perf_counter() - t1)
        logs.row(i, time.perf_counter() - t1)
    geo_s = time.perf_counter() - t1
    job.run.log(f"dnmp geometry stage: {i} steps in {geo_s:.0f}s, last loss {last:.4g}")
    stage = {"geometry_steps": i, "geometry_seconds": geo_s, "before_radiance_seconds": time.perf_counter() - t0}
    return _radiance(model, scene, store, cfg, job, t0, stage, feats, run_cfg)


def resumable(run: Run) -> bool:
    """Whether ``--resume`` has something to go on from: a radiance-stage checkpoint or a finished point fit."""
    return run.has_checkpoint() or Run(run.path / POINT_FIT).has_checkpoint()


def _resume(job) -> dict:
    """Continue the radiance stage of a run from its checkpoint (the geometry is frozen by then; the fragment cache
    is rebuilt). A run stopped after its rbf point fit (kept in RUN/points) but before the radiance stage
    checkpointed starts again from that fit."""
    from dataclasses import replace

    t0 = time.perf_counter()
    run = job.run
    run_cfg = job.saved
    cfg = DNMPConfig.from_dict(run_cfg["config"]).replace(**job.options)
    device = torch.device(job.device)
    tensors, meta = run.load_checkpoint(device) if run.has_checkpoint() else ({}, {})
    if "dnmp_stage" not in meta:
        points = Run(run.path / POINT_FIT)
        if not points.has_checkpoint():
            raise InputError(run.path, "nothing to resume: the run stopped before its point fit ended",
                             "start a new run")
        spent = float(points.checkpoint_meta().get("elapsed", 0.0))
        budget = job.budget if job.budget.steps is not None else job.budget.left(seconds_spent=spent)
        run.log(f"resume: the point fit ({spent:.0f}s) is reused from {points.path}; the stages after it start again "
                f"with {budget.describe()}")
        options = {**cfg.to_dict(), "points": str(points.path)}  # the run's options (mesh resolution, ...) kept
        return _fit(replace(job, resume=False, budget=budget, options=options))
    scene = load_radiance_scene(job.input, cfg.downscale, cfg.test_every)
    model = build_model(run_cfg, MeshDecoder(), torch.zeros(8, device="cpu"), device)
    model.load_state_dict(model_tensors(tensors))
    feats = RowAdam([lv.features for lv in model.levels], cfg.lr)
    store = PixelStore(scene, scene.split("train"))
    store.keep_on(device)
    return _radiance(model, scene, store, cfg, job, t0, meta["dnmp_stage"], feats, run_cfg, resume=(tensors, meta))


def _state(model, adam, rows: RowAdam, stage: dict):
    """Checkpoint (tensors, meta): weights, both optimizers' states and the stage bookkeeping (for resume)."""

    weights_and_adam = model_state(model, adam)

    def state():
        tensors, meta = weights_and_adam()
        for k, (m, v) in enumerate(zip(rows.m, rows.v, strict=True)):
            tensors[f"rows.m.{k}"], tensors[f"rows.v.{k}"] = m, v
        return tensors, dict(meta, rows_t=rows.t, dnmp_stage=stage)

    return state


def _radiance(model, scene, store, cfg: DNMPConfig, job, t0: float, stage: dict, feats: RowAdam, run_cfg: dict,
              resume=None) -> dict:
    """The radiance stage (geometry frozen, fragments cached), then test renders, mesh and metrics."""
    run, dev = job.run, model.device
    ids = scene.split("train")
    eval_batch = eval_rays_from(scene, cfg.eval_rays, job.seed)
    eval_rays, eval_bg = eval_batch.to(dev), eval_batch.background.float().to(dev)
    t2 = time.perf_counter()
    model.freeze()
    cache = FragmentCache(model, scene, ids, log=run.log)
    _synchronize(dev)
    cache_s = time.perf_counter() - t2
    where = "" if dev.type == "cpu" else f", kept on {'the GPU' if cache.on_device else 'the host'}"
    run.log(f"dnmp fragment cache: {len(cache.pixels):,} of {store.count:,} training pixels hit, {cache_s:.0f}s"
            f"{where}")
    adam = make_adam([{"params": [*model.shader.parameters(), *model.background.parameters()], "lr": cfg.lr}])
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
    stepper = RadianceStepper(model, (adam, feats), store, scene, cfg, job.seed + 1 + start, cache)
    eval_layers = cache_eval(model, scene, cfg.eval_rays, job.seed)

    def evaluate():
        with torch.no_grad():
            bgr = eval_bg.expand(eval_rays.dirs.shape[0], 3) if scene.has_alpha else model.background(eval_rays.dirs)
            rgb, _ = shade(model, eval_layers, eval_rays.dirs, bgr)
            return psnr_from_mse(torch.mean((rgb.clamp(0, 1) - eval_rays.target(eval_bg)) ** 2).item())

    budget = job.budget
    if budget.time_budget is not None and (resume is None or "radiance_budget_s" not in stage):
        stage["radiance_budget_s"] = max(1.0, budget.time_budget - stage["before_radiance_seconds"] - cache_s)
    geo_i = stage["geometry_steps"]
    stage_budget = Budget(steps=max(1, budget.steps - geo_i)) if budget.steps is not None else \
        Budget(time_budget=stage["radiance_budget_s"])
    loaded = DNMPRun(run, run_cfg, dev, model=model, scene=scene)
    t3 = time.perf_counter()
    history = fit_loop(stepper, stage_budget, run, evaluate=evaluate, state=_state(model, adam, feats, stage),
                       metric_name="psnr", eval_every_s=stage_budget.eval_every(10),
                       start_step=start, start_elapsed=elapsed, history=history, unit="rays",
                       preview=loaded.preview, step_offset=geo_i, seconds_offset=stage["geometry_seconds"])
    _synchronize(dev)
    rad_s = time.perf_counter() - t3
    train_s = time.perf_counter() - t0
    metrics = loaded.measure()
    t4 = time.perf_counter()
    metrics.update(loaded.export_mesh(run.path / "mesh.ply"))
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=count_params(model), primitives=[lv.count for lv in model.levels],
                   train_seconds=train_s, geometry_seconds=stage["geometry_seconds"], geometry_steps=geo_i,
                   cache_seconds=cache_s, radiance_seconds=rad_s, steps=geo_i + start + stepper.calls,
                   export_seconds=time.perf_counter() - t4, rays_per_second=stepper.rays / max(rad_s, 1e-9),
                   points_source=run_cfg["points"])
    run.write_metrics(metrics)
    return metrics


def _synchronize(device) -> None:
    """Wait for the GPU's queued work (wall-clock timings of GPU stages); nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cache_eval(model, scene, n: int, seed: int):
    """Layers (on the model's device) of the pixels ``eval_rays_from(scene, n, seed)`` draws (same frames, same
    generator)."""
    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // 8)][:8]
    count = int(frame_offsets(scene, ids)[-1])
    idx = np.random.default_rng(seed + 1).choice(count, size=min(n, count), replace=False)
    return FragmentCache(model, scene, ids).lookup(idx)


class DNMPRun(SceneModel):
    """A fitted set of neural mesh primitives: renders by rasterization from any camera, a fused mesh.

    Everything runs on ``device``: the weights are loaded there (a ``model`` given is moved there), and renders
    (``Rendering`` tensors) come back there; ``measure`` times and measures the render on it (``mesh.peak_mb``:
    CUDA's peak allocation on a GPU)."""

    render_modes = ("colour", "opacity")  # rasterized layers: no depth along the ray

    def __init__(self, run: Run, config: dict, device="cpu", model: DNMPModel | None = None, scene=None,
                 trained: bool = True):
        super().__init__(run, config, device, scene)
        if model is None:
            model = build_model(config, MeshDecoder(), torch.zeros(8, device="cpu"), self.device)
            if trained:
                load_model(run, model, self.device)
        elif model.device != self.device:
            model = model.to(self.device)
        model.freeze()
        self.model = model.eval()
        self.cfg = DNMPConfig.from_dict(config.get("config", {}))

    def render(self, camera, mode: str = "colour") -> Rendering:
        """Rasterized, shaded and composited from ``camera`` (depth: not computed, nan)."""
        rgb, opacity = render_image(self.model, camera, camera_dirs(self.scene, camera, self.device),
                                    scene_background(self.scene))
        h, w = camera.height, camera.width
        return Rendering(rgb.reshape(h, w, 3), opacity.reshape(h, w),
                         torch.full((h, w), float("nan"), device=rgb.device))

    def measure(self) -> dict:
        """Test views with the paper's efficiency units (module doc)."""
        metrics = super().measure()
        w, h = metrics["render_size"]
        metrics.pop("samples_per_ray", None)
        metrics["render_ms_per_1k_pixels"] = metrics["render_ms_per_frame"] / (w * h / 1000.0)
        ids = self.scene.split("test") or self.scene.split("train")
        cam = self.scene.frames[ids[0]].camera
        mb = peak_mb(lambda: self.frame(cam), self.device)
        metrics["peak_mb_per_1k_pixels"] = mb / (cam.pixels / 1000.0)
        return metrics

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        with cpu_threads(self.run, self.device):
            return export_occupancy_mesh(self.model, path, int(resolution or self.cfg.resolution))

    @torch.no_grad()
    def point_cloud(self, max_points: int = 200_000):
        """The primitives' vertices where the shader makes them opaque (alpha > 1/2 seen head-on, along -normal),
        with the shader's colour from there and their normals; thinned on a voxel grid (``mesh.points.voxel_thin``,
        cells from 1/2048 of the box's diagonal up)."""
        from fieldfit.mesh.points import PointCloud, to_uint8, voxel_thin
        from fieldfit.mesh.weld import diagonal

        clouds = []
        for lv, (v, n) in zip(self.model.levels, self.model.geometry(), strict=True):
            if lv.count == 0:
                continue
            alpha, rgb = self.model.shader(lv.features, -n, n)
            keep = (alpha > 0.5).cpu().numpy()
            clouds.append(PointCloud(v.double().cpu().numpy()[keep], to_uint8(rgb.float().cpu().numpy()[keep]),
                                     n.float().cpu().numpy()[keep]))
        cloud = PointCloud.concat(clouds)
        if len(cloud) == 0:
            raise InputError(self.run.path, "no opaque primitive: no points", "train the run longer")
        return voxel_thin(cloud, max_points, diagonal(cloud.points) / 2048)

    def occupancy(self) -> Occupancy:
        """Inside the union of the opaque primitives (``mesh.occupancy_volume``, sampled at the mesh resolution and
        read back trilinearly), on the model's device."""
        res = occupancy_volume(self.model, int(self.cfg.resolution))
        if res is None:
            raise InputError(self.run.path, "no opaque primitive: nothing to approximate", "train the run longer")
        vol, lo, hi = res
        dev = self.device
        grid = torch.from_numpy(vol).to(dev)[None, None]  # [1,1,X,Y,Z]
        lo_t, hi_t = torch.as_tensor(lo, device=dev).double(), torch.as_tensor(hi, device=dev).double()

        @torch.no_grad()
        def inside(x):
            u = (x.double().to(dev) - lo_t) / (hi_t - lo_t) * 2 - 1  # [-1,1] per axis, x along the first axis
            pts = u.flip(-1).float().reshape(1, -1, 1, 1, 3)
            val = torch.nn.functional.grid_sample(grid, pts, align_corners=True, padding_mode="border")
            inside_box = (u.abs() <= 1).all(-1)
            return (val.reshape(-1) > 0) & inside_box

        return Occupancy.of_box(inside, lo, hi, str(dev))

    def sync(self, tensors: dict) -> None:
        self.model.load_state_dict(model_tensors(tensors))
        self.model.freeze()


def load(run: Run, device="cpu", trained: bool = True) -> DNMPRun:
    return DNMPRun(run, run.config(), device, trained=trained)


__all__ = ["DNMPRun", "build_model", "cache_eval", "fit", "load", "resumable", "scene_background"]
