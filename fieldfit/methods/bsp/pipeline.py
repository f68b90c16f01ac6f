"""bsp: a shape as a union of convexes cut by planes (BSP-Net, METHODS.md 4), exported as ONE watertight,
manifold, low-poly mesh (mesh/convex.py), from a mesh or from another run's field (``proxy``).

Run folder: config.json, checkpoint.safetensors, metrics.json, mesh.ply (triangles), mesh.obj (n-gons),
convexes.ply (the same surface, faces coloured by convex), curve.png, log.
"""

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fieldfit import dist
from fieldfit.errors import InputError
from fieldfit.fields.bsp import BSPField, BSPFieldConfig
from fieldfit.model import Model, Occupancy, model_tensors
from fieldfit.optim import seed_everything
from fieldfit.runs import Run, check_weights, load_model, model_state
from fieldfit.tasks.shapes import CONVENTION as SHAPE_CONVENTION
from fieldfit.tasks.shapes import load_source_shape, mesh_figures, shape_metrics
from fieldfit.trainer import Budget, fit_loop, plot_curve, resume_state, save

from . import train as bsp_train
from .config import BSPConfig

BOX = (-1.0, 1.0)  # the unit frame's cube bounds every convex
CONVENTION = (SHAPE_CONVENTION + "; faces = triangles of mesh.ply (the union, touching convexes pulled 1e-5 of the "
              "diagonal apart); watertight, components, euler = mesh.ply as other tools load it (reload: trimesh's "
              "default load and a merge of vertices closer than 1e-5 of the diagonal); polygons = faces of mesh.obj "
              "(coplanar triangles merged); convexes = convexes left after pruning; planes = distinct planes they use")


def schedule(cfg: BSPConfig) -> bsp_train.Schedule:
    sched = bsp_train.Schedule(batch=int(cfg.batch))
    if cfg.lr is not None:
        sched.lr_planes = float(cfg.lr)
    return sched


def fit_job(job) -> dict:
    from fieldfit.scenes.shapes import load_shape

    cfg = BSPConfig.from_dict(job.saved["config"]).replace(**job.options) if job.resume else \
        BSPConfig.for_shape(**job.options)
    return fit_shape(load_shape(job.input.path, job.input.builtin), cfg, job)


def probe_set(label_fn, n: int, rng, device):
    x = rng.uniform(-1, 1, (n, 3))
    return (torch.as_tensor(x, dtype=torch.float32, device=device),
            torch.as_tensor(label_fn(x), dtype=torch.float32, device=device))


@contextmanager
def torch_threads(n):
    """Run the block with n torch threads (None: unchanged), then restore the previous number.

    A BSP step is a chain of small [N,P] kernels; on the shared 2-core machine (load ~6) one
    thread made 1630 steps in 120 s where two made 540 (spot.obj), barrier waits dominating.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(model: BSPField, pool, probe, budget: Budget, run: Run, cfg: BSPConfig, rng, gen, resume: bool = False):
    """Seed (unless resuming) and fit ``model`` to ``pool``; prune. Returns (history, report)."""
    with torch_threads(cfg.threads):
        return _train(model, pool, probe, budget, run, cfg, rng, gen, resume)


def _train(model, pool, probe, budget, run, cfg: BSPConfig, rng, gen, resume):
    fitter = bsp_train.Fitter(model, pool, schedule(cfg), rng, gen)
    start, elapsed, history = 0, 0.0, None
    if resume:
        start, elapsed, history = resume_state(run, model, fitter.opt, model.T.device)
    else:
        model.seed_all(*pool.seeds(), rng)
    state = model_state(model, fitter.opt) if cfg.checkpoint else None

    def evaluate():
        return bsp_train.hard_iou(model, *probe)

    history = fit_loop(fitter.step, budget, run, evaluate=evaluate, state=state, metric_name="iou",
                       eval_every_s=budget.eval_every(12), start_step=start,
                       start_elapsed=elapsed, history=history, unit="points")
    x, f = pool.all()
    report = bsp_train.prune(model, x[f > 0.5])
    run.log(f"convexes used {report['convexes']} of {model.cfg.convexes} ({report['dead']} dead, "
            f"{report['redundant']} covered by others), planes used {report['planes']} of {model.cfg.planes}; "
            f"{fitter.reseeded} useless convexes re-seeded while training")
    if state is not None:  # again, with the pruned convexes (fit_loop saved before pruning)
        save(run, state, history.steps[-1] if history.steps else start,
             history.seconds[-1] if history.seconds else elapsed, history)
    return history, report


def fit_shape(shape, cfg: BSPConfig, job) -> dict:
    from fieldfit.mesh.sampling import surface_samples

    t0 = time.perf_counter()
    run, device = job.run, torch.device(job.device)
    gen = seed_everything(job.seed) if device.type == "cpu" else None
    if gen is None:
        seed_everything(job.seed)
    rng = np.random.default_rng(job.seed)
    for d in shape.diagnostics:
        run.log(f"input: {d}")
    surf, _ = surface_samples(shape.vertices, shape.faces, 200_000, rng)
    pool = bsp_train.make_pool(shape.inside, surf, int(cfg.train_points), rng, device=device)
    if not (pool.all()[1] > 0.5).any():
        raise InputError(shape.name, "no sample falls inside the shape (it encloses no volume)",
                         "pass a closed or nearly closed mesh")
    probe = probe_set(shape.inside, int(cfg.probe_points), rng, device)
    fcfg = BSPFieldConfig(dim=3, planes=int(cfg.planes), convexes=int(cfg.convexes))
    model = BSPField(fcfg).to(device)
    if job.resume:  # the checkpoint must fit this model before the run's config is rewritten (loaded in train)
        check_weights(run, model)
    run.write_config({"task": "sdf", "method": "bsp", "source": shape.name, "center": shape.center.tolist(),
                      "scale": shape.scale, "field": fcfg.to_dict(), "config": cfg.to_dict(), "seed": job.seed})
    prepare_s = time.perf_counter() - t0
    run.log(f"shape {shape.name}: {len(pool.all()[0]):,} labelled samples in {prepare_s:.1f}s; "
            f"{fcfg.planes} planes, {fcfg.convexes} convexes")
    t1 = time.perf_counter()
    dist.fork_generator(gen, job.seed)  # each rank its own batches (rank 0 as in one process)
    history, report = train(model, pool, probe, job.budget, run, cfg, rng, gen, resume=job.resume)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = export(model, shape, run, cfg, run.path / "mesh.ply", extras=True)
    plot_curve(run, history, "iou")
    metrics.update(task="sdf", steps=history.steps[-1] if history.steps else 0, prepare_seconds=prepare_s,
                   train_seconds=train_s, export_seconds=time.perf_counter() - t2, convention=CONVENTION)
    run.write_metrics(metrics)
    return metrics


def extract(model: BSPField) -> tuple:
    """Polytopes of the live convexes -> exact union. Returns (v, f, labels, seconds)."""
    from fieldfit.mesh.convex import convex_polytope, union_mesh

    t = time.perf_counter()
    alive = torch.nonzero(model.alive).flatten().tolist()
    polys = [convex_polytope(model.convex_planes(j), BOX) for j in alive]
    v, f, labels = union_mesh(polys, with_labels=True)
    if len(f) == 0:
        raise FloatingPointError("the BSP fit is empty (no convex covers the shape): run longer or with another --seed")
    return v, f, np.asarray(alive)[labels], time.perf_counter() - t


def write_mesh(v, f, out: Path, polygons: list | None = None) -> None:
    """.obj: n-gons (coplanar triangles merged, or ``polygons``); other formats: triangles."""
    from fieldfit.mesh.convex import merge_coplanar, write_polygon_obj
    from fieldfit.mesh.export import export_mesh

    out = Path(out)
    if out.suffix.lower() == ".obj":
        write_polygon_obj(v, merge_coplanar(v, f) if polygons is None else polygons, out)
    else:
        export_mesh(v, f, out)


def export(model: BSPField, shape, run: Run, cfg: BSPConfig, out: Path, extras: bool = False) -> dict:
    """Extract, write ``out`` (and mesh.obj, convexes.ply when ``extras``), measure against the shape. Watertight,
    components and Euler number are those other tools find in ``out`` (``tasks.shapes.reloaded``)."""
    from fieldfit.mesh.convex import merge_coplanar, write_face_colored_ply

    v, f, labels, extract_s = extract(model)
    v_in, polygons = shape.from_unit(v), merge_coplanar(v, f)
    write_mesh(v_in, f, out, polygons)
    if extras:
        write_mesh(v_in, f, run.path / "mesh.obj", polygons)
        write_face_colored_ply(v_in, f, labels, run.path / "convexes.ply")
    m = model.membership()[:, model.alive]
    run.log(f"mesh: {len(f)} triangles, {len(polygons)} polygons from {int(model.alive.sum())} convexes "
            f"in {extract_s:.2f}s")
    return {**shape_metrics(v, f, shape, cfg.iou_points, path=out), "polygons": len(polygons),
            "convexes": int(model.alive.sum()), "planes": int((m.sum(1) > 0).sum()),
            "planes_per_convex": float(m.sum(0).mean()), "extraction_seconds": extract_s, "mesh": str(out)}


def convex_parts(field: BSPField, to_world) -> list:
    """[(vertices [V,3], faces [F,3])]: the hull of each live convex's polytope (``mesh.parts.convex_part``), its
    corners mapped by ``to_world`` (unit frame -> the run's world frame); empty convexes left out."""
    from fieldfit.mesh.convex import convex_polytope
    from fieldfit.mesh.parts import convex_part

    parts = []
    for j in torch.nonzero(field.alive).flatten().tolist():
        v, _ = convex_polytope(field.convex_planes(j), BOX)
        if len(v):
            v, f = convex_part(to_world(v))
            if len(f):
                parts.append((v, f))
    return parts


class BSPRun(Model):
    """A fitted convex decomposition: its exact polytopes, their union as a mesh, the convexes for the viewer."""

    task = "sdf"

    def __init__(self, run: Run, config: dict, device="cpu", trained: bool = True):
        super().__init__(run, config, device)
        self.field = BSPField(BSPFieldConfig.from_dict(config["field"])).to(self.device)
        if trained:
            load_model(run, self.field, self.device)
        self.cfg = BSPConfig.from_dict(config.get("config", {}))
        self.center, self.scale = np.asarray(config["center"], np.float64), float(config["scale"])

    def from_unit(self, v):
        return np.asarray(v) / self.scale + self.center

    def mesh(self):
        """(vertices in the input's frame, faces, convex of each face) of the exact union."""
        v, f, labels, _ = extract(self.field)
        return self.from_unit(v), f, labels

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """The union of the pruned convexes (the same as mesh.ply), from the checkpoint alone; ``resolution`` is
        not used (the mesh is exact)."""
        from fieldfit.mesh.convex import merge_coplanar

        v, f, _, extract_s = extract(self.field)
        v = self.from_unit(v)
        polygons = merge_coplanar(v, f)
        write_mesh(v, f, path, polygons)
        return {"mesh": str(path), **mesh_figures(v, f, path), "polygons": len(polygons),
                "convexes": int(self.field.alive.sum()), "extraction_seconds": extract_s}

    def point_cloud(self, max_points: int = 200_000):
        """``max_points`` samples of the union with normals, coloured by convex (``tasks.shapes.surface_cloud``)."""
        from fieldfit.tasks.shapes import surface_cloud

        v, f, labels = self.mesh()
        return surface_cloud(v, f, int(max_points), labels)

    def parts(self) -> list:
        """One closed convex mesh per live convex (``convex_parts``), in the input's frame."""
        return convex_parts(self.field, self.from_unit)

    def occupancy(self) -> Occupancy:
        scale, center = self.scale, torch.as_tensor(self.center, dtype=torch.float32)

        def inside(x):
            return self.field.hard_inside((x.float() - center.to(x.device)) * scale)

        return Occupancy(inside, self.center, scale, str(self.device))

    def sync(self, tensors: dict) -> None:
        self.field.load_state_dict(model_tensors(tensors))

    def evaluate(self) -> dict:
        """Mesh and metrics against the input shape again, merged into metrics.json."""
        shape = load_source_shape(self.config)
        metrics = {**self.run.metrics(), **export(self.field, shape, self.run, self.cfg, self.run.path / "mesh.ply",
                                                  extras=True)}
        self.run.write_metrics(metrics)
        return metrics


__all__ = ["BOX", "BSPRun", "CONVENTION", "convex_parts", "export", "extract", "fit_job", "fit_shape", "probe_set",
           "train", "write_mesh"]
