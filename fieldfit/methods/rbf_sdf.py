"""rbf on a shape: fit sdf(x) to samples of a mesh (or an analytic shape); export mesh.ply.

Conventions written into metrics.json: the shape is scaled so its bounding-box diagonal is
1.9 (centre 0); Chamfer is the mean Euclidean nearest-neighbour distance over 100k surface
samples, averaged both ways, in that frame; IoU is by Monte-Carlo occupancy in [-1,1]^3.
"""

import time

import numpy as np
import torch

from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.gaussian_rbf import FieldConfig, SDFRBF
from fieldfit.scenes.shapes import Shape

from ..runs import Run
from ..trainer import Budget, fit_loop, plot_curve
from .common import count_params, load_model, make_adam, model_state, resume_state, seed_everything, set_lr

DEFAULTS = {"batch": 2048, "lr": 5e-3, "lr_final": 0.01, "samples": 2_000_000, "time_budget": 60.0,
            "resolution": 256, "iou_points": 1_000_000, "thin_frac": 0.1}
CONVENTION = ("unit frame: input bbox centre at 0, diagonal 1.9; chamfer_l2 = mean Euclidean NN distance over "
              "100k area-weighted surface samples, averaged both ways; normal_consistency = mean |n.n'| of NN pairs, "
              "both ways; iou = Monte-Carlo occupancy IoU over 1M uniform points in [-1,1]^3")


def default_config(extra: dict) -> FieldConfig:
    grid = GridConfig(kind=extra.get("grid", "dense"), levels=extra.get("levels", 4),
                      base_res=extra.get("base_res", 16), max_res=extra.get("max_res", 128),
                      features=extra.get("features", 2), table_log2=extra.get("table_log2", 19),
                      init_scale=extra.get("init_scale", 1e-4), volume_max_res=extra.get("volume_max_res", 0),
                      fine_levels=extra.get("fine_levels", 0), fine_max_res=extra.get("fine_max_res", 0))
    return FieldConfig(grid=grid, decoder=extra.get("decoder", "rbf"), units=extra.get("units", 64),
                       kernel=extra.get("kernel", "gaussian"), hidden=extra.get("hidden", 64),
                       layers=extra.get("layers", 2))


def sdf_loss(pred, gt):
    """GNF's relative squared error: (pred - gt)^2 / (|gt| + 0.1) favours the surface."""
    return ((pred - gt) ** 2 / (gt.abs() + 0.1)).mean()


def fit(shape: Shape, opts, run: Run) -> dict:
    t0 = time.perf_counter()
    extra = {**DEFAULTS, **opts.extra}
    device = torch.device(opts.device)
    gen = seed_everything(opts.seed)
    for d in shape.diagnostics:
        run.log(f"input: {d}")
    rng = np.random.default_rng(opts.seed)
    sampling = {"thin_frac": float(extra["thin_frac"])} if extra.get("thin_frac") else {}
    pts, sdf = shape.training_set(int(extra["samples"]), rng, **sampling)
    pts, sdf = torch.from_numpy(pts).to(device), torch.from_numpy(sdf).to(device)
    cfg = default_config(extra)
    model = SDFRBF(cfg, device=device).to(device)
    opt = make_adam([{"params": model.parameters(), "lr": extra["lr"]}])
    run.write_config({"task": "sdf", "method": "rbf", "source": shape.name, "center": shape.center.tolist(),
                      "scale": shape.scale, "field": cfg.to_dict(), "options": extra, "seed": opts.seed})
    params = count_params(model)
    prepare_s = time.perf_counter() - t0
    run.log(f"shape {shape.name}: {len(pts):,} samples in {prepare_s:.1f}s; field {params:,} parameters")
    start, elapsed, history = (resume_state(run, model, opt, device) if opts.resume else (0, 0.0, None))
    n = len(pts)

    def step(i, progress):
        set_lr(opt, progress, extra["lr_final"])
        idx = torch.randint(0, n, (extra["batch"],), device=device, generator=gen if device.type == "cpu" else None)
        loss = sdf_loss(model.sdf(pts[idx]), sdf[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    eval_pts = torch.from_numpy(rng.uniform(-1, 1, (100_000, 3)).astype(np.float32)).to(device)
    eval_in = torch.from_numpy(shape.inside(eval_pts.cpu().numpy())).to(device)

    @torch.no_grad()
    def evaluate():  # quick occupancy IoU on a fixed probe set
        pred = model.sdf(eval_pts) < 0
        return ((pred & eval_in).sum() / (pred | eval_in).sum().clamp_min(1)).item()

    budget = Budget(steps=opts.steps, time_budget=None if opts.steps else (opts.time_budget or extra["time_budget"]))
    t1 = time.perf_counter()
    history = fit_loop(step, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="iou",
                       eval_every_s=extra.get("eval_every") or max(5.0, (budget.time_budget or 60) / 12), start_step=start,
                       start_elapsed=elapsed, history=history)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = export(model, shape, run, extra, device, run.path / "mesh.ply")
    plot_curve(run, history, "iou")
    metrics.update(task="sdf", params=params, steps=history.steps[-1] if history.steps else start,
                   prepare_seconds=prepare_s, train_seconds=train_s, export_seconds=time.perf_counter() - t2,
                   convention=CONVENTION)
    run.write_metrics(metrics)
    return metrics


def export(model, shape: Shape, run: Run, extra: dict, device, out) -> dict:
    """Marching cubes -> closed, oriented, fragment-free mesh in the input frame; metrics."""
    from fieldfit.mesh.export import export_mesh
    from fieldfit.mesh.extract import extract_sdf_mesh, remove_fragments
    from fieldfit.mesh.metrics import chamfer_l2, component_count, euler_characteristic, is_watertight, normal_consistency

    from ..errors import FitError

    model.eval()
    try:
        mesh = extract_sdf_mesh(model.sdf, resolution=int(extra["resolution"]), device=device)
    except ValueError as e:
        raise FitError(f"{run.path}: no surface to export ({e}); train longer (--time-budget / --steps)") from None
    v, f, report = remove_fragments(np.asarray(mesh.vertices), np.asarray(mesh.faces), keep=None)
    run.log(f"mesh: {report['components_before']} components -> {report['components_after']} after removing "
            f"fragments (input has {shape.components})")
    export_mesh(shape.from_unit(v), f, out)
    rng = np.random.default_rng(0)
    probe = rng.uniform(-1, 1, (int(extra["iou_points"]), 3))
    from fieldfit.mesh.inside import inside

    pin, gin = inside(probe, v, f), shape.inside(probe)
    iou = float((pin & gin).sum() / max((pin | gin).sum(), 1))
    ref = (shape.vertices, shape.faces)
    return {
        "chamfer_l2": chamfer_l2((v, f), ref), "iou": iou, "normal_consistency": normal_consistency((v, f), ref),
        "watertight": bool(is_watertight(v, f)), "faces": int(len(f)), "components": int(component_count(v, f)),
        "euler": int(euler_characteristic(v, f)), "input_euler": shape.euler, "input_components": shape.components,
        "resolution": int(extra["resolution"]), "mesh": str(out),
    }


def load(run: Run, device="cpu") -> tuple[SDFRBF, dict]:
    cfg = run.config()
    model = SDFRBF(FieldConfig.from_dict(cfg["field"]), device=device).to(device)
    load_model(run, model, device)
    return model, cfg
