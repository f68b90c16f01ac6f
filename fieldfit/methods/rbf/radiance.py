"""rbf on posed photos: an RBF radiance field (METHODS.md 1.3) trained by ray marching.

Pipeline: scene -> training pixels on the host (``tasks.radiance``) -> each step draws random pixels, marches
their rays through the occupancy grid (``render.march``), evaluates the field once per surviving sample and
composites on a random background colour per ray (so alpha scenes learn their alpha and real scenes become
opaque). The number of rays per step adapts so that a step holds about ``target_samples`` field samples. The
grid's every cell is evaluated at the steps ``grid_full`` and a random subset of cells every ``grid_every`` steps
(keeping max(0.95 old, new)); in scenes without alpha the full evaluations replace the values and come again
every ``grid_refresh`` steps (so fog the field has cleared leaves the grid; ``config.GRID_REFRESH``). Before the
first refresh rays are marched with a ``coarse_step`` times larger step. An optional
distortion loss (mip-NeRF 360) concentrates each ray's weights. Real photographs are contracted
(``tasks.radiance.scene_contraction``); per-photo colour maps (``render.appearance``) are trained on request.

Choices (``grid_and_step``, ``RadianceConfig.for_scene``): the field and the occupancy grid cover the scene's
box (Blender: [-1.5, 1.5]^3; instant-ngp: its aabb_scale box; LLFF: the NDC box, see ``tasks.radiance``); the
grid has about one cell per pixel footprint (at most 128^3) and the step is 0.7 pixel footprint (at least half
a cell); samples behind T < 1e-3 or with alpha < 1e-3 are skipped. Test views are composited on the scene's
background (white for Blender, black else).

Outputs: renders/test_NNN.png (test split order, test-image size), metrics.json, mesh.ply (marching cubes on
the density, closed at the box), curve.png, checkpoint.
"""

import math
import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from fieldfit import dist
from fieldfit.fields.components.mlp import MLPDecoder
from fieldfit.fields.components.rbf import SplitRBFDecoder
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import RadianceRBF, default_density_scale
from fieldfit.model import Occupancy, Rendering, model_tensors
from fieldfit.optim import Passes, count_params, make_adam, seed_everything, set_lr
from fieldfit.render import OccupancyGrid
from fieldfit.render.appearance import Appearance
from fieldfit.render.contraction import Contraction
from fieldfit.render.losses import distortion_loss
from fieldfit.render.march import (
    MARCH_MODES,
    MarchConfig,
    fusable,
    march_mode,
    render,
    render_chunk,
    render_chunked,
    render_rays,
)
from fieldfit.render.metrics import psnr_from_mse
from fieldfit.render.poses import PoseCorrections
from fieldfit.runs import Run, load_model, model_state
from fieldfit.tasks.radiance import (
    PixelStore,
    camera_rays,
    eval_background,
    eval_rays_from,
    march_bounds,
    radiance_setup,
    scene_contraction,
    unit_box,
)
from fieldfit.tasks.radiance import grid_and_step as scene_grid_and_step
from fieldfit.tasks.views import SceneModel, export_density_mesh, ndc_to_world
from fieldfit.trainer import cpu_threads, fit_loop, plot_curve, resume_state

from .config import LR_DECODER, RadianceConfig, field_for_device


class RadianceModel(nn.Module):
    """A radiance field plus its occupancy grid (buffers) and, for real captures, the photos' colour maps
    (``render.appearance``), saved and loaded together."""

    def __init__(self, field: nn.Module, grid: OccupancyGrid, appearance: Appearance | None = None,
                 poses: PoseCorrections | None = None):
        super().__init__()
        self.field = field
        self.grid = grid
        self.appearance = appearance
        self.poses = poses

    def seen(self, rgb: torch.Tensor, opacity: torch.Tensor, background) -> torch.Tensor:
        """Colours [R,3] (composited on ``background``, opacities [R]) of a view no photo was trained on: through
        the mean colour map, if any, in [0,1]."""
        if self.appearance is None:
            return rgb
        dev = self.appearance.affine.device
        bg = torch.as_tensor(background, dtype=rgb.dtype, device=dev)
        with torch.no_grad():
            return self.appearance.mean(rgb.to(dev), opacity.to(dev), bg).to(rgb.device).clamp(0, 1)

    @torch.no_grad()
    def update_grid(self, step: int, step_size: float, n_cells=None, threshold: float = 0.01,
                    decay: float = 0.95) -> None:
        """Refresh the occupancy grid: a cell is kept where one step's opacity sigma*step > threshold."""
        self.grid.update(lambda x: self.field.density(x) * step_size, step, decay=decay, threshold=threshold,
                         n_cells=n_cells)


def build_model(cfg: dict, device) -> tuple[RadianceModel, MarchConfig]:
    """The model and marching settings described by a run config (or the one fit is writing)."""
    contraction = Contraction.from_config(cfg.get("contraction"))
    field = RadianceRBF(FieldConfig.from_dict(cfg["field"]), cfg["aabb"], cfg["density_shift"],
                        cfg["density_scale"], device=device, contraction=contraction,
                        density_activation=cfg.get("density_activation", "softplus"))  # runs before it: softplus
    grid = OccupancyGrid(cfg["aabb"], resolution=cfg["grid_res"], warmup_steps=0, dilation=cfg.get("grid_dilation", 1),
                         contraction=contraction)
    n, m = int(cfg.get("appearance_images", 0)), int(cfg.get("pose_images", 0))
    return (RadianceModel(field, grid, Appearance(n) if n else None, PoseCorrections(m) if m else None).to(device),
            MarchConfig(**cfg["march"]))


def grid_and_step(scene, cfg: RadianceConfig, contraction=None) -> tuple[int, float]:
    """Occupancy-grid resolution and marching step (``tasks.radiance.grid_and_step``), unless set in ``cfg``."""
    return scene_grid_and_step(scene, cfg.grid_res, cfg.step, contraction)


def run_config(scene, inp, cfg: RadianceConfig, seed: int) -> dict:
    """config.json of a fit: the resolved options, the field and the march (``build_model`` rebuilds from it)."""
    contraction = scene_contraction(scene, cfg.contract)
    aabb = np.asarray(scene.aabb if contraction is None else contraction.inner_box(), np.float64)
    near, far = march_bounds(scene)
    if contraction is not None:
        far = 1e308  # to the horizon (config.json keeps inf as 1e308)
    grid_res, step = grid_and_step(scene, cfg, contraction)
    march = {"step": step, "near": near, "far": far, "early_stop": cfg.early_stop, "alpha_thre": cfg.alpha_thre}
    field_cfg = cfg.field_config()
    return {"task": "radiance", "method": "rbf", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
            "scene": scene.name, "scene_kind": scene.kind, "ndc": bool(scene.ndc), "aabb": aabb.tolist(),
            "field": field_cfg.to_dict(), "density_shift": cfg.density_shift,
            "density_activation": cfg.density_activation,
            "density_scale": default_density_scale(unit_box(scene) if contraction is None else aabb),
            "grid_res": grid_res, "contraction": None if contraction is None else contraction.to_config(),
            "appearance_images": len(scene.split("train")) if cfg.appearance == "on" else 0,
            "pose_images": len(scene.split("train")) if cfg.refine_poses == "on" else 0,
            "grid_dilation": int(cfg.grid_dilation), "march": march, "config": cfg.to_dict(), "seed": seed}


APPEARANCE_LR = 1e-3
POSE_LR = 1e-3  # pose corrections (radians, scene units), on the fit's schedule


def param_groups(model: RadianceModel, cfg: RadianceConfig) -> list[dict]:
    dec = model.field.decoder
    groups = [{"params": list(model.field.encoding.parameters()), "lr": cfg.lr}]
    if isinstance(dec, SplitRBFDecoder) and isinstance(dec.colour, MLPDecoder):  # each decoder at its own rate
        groups += [{"params": list(dec.density.parameters()), "lr": cfg.lr_decoder},
                   {"params": list(dec.colour.parameters()), "lr": LR_DECODER["mlp"]}]
    else:
        groups.append({"params": list(dec.parameters()), "lr": cfg.lr_decoder})
    if model.appearance is not None:
        groups.append({"params": list(model.appearance.parameters()), "lr": APPEARANCE_LR})
    if model.poses is not None:
        groups.append({"params": list(model.poses.parameters()), "lr": POSE_LR})
    return groups


class Stepper:
    """One optimisation step per call, with the ray count adapted to the samples per ray."""

    def __init__(self, model: RadianceModel, opt, store: PixelStore, march: MarchConfig, cfg: RadianceConfig, device,
                 seed: int):
        self.model, self.opt, self.store, self.march, self.cfg = model, opt, store, march, cfg
        self.device = torch.device(device)
        self.rng = np.random.default_rng(dist.sample_seed(seed))  # each rank its own rays (rank 0: the seed)
        gen = torch.Generator(device=store.device)  # rays in passes, the order drawn where the pixels live
        gen.manual_seed(int(self.rng.integers(2**62)))
        self.passes = Passes(store.count, store.device, gen)
        self.spr = 64.0  # running mean of samples per ray
        self.rays = self.samples = 0
        self.last_step = 0
        g3 = model.grid.binary.numel()
        self.n_cells = max(1, int(g3 * cfg.grid_cells))

    def _grid(self, i: int) -> MarchConfig:
        """Refresh the grid when due; the marching settings of step i (coarser before the first refresh)."""
        c = self.cfg
        first, last, fresh = min(c.grid_full), max(c.grid_full), c.grid_refresh > 0
        if i in c.grid_full or (fresh and i > last and (i - last) % c.grid_refresh == 0):  # every cell
            self.model.update_grid(i, self.march.step, None, c.grid_threshold, decay=0.0 if fresh else 0.95)
        elif i > first and i % c.grid_every == 0:
            self.model.update_grid(i, self.march.step, self.n_cells, c.grid_threshold)
        if i < first:
            return replace(self.march, step=self.march.step * c.coarse_step, alpha_thre=0.0)
        return self.march if self.spr >= 1.0 else replace(self.march, alpha_thre=0.0)

    def __call__(self, i: int, progress: float) -> dict:
        c = self.cfg
        lr = set_lr(self.opt, progress, c.lr_final)
        march = self._grid(i)
        n = dist.share(int(np.clip(c.target_samples / max(self.spr, 1.0), 256, c.batch)))  # this rank's rays
        batch = self.store.take(self.passes.next(n)).to(self.device)
        bg = (torch.rand if c.background == "random" else torch.zeros)(n, 3, device=self.device)
        origins, dirs = batch.origins, batch.dirs
        if self.model.poses is not None:
            origins, dirs = self.model.poses(origins, dirs, batch.image)
        out, samples = render(self.model.field, self.model.grid, origins, dirs, bg, march, stratified=True)
        rgb = out.rgb
        if self.model.appearance is not None:
            rgb = self.model.appearance(out.rgb, out.opacity, bg, batch.image)
        mse = torch.nn.functional.mse_loss(rgb, batch.target(bg))
        loss = mse
        if c.distortion > 0:
            warp = self.model.grid.contraction
            loss = loss + c.distortion * distortion_loss(out.weights, samples if warp is None else
                                                         warp.normalised(samples))
        self.spr = 0.9 * self.spr + 0.1 * samples.n_samples / n
        self.rays += n
        self.samples += samples.n_samples
        self.last_step = i + 1
        if loss.requires_grad:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.tv > 0:  # the prior's gradient, added outside autograd (``fields.components.smooth``)
                self.model.field.encoding.add_tv_grad(c.tv)
            self.opt.step()
            if self.model.poses is not None:
                self.model.poses.center_()
        return {"loss": loss.detach(), "mse": mse.detach(), "batch": n, "lr": lr}


def fit(job) -> dict:
    with cpu_threads(job.run, job.device):
        return _fit(job)


def _fit(job) -> dict:
    t0 = time.perf_counter()
    run, device = job.run, torch.device(job.device)
    seed_everything(job.seed)
    cfg, scene, run_cfg = radiance_setup(job, RadianceConfig, run_config)
    run_cfg["field"] = field_for_device(FieldConfig.from_dict(run_cfg["field"]), device, run).to_dict()
    model, march = build_model(run_cfg, device)
    opt = make_adam(param_groups(model, cfg))
    store = PixelStore(scene, scene.split("train"))
    where = f" (on {device})" if device.type != "cpu" and store.keep_on(device) else ""  # batches gathered there
    eval_batch = eval_rays_from(scene, cfg.eval_rays, job.seed)
    params = count_params(model)
    c0 = scene.frames[0].camera
    run.log(f"scene {scene.name} ({scene.kind}{', NDC' if scene.ndc else ''}): {len(scene.split('train'))} train / "
            f"{len(scene.split('test'))} test views of {c0.width}x{c0.height}, {store.count:,} training pixels{where}; "
            f"field {params:,} parameters {model.field.param_groups()}; march step {march.step:.4g}")
    start, elapsed, history = resume_state(run, model, opt, device) if job.resume else (0, 0.0, None)
    run.write_config(run_cfg)  # after the checkpoint has loaded: a resume that cannot go on leaves the run as it was
    stepper = Stepper(model, opt, store, march, cfg, device, job.seed + start)
    prepare_s = time.perf_counter() - t0

    def evaluate():
        rgb, opacity, _, _ = render_rays(model.field, model.grid, eval_batch.origins, eval_batch.dirs,
                                         eval_batch.background, march, device)
        rgb = model.seen(rgb, opacity, eval_batch.background)
        return psnr_from_mse(torch.mean((rgb - eval_batch.target(eval_batch.background)) ** 2).item())

    budget = job.budget
    t1 = time.perf_counter()
    loaded = RadianceRun(run, run_cfg, device, model=model, scene=scene)
    history = fit_loop(stepper, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="psnr",
                       eval_every_s=budget.eval_every(10), start_step=start, start_elapsed=elapsed,
                       history=history, unit="rays", preview=loaded.preview)
    train_s = time.perf_counter() - t1
    metrics = loaded.measure()
    t2 = time.perf_counter()
    metrics.update(loaded.export_mesh(run.path / "mesh.ply", cfg.resolution))
    export_s = time.perf_counter() - t2
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=params, grid_params=model.field.param_groups()["grid"],
                   steps=stepper.last_step, prepare_seconds=prepare_s, train_seconds=train_s, export_seconds=export_s,
                   rays_per_second=stepper.rays / max(train_s, 1e-9),
                   train_samples_per_ray=stepper.samples / max(stepper.rays, 1),
                   occupied_fraction=model.grid.occupied_fraction())
    if model.poses is not None:
        turn, move = model.poses.sizes()
        metrics.update(pose_corrections={"mean_rotation_deg": turn, "mean_translation": move})
        run.log(f"pose corrections: mean {turn:.3f} deg, mean translation {move:.4g}")
    run.write_metrics(metrics)
    return metrics


class RadianceRun(SceneModel):
    """A fitted rbf radiance field: ``field`` and its occupancy ``grid`` (``render.march`` draws them with
    ``march``), the scene's cameras, renders from any camera, a density mesh."""

    render_modes = ("colour", "depth", "normals", "opacity")

    def __init__(self, run: Run, config: dict, device="cpu", model: RadianceModel | None = None, scene=None,
                 trained: bool = True):
        super().__init__(run, config, device, scene)
        if model is None:
            model, march = build_model(config, self.device)
            if trained:
                load_model(run, model, self.device)
        else:
            march = MarchConfig(**config["march"])
        self.model, self.march = model.eval(), march
        self.cfg = RadianceConfig.from_dict(config.get("config", {}))

    @property
    def field(self) -> RadianceRBF:
        return self.model.field

    @property
    def grid(self) -> OccupancyGrid:
        return self.model.grid

    @property
    def background(self) -> np.ndarray:
        return eval_background(self.scene)

    def marchers(self) -> list[str]:
        """The frame marchers that can draw this field (``render.march.MARCH_MODES``; fused: not contracted ones)."""
        return [m for m in MARCH_MODES if m != "fused" or fusable(self.field)]

    def march_mode(self) -> str:
        return march_mode(self.device, self.field, self.grid)

    @torch.no_grad()
    def render(self, camera, mode: str = "colour", march: str | None = None, on_device: bool = False) -> Rendering:
        """The field seen from ``camera``; rays made as the test renders make them, so a scene camera gives
        exactly renders/test_NNN.png. ``march``: rounds | packed | fused (default ``march_mode``). ``on_device``:
        leave the images on the model's device (the viewer on a GPU), rays in image order."""
        o, d = camera_rays(self.scene, camera, device=self.device)
        if on_device:
            bg = torch.as_tensor(self.background, device=self.device)
            rgb, opacity, depth, n = render_chunked(self.field, self.grid, o, d, bg, self.march,
                                                    render_chunk(self.device), march or self.march_mode())
            rgb = rgb.clamp(0, 1)
        else:
            rgb, opacity, depth, n = render_rays(self.field, self.grid, o, d, self.background, self.march,
                                                 self.device, mode=march)
        rgb = self.model.seen(rgb, opacity, self.background)
        h, w = camera.height, camera.width
        opacity = opacity.reshape(h, w)
        t = depth.reshape(h, w) / opacity.clamp_min(1e-10)
        out = Rendering(rgb.reshape(h, w, 3), opacity, torch.where(opacity > 0, t, torch.full_like(t, float("nan"))), n)
        if mode == "normals":
            solid = (opacity > 0.5).reshape(-1).cpu()
            pts = (o.cpu() + d.cpu() * t.reshape(-1, 1).cpu())[solid]
            normals = torch.zeros(h * w, 3)
            normals[solid] = self.normals(pts)
            out.normals = normals.reshape(h, w, 3)
        return out

    def normals(self, x: torch.Tensor, chunk: int = 1 << 15) -> torch.Tensor:
        """Unit normals [N,3] = -grad(density) / |grad(density)| at points x [N,3] (marching space)."""
        out = []
        for s in range(0, x.shape[0], chunk):
            p = x[s:s + chunk].to(self.device).requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.field.density(p).sum(), p)
            out.append(torch.nn.functional.normalize(-g, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 3)

    def mesh_box(self) -> tuple[np.ndarray, np.ndarray]:
        """Box of the occupied cells grown by one cell, inside the grid's box (marching space); for a contracted
        scene, the inner cube (its surroundings out to the horizon are not meshed)."""
        g = self.grid
        if g.contraction is not None:
            inner = g.contraction.inner_box()
            return inner[0], inner[1]
        box = g.occupied_box().detach().cpu().double().numpy()
        cell = g.cell_size.cpu().double().numpy()
        aabb = g.aabb.cpu().double().numpy()
        return np.maximum(box[0] - cell, aabb[0]), np.minimum(box[1] + cell, aabb[1])

    def points_box(self):
        """The inner cube of a contracted run (its point cloud leaves out the shell), else None."""
        c = self.grid.contraction
        return None if c is None else c.inner_box()

    def mesh_threshold(self) -> float:
        """Density where one marching step has opacity 1/2: ln 2 / step."""
        return math.log(2.0) / self.march.step

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """Watertight coloured mesh of the density (``tasks.views.export_density_mesh``)."""
        lo, hi = self.mesh_box()
        with cpu_threads(self.run, self.device):
            return export_density_mesh(self.field.density, lambda x, d: self.field(x, d).rgb, lo, hi,
                                       self.mesh_threshold(), self.scene if self.config.get("ndc") else None, path,
                                       int(resolution or self.cfg.resolution), self.device,
                                       occupied_fn=self.grid.occupied)

    def occupancy(self) -> Occupancy:
        """Inside where the density exceeds the mesh threshold, in occupied cells of the box (marching space;
        NDC scenes: the NDC cube, mapped to the world by ``tasks.views.ndc_to_world``)."""
        lo, hi = self.mesh_box()
        threshold = self.mesh_threshold()
        lo_t, hi_t = (torch.as_tensor(b, dtype=torch.float32, device=self.device) for b in (lo, hi))

        @torch.no_grad()
        def inside(x):
            x = x.float()
            occ = self.grid.occupied(x) & ((x >= lo_t) & (x <= hi_t)).all(1)
            dens = torch.zeros(len(x), device=x.device)
            if bool(occ.any()):
                dens[occ] = self.field.density(x[occ]).float().reshape(-1)
            return dens > threshold

        to_world = (lambda v: ndc_to_world(v, self.scene)) if self.config.get("ndc") else None
        return Occupancy.of_box(inside, lo, hi, str(self.device), to_world)

    def sync(self, tensors: dict) -> None:
        self.model.load_state_dict(model_tensors(tensors))


def load(run: Run, device="cpu", trained: bool = True) -> RadianceRun:
    return RadianceRun(run, run.config(), device, trained=trained)


__all__ = ["RadianceModel", "RadianceRun", "Stepper", "build_model", "fit", "grid_and_step", "load", "param_groups",
           "run_config"]
