"""rbf on a shape: fit sdf(x) to samples of a mesh (or an analytic shape); export mesh.ply.

Conventions written into metrics.json (``tasks.shapes.CONVENTION``): the shape is scaled so its bounding-box
diagonal is 1.9 (centre 0); Chamfer is the mean Euclidean nearest-neighbour distance over 100k surface samples,
averaged both ways, in that frame; IoU is by Monte-Carlo occupancy in [-1,1]^3.
"""

import time

import numpy as np
import torch

from fieldfit import dist
from fieldfit.errors import FitError
from fieldfit.fields.gaussian_rbf import SDFRBF, FieldConfig
from fieldfit.model import Model, Occupancy, model_tensors
from fieldfit.optim import count_params, make_adam, seed_everything, set_lr
from fieldfit.runs import Run, load_model, model_state
from fieldfit.tasks.shapes import CONVENTION, load_source_shape, mesh_figures, shape_metrics
from fieldfit.trainer import fit_loop, plot_curve, resume_state

from .config import SDFConfig, field_for_device

PROBE_POINTS = 100_000  # uniform points of the in-training IoU


def sdf_loss(pred, gt):
    """GNF's relative squared error: (pred - gt)^2 / (|gt| + 0.1) favours the surface."""
    return ((pred - gt) ** 2 / (gt.abs() + 0.1)).mean()


def fit(job) -> dict:
    from fieldfit.scenes.shapes import load_shape
    from fieldfit.tasks.sdf_samples import prepare

    t0 = time.perf_counter()
    run, device = job.run, torch.device(job.device)
    shape = load_shape(job.input.path, job.input.builtin)
    cfg = SDFConfig.from_dict(job.saved["config"]).replace(**job.options) if job.resume else \
        SDFConfig.for_shape(**job.options)
    gen = seed_everything(job.seed)
    dist.fork_generator(gen, job.seed)  # each rank its own batches (rank 0 as in one process)
    for d in shape.diagnostics:
        run.log(f"input: {d}")
    load_s = time.perf_counter() - t0
    sampling = {"thin_frac": float(cfg.thin_frac)} if cfg.thin_frac else {}
    prep = prepare(shape, int(cfg.train_points), job.seed, PROBE_POINTS, **sampling)
    t_model = time.perf_counter()
    pts, sdf = torch.from_numpy(prep.points).to(device), torch.from_numpy(prep.sdf).to(device)
    eval_pts, eval_in = torch.from_numpy(prep.probe).to(device), torch.from_numpy(prep.probe_inside).to(device)
    fcfg = field_for_device(cfg.field_config(), device, run)
    model = SDFRBF(fcfg, device=device).to(device)
    opt = make_adam([{"params": model.parameters(), "lr": cfg.lr}])
    params = count_params(model)
    prepare_s = time.perf_counter() - t0
    phases = {"load": load_s, **prep.seconds, "model": time.perf_counter() - t_model}
    run.log(f"shape {shape.name}: {len(pts):,} samples in {prepare_s:.1f}s"
            f"{' (from the cache)' if prep.cached else ''}; field {params:,} parameters")
    run.log("prepare: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    start, elapsed, history = resume_state(run, model, opt, device) if job.resume else (0, 0.0, None)
    # after the checkpoint has loaded into this model: a resume that cannot go on leaves the run as it was
    run.write_config({"task": "sdf", "method": "rbf", "source": shape.name, "center": shape.center.tolist(),
                      "scale": shape.scale, "field": fcfg.to_dict(), "config": cfg.to_dict(), "seed": job.seed})
    n, batch = len(pts), dist.share(cfg.batch)

    def step(i, progress):
        lr = set_lr(opt, progress, cfg.lr_final)
        idx = torch.randint(0, n, (batch,), device=device, generator=gen if device.type == "cpu" else None)
        loss = sdf_loss(model.sdf(pts[idx]), sdf[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "batch": batch, "lr": lr}

    @torch.no_grad()
    def evaluate():  # quick occupancy IoU on a fixed probe set
        pred = model.sdf(eval_pts) < 0
        return ((pred & eval_in).sum() / (pred | eval_in).sum().clamp_min(1)).item()

    budget = job.budget
    t1 = time.perf_counter()
    history = fit_loop(step, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="iou",
                       eval_every_s=cfg.eval_every or budget.eval_every(12), start_step=start,
                       start_elapsed=elapsed, history=history, unit="points")
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    v, f = extract(model, cfg.resolution, device, run)
    metrics = write_mesh(v, f, shape, run.path / "mesh.ply")
    metrics.update(shape_metrics(v, f, shape, cfg.iou_points), resolution=int(cfg.resolution))
    plot_curve(run, history, "iou")
    metrics.update(task="sdf", params=params, steps=history.steps[-1] if history.steps else start,
                   prepare_seconds=prepare_s, train_seconds=train_s, export_seconds=time.perf_counter() - t2,
                   prepare_phases={k: round(v, 4) for k, v in phases.items()}, samples_cached=prep.cached,
                   convention=CONVENTION)
    run.write_metrics(metrics)
    return metrics


def extract(model: SDFRBF, resolution: int, device, run: Run, log: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes -> closed, oriented, fragment-free mesh (v, f) in the unit frame (``log``: say in the run's
    log how many fragments were removed)."""
    from fieldfit.mesh.extract import extract_sdf_mesh, remove_fragments

    model.eval()
    try:
        mesh = extract_sdf_mesh(model.sdf, resolution=int(resolution), device=device)
    except ValueError as e:
        raise FitError(f"{run.path}: no surface to export ({e}); train longer (--time-budget / --steps)") from None
    v, f, report = remove_fragments(np.asarray(mesh.vertices), np.asarray(mesh.faces), keep=None)
    if log:
        run.log(f"mesh: {report['components_before']} components -> {report['components_after']} after removing "
                f"fragments")
    return v, f


def write_mesh(v, f, frame, out) -> dict:
    """Write the unit-frame mesh (v, f) in the input's frame (``frame.from_unit``) to ``out``."""
    from fieldfit.mesh.export import export_mesh

    export_mesh(frame.from_unit(v), f, out)
    return {"mesh": str(out)}


class _Frame:
    """The unit frame of a run (centre, scale) without its source shape."""

    def __init__(self, config: dict):
        self.center, self.scale = np.asarray(config["center"], np.float64), float(config["scale"])

    def from_unit(self, v):
        return np.asarray(v) / self.scale + self.center


class SDFModel(Model):
    """A fitted signed-distance field: ``sdf(x)`` in the unit frame, meshes in the input's frame."""

    task = "sdf"

    def __init__(self, run: Run, config: dict, device="cpu", trained: bool = True):
        super().__init__(run, config, device)
        self.field = SDFRBF(FieldConfig.from_dict(config["field"]), device=self.device).to(self.device)
        if trained:
            load_model(run, self.field, self.device)
        self.field.eval()
        self.cfg = SDFConfig.from_dict(config.get("config", {}))
        self.frame = _Frame(config)

    def mesh(self, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(vertices in the input's frame, faces) of the zero level set."""
        v, f = extract(self.field, resolution or self.cfg.resolution, self.device, self.run, log=False)
        return self.frame.from_unit(v), f

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """The mesh from the checkpoint alone (the source shape is not needed)."""
        res = int(resolution or self.cfg.resolution)
        v, f = extract(self.field, res, self.device, self.run)
        return {**write_mesh(v, f, self.frame, path), **mesh_figures(v, f), "resolution": res}

    def point_cloud(self, max_points: int = 200_000):
        """``max_points`` samples of the zero level set's mesh with normals (``tasks.shapes.surface_cloud``)."""
        from fieldfit.tasks.shapes import surface_cloud

        v, f = self.mesh()
        return surface_cloud(v, f, int(max_points))

    def occupancy(self) -> Occupancy:
        """sdf < 0, in the fit's own unit frame (field space: the input's frame)."""
        scale, center = self.frame.scale, torch.as_tensor(self.frame.center, dtype=torch.float32)

        @torch.no_grad()
        def inside(x):
            return self.field.sdf((x.float() - center.to(x.device)) * scale) < 0

        return Occupancy(inside, self.frame.center, scale, str(self.device))

    def evaluate(self) -> dict:
        """Mesh and metrics against the source shape again, merged into metrics.json (rewrites mesh.ply)."""
        shape = load_source_shape(self.config)
        v, f = extract(self.field, self.cfg.resolution, self.device, self.run)
        m = write_mesh(v, f, shape, self.run.path / "mesh.ply")
        m.update(shape_metrics(v, f, shape, self.cfg.iou_points), resolution=int(self.cfg.resolution))
        metrics = {**self.run.metrics(), **m}
        self.run.write_metrics(metrics)
        return metrics

    def sync(self, tensors: dict) -> None:
        self.field.load_state_dict(model_tensors(tensors))


def load(run: Run, device="cpu", trained: bool = True) -> SDFModel:
    return SDFModel(run, run.config(), device, trained)


__all__ = ["SDFModel", "extract", "fit", "load", "sdf_loss"]
