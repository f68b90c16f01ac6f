"""bsp: a shape as a union of convexes cut by planes (BSP-Net, METHODS.md 4), exported as ONE
watertight, manifold, low-poly mesh (mesh/convex.py), from a mesh or from another run's field.

Run folder: config.json, checkpoint.safetensors, metrics.json, mesh.ply (triangles), mesh.obj
(n-gons), convexes.ply (the same surface, faces coloured by convex), curve.png, log.
"""

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fieldfit.fields.bsp import BSPConfig, BSPField

from ..errors import InputError
from ..runs import Run
from ..trainer import Budget, fit_loop, plot_curve, save
from . import bsp_train
from .common import load_model, model_state, resume_state, seed_everything

TASKS = ("sdf",)
DEFAULTS = {"convexes": 64, "batch": 4096, "samples": 400_000, "time_budget": 300.0,
            "export_budget": 120.0, "iou_points": 1_000_000, "probe_points": 100_000, "threads": 1}
BOX = (-1.0, 1.0)  # the unit frame's cube bounds every convex
CONVENTION = ("unit frame: input bbox centre at 0, diagonal 1.9; chamfer_l2 = mean Euclidean NN distance over "
              "100k area-weighted surface samples, averaged both ways; normal_consistency = mean |n.n'| of NN pairs, "
              "both ways; iou = Monte-Carlo occupancy IoU over 1M uniform points in [-1,1]^3; faces = triangles of "
              "mesh.ply (the exact union); polygons = faces of mesh.obj (coplanar triangles merged); convexes = "
              "convexes left after pruning; planes = distinct planes they use")


PLANES_PER_CONVEX = 8  # planes = 8 x convexes unless given (512 for 64 convexes)


def options(extra: dict) -> dict:
    """Defaults and user options; ``planes`` follows ``convexes`` unless set."""
    o = {**DEFAULTS, **extra}
    o["planes"] = int(extra.get("planes") or PLANES_PER_CONVEX * int(o["convexes"]))
    return o


def schedule(o: dict) -> bsp_train.Schedule:
    sched = bsp_train.Schedule(batch=int(o["batch"]))
    if "lr" in o:
        sched.lr_planes = float(o["lr"])
    return sched


def fit(inp, opts, run: Run) -> dict:
    from fieldfit.scenes.shapes import load_shape

    if inp.task != "sdf":
        raise InputError(inp.path or inp.name, f"--method bsp fits shapes, not {inp.task} inputs")
    return fit_shape(load_shape(inp.path, inp.builtin), opts, run)


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


def train(model: BSPField, pool, probe, budget: Budget, run: Run, o: dict, rng, gen, resume: bool = False):
    """Seed (unless resuming) and fit ``model`` to ``pool``; prune. Returns (history, report)."""
    with torch_threads(o.get("threads")):
        return _train(model, pool, probe, budget, run, o, rng, gen, resume)


def _train(model, pool, probe, budget, run, o, rng, gen, resume):
    fitter = bsp_train.Fitter(model, pool, schedule(o), rng, gen)
    start, elapsed, history = 0, 0.0, None
    if resume:
        start, elapsed, history = resume_state(run, model, fitter.opt, model.T.device)
    else:
        model.seed_all(*pool.seeds(), rng)
    state = model_state(model, fitter.opt) if o.get("checkpoint", True) else None

    def evaluate():
        return bsp_train.hard_iou(model, *probe)

    history = fit_loop(fitter.step, budget, run, evaluate=evaluate, state=state, metric_name="iou",
                       eval_every_s=max(5.0, (budget.time_budget or 60) / 12), start_step=start,
                       start_elapsed=elapsed, history=history)
    x, f = pool.all()
    report = bsp_train.prune(model, x[f > 0.5])
    run.log(f"convexes used {report['convexes']} of {model.cfg.convexes} ({report['dead']} dead, "
            f"{report['redundant']} covered by others), planes used {report['planes']} of {model.cfg.planes}; "
            f"{fitter.reseeded} useless convexes re-seeded while training")
    if state is not None:  # again, with the pruned convexes (fit_loop saved before pruning)
        save(run, state, history.steps[-1] if history.steps else start,
             history.seconds[-1] if history.seconds else elapsed, history)
    return history, report


def fit_shape(shape, opts, run: Run) -> dict:
    from fieldfit.mesh.sampling import surface_samples

    t0 = time.perf_counter()
    o = options(opts.extra)
    device = torch.device(opts.device)
    gen = seed_everything(opts.seed) if device.type == "cpu" else None
    if gen is None:
        seed_everything(opts.seed)
    rng = np.random.default_rng(opts.seed)
    for d in shape.diagnostics:
        run.log(f"input: {d}")
    surf, _ = surface_samples(shape.vertices, shape.faces, 200_000, rng)
    pool = bsp_train.make_pool(shape.inside, surf, int(o["samples"]), rng, device=device)
    if not (pool.all()[1] > 0.5).any():
        raise InputError(shape.name, "no sample falls inside the shape (it encloses no volume)",
                         "pass a closed or nearly closed mesh")
    probe = probe_set(shape.inside, int(o["probe_points"]), rng, device)
    cfg = BSPConfig(dim=3, planes=int(o["planes"]), convexes=int(o["convexes"]))
    model = BSPField(cfg).to(device)
    run.write_config({"task": "sdf", "method": "bsp", "source": shape.name, "center": shape.center.tolist(),
                      "scale": shape.scale, "field": cfg.to_dict(), "options": o, "seed": opts.seed})
    prepare_s = time.perf_counter() - t0
    run.log(f"shape {shape.name}: {len(pool.all()[0]):,} labelled samples in {prepare_s:.1f}s; "
            f"{cfg.planes} planes, {cfg.convexes} convexes")
    budget = Budget(steps=opts.steps, time_budget=None if opts.steps else (opts.time_budget or o["time_budget"]))
    t1 = time.perf_counter()
    history, report = train(model, pool, probe, budget, run, o, rng, gen, resume=opts.resume)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = export(model, shape, run, o, run.path / "mesh.ply", extras=True)
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


def export(model: BSPField, shape, run: Run, o: dict, out: Path, extras: bool = False) -> dict:
    """Extract, write ``out`` (and mesh.obj, convexes.ply when ``extras``), measure against the shape."""
    from fieldfit.mesh.convex import merge_coplanar, write_face_colored_ply
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.metrics import (chamfer_l2, component_count, euler_characteristic, is_watertight,
                                       normal_consistency)

    v, f, labels, extract_s = extract(model)
    v_in, polygons = shape.from_unit(v), merge_coplanar(v, f)
    write_mesh(v_in, f, out, polygons)
    if extras:
        write_mesh(v_in, f, run.path / "mesh.obj", polygons)
        write_face_colored_ply(v_in, f, labels, run.path / "convexes.ply")
    probe = np.random.default_rng(0).uniform(-1, 1, (int(o["iou_points"]), 3))
    pin, gin = inside(probe, v, f), shape.inside(probe)
    ref = (shape.vertices, shape.faces)
    m = model.membership()[:, model.alive]
    run.log(f"mesh: {len(f)} triangles, {len(polygons)} polygons from {int(model.alive.sum())} convexes "
            f"in {extract_s:.2f}s")
    return {
        "chamfer_l2": chamfer_l2((v, f), ref), "iou": float((pin & gin).sum() / max((pin | gin).sum(), 1)),
        "normal_consistency": normal_consistency((v, f), ref), "watertight": bool(is_watertight(v, f)),
        "faces": int(len(f)), "polygons": len(polygons), "convexes": int(model.alive.sum()),
        "planes": int((m.sum(1) > 0).sum()), "planes_per_convex": float(m.sum(0).mean()),
        "components": int(component_count(v, f)), "euler": int(euler_characteristic(v, f)),
        "input_euler": shape.euler, "extraction_seconds": extract_s, "mesh": str(out),
    }


def load(run: Run, device="cpu") -> tuple[BSPField, dict]:
    cfg = run.config()
    model = BSPField(BSPConfig.from_dict(cfg["field"])).to(device)
    load_model(run, model, device)
    return model, cfg


def evaluate(run: Run, opts: dict) -> dict:
    """Mesh and metrics again from the checkpoint against the run's input shape, merged into metrics.json."""
    from fieldfit.scenes.inputs import classify
    from fieldfit.scenes.shapes import load_shape

    model, cfg = load(run, opts.get("device", "cpu"))
    inp = classify(cfg["input"])
    shape = load_shape(inp.path, inp.builtin)
    metrics = {**run.metrics(), **export(model, shape, run, options(cfg["options"]), run.path / "mesh.ply",
                                         extras=True)}
    run.write_metrics(metrics)
    return metrics


def export_mesh(run: Run, out: Path, opts: dict) -> dict:
    """Re-extract the mesh of a bsp run (its pruned convexes) to ``out``, from the checkpoint alone.

    The quality metrics stay those of metrics.json (the same convexes give the same mesh).
    """
    from fieldfit.mesh.convex import merge_coplanar
    from fieldfit.mesh.metrics import is_watertight

    model, cfg = load(run, opts.get("device", "cpu"))
    v, f, _, extract_s = extract(model)
    v = np.asarray(v) / float(cfg["scale"]) + np.asarray(cfg["center"])
    polygons = merge_coplanar(v, f)
    write_mesh(v, f, out, polygons)
    return {"mesh": str(out), "faces": int(len(f)), "polygons": len(polygons),
            "watertight": bool(is_watertight(v, f)), "convexes": int(model.alive.sum()),
            "extraction_seconds": extract_s}


def export_from_run(run: Run, out: Path, opts: dict) -> dict:
    """``fieldfit export RUN --mesh out --via bsp``: a low-poly proxy of any run (bsp_proxy.py)."""
    from .bsp_proxy import export_from_run as proxy

    return proxy(run, out, opts)
