"""pronerf on posed photos: projection-aware ray sampling (METHODS.md 3), a few samples per ray.

A sampler network places N (--samples, default 12) samples on each ray from its Pluecker coordinates and the
colours their candidates re-project to in nearby training views (``render.samplers.projection``); the radiance
field (rbf's RadianceRBF by default, ``--field nerf`` a small MLP NeRF) is queried only there (``model``).
Training: ``train`` (exploration / exploitation, then joint). Defaults and why: ``config``.

The run references its source images (config ``source`` and ``source_views``) and loads them when it renders;
they are not copied. Rendering a view uses the ``views`` (4) training cameras nearest it. metrics.json:
test.psnr / test.ssim, render_ms_per_frame and samples_per_ray (``tasks.views`` conventions), plus the training
figures. The mesh (mesh.ply, ``export_mesh``): marching cubes of the field's density over the scene's box,
closed at the box, at the density where one average interval between a ray's samples is half opaque.
"""

import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import frequency_encoding
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.nerf import NerfMLP
from fieldfit.fields.radiance_rbf import RadianceRBF, default_density_scale
from fieldfit.methods.rbf.config import field_for_device
from fieldfit.model import Occupancy, Rendering, model_tensors
from fieldfit.optim import count_params, make_adam, seed_everything
from fieldfit.render.metrics import psnr_from_mse
from fieldfit.render.rays import NDCParams
from fieldfit.render.samplers.projection import ProjectionSampler, RefineNet, SamplerNet, SourceViews
from fieldfit.runs import Run, load_model, model_state
from fieldfit.tasks.radiance import (
    PixelStore,
    box_extent,
    camera_rays,
    eval_background,
    radiance_setup,
    unit_box,
)
from fieldfit.tasks.views import SceneModel, evaluate_views, export_density_mesh, ndc_to_world
from fieldfit.trainer import cpu_threads, fit_loop, plot_curve, resume_state

from .config import ProNeRFConfig
from .model import ProNeRFModel
from .train import Stepper


def run_config(scene, inp, cfg: ProNeRFConfig, seed: int) -> dict:
    aabb = np.asarray(scene.aabb, np.float64)
    train = scene.split("train")
    ndc = scene.ndc_params.__dict__ if scene.ndc else None
    return {"task": "radiance", "method": "pronerf", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
            "scene": scene.name, "scene_kind": scene.kind, "ndc": bool(scene.ndc), "ndc_params": ndc,
            "aabb": aabb.tolist(), "near": 0.0 if scene.ndc else float(scene.near),
            "far": 1e30 if scene.ndc else float(scene.far), "field_kind": cfg.field,
            "field": cfg.field_config().to_dict(), "density_shift": cfg.density_shift,
            "density_scale": default_density_scale(unit_box(scene)), "samples": int(cfg.samples),
            "views": int(cfg.views), "mesh_step": box_extent(scene) / int(cfg.samples),
            "source_views": {"ids": train, "images": [str(scene.frames[i].path) for i in train]},
            "config": cfg.to_dict(), "seed": seed}


def build_model(config: dict, device) -> ProNeRFModel:
    """The untrained model a run config describes (no source views attached)."""
    o = ProNeRFConfig.from_dict(config["config"])
    aabb = config["aabb"]
    if config["field_kind"] == "nerf":
        field = NerfMLP(aabb, o.nerf_freqs, 4, o.nerf_hidden, o.nerf_layers)
    else:
        field = RadianceRBF(FieldConfig.from_dict(config["field"]), aabb, config["density_shift"],
                            config["density_scale"], device=device)
    n, v = int(config["samples"]), int(config["views"])
    enc = frequency_encoding(torch.zeros(1, 6), int(o.pe_freqs)).shape[1]
    proposal = SamplerNet(enc, n, o.sampler_hidden, o.sampler_layers)
    refiner = RefineNet(enc, n, v, o.sampler_hidden, o.sampler_layers)
    extent = float(np.mean(np.subtract(aabb[1], aabb[0])))
    ndc = NDCParams(**config["ndc_params"]) if config.get("ndc_params") else None
    unit = getattr(field, "density_scale", 1.0)
    sampler = ProjectionSampler(proposal, refiner, aabb, config["near"], config["far"], ndc, int(o.pe_freqs),
                                float(o.offset_scale) * extent, unit)
    return ProNeRFModel(field, sampler).to(device)


def param_groups(model: ProNeRFModel, cfg: ProNeRFConfig) -> list[dict]:
    nets = list(model.sampler.parameters())
    if isinstance(model.field, RadianceRBF):
        field = [{"params": list(model.field.encoding.parameters()), "lr": cfg.lr},
                 {"params": list(model.field.decoder.parameters()), "lr": cfg.lr_decoder}]
    else:
        field = [{"params": list(model.field.parameters()), "lr": cfg.lr_nerf}]
    return field + [{"params": nets, "lr": cfg.lr_sampler}]


def attach_sources(model: ProNeRFModel, scene, config: dict, device) -> ProNeRFModel:
    """Give the sampler its source views: the run's training cameras, images loaded from the scene on first use."""
    ids = config["source_views"]["ids"]
    if not ids:
        raise InputError(scene.source, "no training views to project into", "check the scene's train split")
    model.sampler.sources = SourceViews([scene.frames[i].camera for i in ids], lambda v: scene.image(ids[v]), device)
    return model


@torch.no_grad()
def render_camera(model: ProNeRFModel, scene, camera, device, chunk: int = 4096, uniform: int = 0):
    """(rgb [R,3], opacity [R], expected t [R] on the CPU, field samples) of a camera's pixels: the pipeline with
    the source views nearest the camera, or (uniform > 0) the field alone marched with ``uniform`` samples."""
    o, d = camera_rays(scene, camera)
    bg = torch.as_tensor(eval_background(scene), device=device)
    views = torch.tensor(model.sampler.sources.nearest(camera.c2w[:, 3], model.sampler.views), device=device)
    rgb, opa, depth = torch.zeros(o.shape[0], 3), torch.zeros(o.shape[0]), torch.zeros(o.shape[0])
    for s in range(0, o.shape[0], chunk):
        oc, dc = o[s:s + chunk].to(device), d[s:s + chunk].to(device)
        out = model.render_uniform(oc, dc, bg, uniform) if uniform else model.render(oc, dc, bg, views)[0]
        rgb[s:s + chunk] = out.rgb.clamp(0, 1).float().cpu()
        opa[s:s + chunk] = out.opacity.float().cpu()
        depth[s:s + chunk] = out.normalized_depth().float().cpu()
    return rgb, opa, depth, o.shape[0] * (uniform or model.n)


def _eval_batch(scene, model, n: int, seed: int, device):
    """Fixed random pixels of up to 4 test views with their views (the PSNR during training)."""
    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // 4)][:4]
    rng = np.random.default_rng(seed + 1)
    parts = []
    for i in ids:
        store = PixelStore(scene, [i])
        b = store.take(rng.choice(store.count, size=min(n // len(ids), store.count), replace=False)).to(device)
        views = torch.tensor(model.sampler.sources.nearest(scene.frames[i].camera.c2w[:, 3], model.sampler.views),
                             device=device)
        parts.append((b, views))
    return parts


def fit(job) -> dict:
    with cpu_threads(job.run, job.device):
        return _fit(job)


def _fit(job) -> dict:
    t0 = time.perf_counter()
    run, device = job.run, torch.device(job.device)
    seed_everything(job.seed)
    cfg, scene, run_cfg = radiance_setup(job, ProNeRFConfig, run_config)
    if run_cfg["field_kind"] != "nerf":  # the rbf field's grid as built here (tcnn only where tinycudann runs)
        run_cfg["field"] = field_for_device(FieldConfig.from_dict(run_cfg["field"]), device, run).to_dict()
    model = attach_sources(build_model(run_cfg, device), scene, run_cfg, device)
    opt = make_adam(param_groups(model, cfg))
    train = run_cfg["source_views"]["ids"]
    store = PixelStore(scene, train)
    store.keep_on(device)  # on a GPU (when the pixels fit): batches gathered there
    sizes = [scene.frames[i].camera.pixels for i in train]
    bg = eval_background(scene)
    params = count_params(model)
    run.log(f"scene {scene.name} ({scene.kind}{', NDC' if scene.ndc else ''}): {len(train)} train / "
            f"{len(scene.split('test'))} test views; {cfg.samples} samples per ray, {cfg.views} source views; "
            f"{params:,} parameters (field {count_params(model.field):,})")
    start, elapsed, history = resume_state(run, model, opt, device) if job.resume else (0, 0.0, None)
    run.write_config(run_cfg)  # after the checkpoint has loaded: a resume that cannot go on leaves the run as it was
    stepper = Stepper(model, opt, store, sizes, cfg, bg, device, job.seed + start)
    eval_parts = _eval_batch(scene, model, int(cfg.eval_rays), job.seed, device)
    prepare_s = time.perf_counter() - t0

    @torch.no_grad()
    def evaluate():
        bgt = torch.as_tensor(bg, device=device)
        err = [((model.render(b.origins, b.dirs, bgt, v)[0].rgb.clamp(0, 1) - b.target(bgt)) ** 2).mean().item()
               for b, v in eval_parts]
        return psnr_from_mse(float(np.mean(err)))

    budget = job.budget
    t1 = time.perf_counter()
    loaded = ProNeRFRun(run, run_cfg, device, model=model, scene=scene)
    history = fit_loop(stepper, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="psnr",
                       eval_every_s=budget.eval_every(10), start_step=start, start_elapsed=elapsed,
                       history=history, unit="rays", preview=loaded.preview)
    train_s = time.perf_counter() - t1
    metrics = loaded.measure()
    t2 = time.perf_counter()
    metrics.update(loaded.export_mesh(run.path / "mesh.ply"))
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=params, field_params=count_params(model.field), steps=stepper.last_step,
                   prepare_seconds=prepare_s, train_seconds=train_s, export_seconds=time.perf_counter() - t2,
                   rays_per_second=stepper.rays / max(train_s, 1e-9),
                   train_samples_per_ray=stepper.samples / max(stepper.rays, 1))
    run.write_metrics(metrics)
    return metrics


class ProNeRFRun(SceneModel):
    """A fitted ProNeRF: the field and its sampler, with the scene's training images as source views."""

    render_modes = ("colour", "depth", "opacity")

    def __init__(self, run: Run, config: dict, device="cpu", model: ProNeRFModel | None = None, scene=None,
                 trained: bool = True):
        super().__init__(run, config, device, scene)
        if model is None:  # its source views are attached when the scene is first needed (``load_scene``)
            model = build_model(config, self.device)
            if trained:
                load_model(run, model, self.device)
        self.model = model.eval()
        self.cfg = ProNeRFConfig.from_dict(config.get("config", {}))

    def load_scene(self):
        """The scene, checked for the source images the sampler reads."""
        scene = super().load_scene()
        ids = self.config["source_views"]["ids"]
        missing = [str(scene.frames[i].path) for i in ids
                   if scene.frames[i].path and not Path(scene.frames[i].path).exists()]
        if missing:
            raise InputError(missing[0], f"source image missing ({len(missing)} of {len(ids)})",
                             "restore the scene's images; the run renders from them")
        attach_sources(self.model, scene, self.config, self.device)
        return scene

    def render(self, camera, mode: str = "colour", uniform: int = 0) -> Rendering:
        """The run seen from ``camera`` with the source views nearest it (``uniform`` > 0: the field alone with that
        many uniform samples per ray)."""
        rgb, opacity, t, n = render_camera(self.model, self.scene, camera, self.device, int(self.cfg.chunk), uniform)
        h, w = camera.height, camera.width
        t = torch.where(opacity > 0, t, torch.full_like(t, float("nan")))
        return Rendering(rgb.reshape(h, w, 3), opacity.reshape(h, w), t.reshape(h, w), n)

    def measure(self, uniform: int = 0, run=None) -> dict:
        def render_fn(camera):
            r = self.render(camera, uniform=uniform)
            return r.rgb.numpy(), r.samples

        return evaluate_views(render_fn, self.scene, run or self.run, self.device)

    def evaluate_uniform(self, n: int = 128) -> dict:
        """The run's field alone, marched with n uniform samples per ray (the baseline of the bench); renders go to
        <run>/uniform<n>/renders, metrics are returned (metrics.json is untouched)."""
        with cpu_threads(self.run, self.device):
            return self.measure(n, SimpleNamespace(path=self.run.path / f"uniform{n}", log=self.run.log))

    def mesh_threshold(self) -> float:
        """ln 2 / spacing: the density at which one average interval between a ray's samples (the box's mean side
        over the samples per ray, config ``mesh_step``) is half opaque: the field is only ever read at those
        samples, so its density is calibrated to their spacing."""
        return math.log(2.0) / float(self.config["mesh_step"])

    def _box(self):
        aabb = np.asarray(self.config["aabb"], np.float64)
        return aabb[0], aabb[1]

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """Watertight coloured mesh of the field's density over the scene's box (module doc)."""
        lo, hi = self._box()
        field = self.model.field
        with cpu_threads(self.run, self.device):
            return export_density_mesh(field.density, lambda x, d: field(x, d).rgb, lo, hi, self.mesh_threshold(),
                                       self.scene if self.config.get("ndc") else None, path,
                                       int(resolution or self.cfg.resolution), self.device)

    def occupancy(self) -> Occupancy:
        lo, hi = self._box()
        threshold, field = self.mesh_threshold(), self.model.field

        @torch.no_grad()
        def inside(x):
            return field.density(x.float()).reshape(-1) > threshold

        to_world = (lambda v: ndc_to_world(v, self.scene)) if self.config.get("ndc") else None
        return Occupancy.of_box(inside, lo, hi, str(self.device), to_world)

    def sync(self, tensors: dict) -> None:
        self.model.load_state_dict(model_tensors(tensors))


def load(run: Run, device="cpu", trained: bool = True) -> ProNeRFRun:
    return ProNeRFRun(run, run.config(), device, trained=trained)


__all__ = ["ProNeRFRun", "attach_sources", "build_model", "fit", "load", "param_groups", "render_camera",
           "run_config"]
