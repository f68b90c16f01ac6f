"""pronerf on posed photos: projection-aware ray sampling (METHODS.md 3), a few samples per ray.

A sampler network places N (--samples, default 12) samples on each ray from its Pluecker
coordinates and the colours their candidates re-project to in nearby training views; the
radiance field (rbf's RadianceRBF by default, ``--field nerf`` a small MLP NeRF) is queried only
there (pronerf_model). Training: pronerf_train (exploration / exploitation, then joint).

Field defaults, measured on fern (images_8) after 500 steps at 12 samples per ray, test PSNR:
rbf's RadianceRBF with its ReLU-MLP decoder (64 x 2) 20.26 dB against 18.89 with the Gaussian
RBF decoder (32 units; 64 units 19.01), but at the full 1200 s the two meet (RBF 22.59 dB, MLP
22.51), so rbf's field keeps its RBF decoder by default (``--decoder mlp`` for the MLP); 128-wide MLP 20.69 but 1.3x slower steps; max_res 512 (5 levels) 19.93; grid
lr 0.04 18.87. Sampler and refiner 4 x 64 wide: 20.86 against 20.27 at 4 x 128, and cheaper
(they see only a ray's 6 Pluecker numbers; narrower nets generalise better to new views).
rbf's own occupancy-grid marcher reached 20.27 on fern in 900 s.

The run references its source images (config ``source`` and ``source_views``) and loads them
when it renders; they are not copied. Rendering a view uses the ``views`` (4) training cameras
nearest it. metrics.json: test.psnr / test.ssim, render_ms_per_frame and samples_per_ray
(radiance_eval conventions), plus the training figures.
"""

import time
from pathlib import Path

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.pronerf import NerfMLP, RefineNet, SamplerNet
from fieldfit.fields.radiance_rbf import RadianceRBF, default_density_scale

from ..runs import Run
from ..trainer import Budget, fit_loop, plot_curve
from .common import count_params, load_model, make_adam, model_state, psnr_from_mse, resume_state, seed_everything
from .pronerf_model import ProNeRFModel, SourceViews
from .pronerf_train import Stepper
from .radiance_data import PixelStore, eval_background, frame_rays, load_radiance_scene, unit_box
from .radiance_eval import evaluate_views, render_video
from .rbf_radiance import cpu_threads, field_config

TASKS = ("radiance",)
DEFAULTS = {
    # the field: rbf's radiance field (same keys as rbf) with its MLP decoder (module doc), or "nerf"
    "field": "rbf", "grid": "triplane", "levels": 4, "base_res": 16, "max_res": 256, "features": 4,
    "volume_max_res": 32, "init_scale": 0.1, "units": 32, "kernel": "gaussian", "decoder": "rbf", "hidden": 64,
    "layers": 2, "density_shift": -5.0, "lr": 0.02, "lr_decoder": 0.02, "lr_final": 0.1,
    "nerf_hidden": 128, "nerf_layers": 4, "nerf_freqs": 10, "lr_nerf": 5e-3,
    # the sampler and refiner
    "samples": 12, "views": 4, "pool": 12, "sampler_hidden": 64, "sampler_layers": 4, "pe_freqs": 0,
    "lr_sampler": 1e-3, "offset_scale": 0.005,  # x the box's mean extent
    # schedule
    "batch": 2048, "explore_batch": 1024, "explore_samples": 48, "explore_uniform": 8, "jitter": 0.2,
    "stage1": 0.5, "distill": 1.0, "distill_floor": 0.1, "distortion": 0.0, "max_bad_steps": 20,
    "time_budget": 300.0, "eval_rays": 4096, "chunk": 4096,
}


def options(extra: dict) -> dict:
    out = {**DEFAULTS, **extra}
    if "samples_per_ray" in extra:
        out["samples"] = extra["samples_per_ray"]
    if not 2 <= int(out["samples"]) <= 128:
        raise InputError(f"--samples {out['samples']}", "pronerf places 2 to 128 samples per ray", "use 8, 12 or 32")
    if out["field"] not in ("rbf", "nerf"):
        raise InputError(f"--field {out['field']}", "unknown pronerf field", "use rbf or nerf")
    return out


def run_config(scene, inp, extra: dict, seed: int) -> dict:
    aabb = np.asarray(scene.aabb, np.float64)
    train = scene.split("train")
    field = RadianceRBF(field_config(extra), aabb, extra["density_shift"], default_density_scale(unit_box(scene)))
    ndc = scene.ndc_params.__dict__ if scene.ndc else None
    return {"task": "radiance", "method": "pronerf", "source": inp.builtin or str(inp.path), "builtin": inp.builtin,
            "scene": scene.name, "scene_kind": scene.kind, "ndc": bool(scene.ndc), "ndc_params": ndc,
            "aabb": aabb.tolist(), "near": 0.0 if scene.ndc else float(scene.near),
            "far": 1e30 if scene.ndc else float(scene.far), "field_kind": extra["field"],
            "field": field.cfg.to_dict(), "density_shift": field.density_shift, "density_scale": field.density_scale,
            "samples": int(extra["samples"]), "views": int(extra["views"]),
            "source_views": {"ids": train, "images": [str(scene.frames[i].path) for i in train]},
            "options": extra, "seed": seed}


def build_model(cfg: dict, device) -> ProNeRFModel:
    """The untrained model a run config describes (no source views attached)."""
    from fieldfit.fields.gaussian_rbf import FieldConfig
    from fieldfit.fields.pronerf import frequency_encoding
    from fieldfit.scenes.base import NDCParams

    o = cfg["options"]
    aabb = cfg["aabb"]
    if cfg["field_kind"] == "nerf":
        field = NerfMLP(aabb, o["nerf_freqs"], 4, o["nerf_hidden"], o["nerf_layers"])
    else:
        field = RadianceRBF(FieldConfig.from_dict(cfg["field"]), aabb, cfg["density_shift"], cfg["density_scale"],
                            device=device)
    n, v = int(cfg["samples"]), int(cfg["views"])
    enc = frequency_encoding(torch.zeros(1, 6), int(o["pe_freqs"])).shape[1]
    sampler = SamplerNet(enc, n, o["sampler_hidden"], o["sampler_layers"])
    refiner = RefineNet(enc, n, v, o["sampler_hidden"], o["sampler_layers"])
    extent = float(np.mean(np.subtract(aabb[1], aabb[0])))
    ndc = NDCParams(**cfg["ndc_params"]) if cfg.get("ndc_params") else None
    unit = getattr(field, "density_scale", 1.0)
    return ProNeRFModel(field, sampler, refiner, aabb, cfg["near"], cfg["far"], ndc, int(o["pe_freqs"]),
                        float(o["offset_scale"]) * extent, unit).to(device)


def _param_groups(model: ProNeRFModel, e: dict) -> list[dict]:
    nets = list(model.sampler.parameters()) + list(model.refiner.parameters())
    if isinstance(model.field, RadianceRBF):
        field = [{"params": list(model.field.encoding.parameters()), "lr": e["lr"]},
                 {"params": list(model.field.decoder.parameters()), "lr": e["lr_decoder"]}]
    else:
        field = [{"params": list(model.field.parameters()), "lr": e["lr_nerf"]}]
    return field + [{"params": nets, "lr": e["lr_sampler"]}]


@torch.no_grad()
def render_frame(model: ProNeRFModel, scene, frame, device, chunk: int = 4096, uniform: int = 0):
    """([H,W,3] render of ``frame``, field samples): the pipeline with the views nearest the
    camera, or (uniform > 0) the field alone marched with ``uniform`` uniform samples."""
    o, d = frame_rays(scene, frame)
    bg = torch.as_tensor(eval_background(scene), device=device)
    views = torch.tensor(model.sources.nearest(frame.c2w[:, 3], model.refiner.v), device=device)
    rgb = torch.zeros(o.shape[0], 3)
    for s in range(0, o.shape[0], chunk):
        oc, dc = o[s:s + chunk].to(device), d[s:s + chunk].to(device)
        out = model.render_uniform(oc, dc, bg, uniform) if uniform else model.render(oc, dc, bg, views)[0]
        rgb[s:s + chunk] = out.rgb.clamp(0, 1).float().cpu()
    return rgb.reshape(frame.height, frame.width, 3).numpy(), o.shape[0] * (uniform or model.n)


def _eval_batch(scene, model, n: int, seed: int, device):
    """Fixed random pixels of up to 4 test views with their views (the PSNR during training)."""
    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // 4)][:4]
    rng = np.random.default_rng(seed + 1)
    parts = []
    for i in ids:
        store = PixelStore(scene, [i])
        b = store.take(rng.choice(store.count, size=min(n // len(ids), store.count), replace=False)).to(device)
        views = torch.tensor(model.sources.nearest(scene.frames[i].c2w[:, 3], model.refiner.v), device=device)
        parts.append((b, views))
    return parts


def attach_sources(model: ProNeRFModel, scene, cfg: dict, device) -> ProNeRFModel:
    model.sources = SourceViews(scene, cfg["source_views"]["ids"], device)
    return model


def fit(inp, opts, run: Run) -> dict:
    with cpu_threads(run, opts.device):
        return _fit(inp, opts, run)


def _fit(inp, opts, run: Run) -> dict:
    t0 = time.perf_counter()
    extra = options(opts.extra)
    device = torch.device(opts.device)
    seed_everything(opts.seed)
    scene = load_radiance_scene(inp, extra)
    cfg = run_config(scene, inp, extra, opts.seed)
    run.write_config(cfg)
    model = attach_sources(build_model(cfg, device), scene, cfg, device)
    opt = make_adam(_param_groups(model, extra))
    train = cfg["source_views"]["ids"]
    store = PixelStore(scene, train)
    store.keep_on(device)  # on a GPU (when the pixels fit): batches gathered there
    sizes = [scene.frames[i].width * scene.frames[i].height for i in train]
    bg = eval_background(scene)
    params = count_params(model)
    run.log(f"scene {scene.name} ({scene.kind}{', NDC' if scene.ndc else ''}): {len(train)} train / "
            f"{len(scene.split('test'))} test views; {cfg['samples']} samples per ray, {cfg['views']} source views; "
            f"{params:,} parameters (field {count_params(model.field):,})")
    start, elapsed, history = resume_state(run, model, opt, device) if opts.resume else (0, 0.0, None)
    stepper = Stepper(model, opt, store, sizes, extra, bg, device, opts.seed + start)
    eval_parts = _eval_batch(scene, model, int(extra["eval_rays"]), opts.seed, device)
    prepare_s = time.perf_counter() - t0

    @torch.no_grad()
    def evaluate():
        bgt = torch.as_tensor(bg, device=device)
        err = [((model.render(b.origins, b.dirs, bgt, v)[0].rgb.clamp(0, 1) - b.target(bgt)) ** 2).mean().item()
               for b, v in eval_parts]
        return psnr_from_mse(float(np.mean(err)))

    budget = Budget(steps=opts.steps, time_budget=None if opts.steps else (opts.time_budget or extra["time_budget"]))
    t1 = time.perf_counter()
    history = fit_loop(stepper, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="psnr",
                       eval_every_s=max(5.0, (budget.time_budget or 60) / 10), start_step=start,
                       start_elapsed=elapsed, history=history)
    train_s = time.perf_counter() - t1
    metrics = _evaluate(model, scene, run, device, int(extra["chunk"]))
    plot_curve(run, history, "psnr")
    metrics.update(task="radiance", params=params, field_params=count_params(model.field), steps=stepper.last_step,
                   prepare_seconds=prepare_s, train_seconds=train_s,
                   rays_per_second=stepper.rays / max(train_s, 1e-9),
                   train_samples_per_ray=stepper.samples / max(stepper.rays, 1))
    run.write_metrics(metrics)
    return metrics


def _evaluate(model, scene, run, device, chunk: int, uniform: int = 0) -> dict:
    model.eval()
    return evaluate_views(model, scene, None, run, device,
                          render_fn=lambda f: render_frame(model, scene, f, device, chunk, uniform))


def _scene_of(cfg: dict):
    from fieldfit.scenes.inputs import Input

    src = cfg["source"]
    if not cfg.get("builtin") and not Path(src).exists():
        raise InputError(src, "the training images of this pronerf run are gone (it renders from them)",
                         "restore the scene folder at that path")
    inp = Input("radiance", None if cfg.get("builtin") else src, cfg.get("scene", ""), cfg.get("builtin"))
    scene = load_radiance_scene(inp, cfg.get("options", {}))
    ids = cfg["source_views"]["ids"]
    missing = [str(scene.frames[i].path) for i in ids if scene.frames[i].path and not Path(scene.frames[i].path).exists()]
    if missing:
        raise InputError(missing[0], f"source image missing ({len(missing)} of {len(ids)})",
                         "restore the scene's images; the run references them")
    return scene


def load(run: Run, device="cpu"):
    """(model with its source views attached, eval mode; scene; config)."""
    cfg = run.config()
    scene = _scene_of(cfg)
    model = attach_sources(build_model(cfg, device), scene, cfg, device)
    load_model(run, model, device)
    model.eval()
    return model, scene, cfg


def evaluate(run: Run, opts: dict) -> dict:
    """Re-render the test views from the checkpoint; metrics.json keeps its training entries."""
    device = opts.get("device", "cpu")
    with cpu_threads(run, device):
        model, scene, cfg = load(run, device)
        metrics = {**run.metrics(), **_evaluate(model, scene, run, device, int(cfg["options"].get("chunk", 4096)))}
    run.write_metrics(metrics)
    return metrics


def evaluate_uniform(run: Run, n: int = 128, device="cpu") -> dict:
    """The run's field alone, marched with n uniform samples per ray (the baseline of the bench);
    renders go to <run>/uniform<n>/renders, metrics are returned (metrics.json is untouched)."""
    from types import SimpleNamespace

    with cpu_threads(run, device):
        model, scene, cfg = load(run, device)
        return _evaluate(model, scene, SimpleNamespace(path=run.path / f"uniform{n}"), device, 1024, uniform=n)


def render_path(run: Run, path: str, out, opts: dict):
    """Render ``path`` (orbit | spiral | test) to a video file; returns the path written."""
    device = opts.get("device", "cpu")
    with cpu_threads(run, device):
        model, scene, cfg = load(run, device)
        written, note = render_video(None, scene, None, path, out, int(opts.get("frames", 60)), device,
                                     render_fn=lambda f: render_frame(model, scene, f, device))
    if note:
        print(note)
        run.log(note, echo=False)
    return written


__all__ = ["DEFAULTS", "TASKS", "build_model", "evaluate", "evaluate_uniform", "fit", "load", "render_frame",
           "render_path"]
