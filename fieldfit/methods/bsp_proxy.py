"""``fieldfit export RUN --mesh out.ply --via bsp [--convexes N]``: a low-poly convex proxy of a run.

The decomposition is fitted to the occupancy of the run's field, sampled in a unit frame
(the run's box mapped to centre 0, diagonal 1.9, as for shapes), then extracted as one exact
union and written in the run's own frame:
- SDF runs (rbf, or bsp itself): inside where sdf(x) < 0 (bsp: inside the exact polytopes);
- radiance runs: inside where density > log(2) / step, the level of the run's own mesh export
  (half the light is absorbed over one marching step), inside the occupied box of its grid.
"""

import math
import time
from pathlib import Path

import numpy as np
import torch

from fieldfit.fields.bsp import BSPConfig, BSPField

from ..errors import InputError
from ..runs import Run
from ..trainer import Budget
from . import bsp_train
from .bsp import probe_set, extract, options, train, write_mesh
from .common import seed_everything

CHUNK = 1 << 16


def _chunked(fn, device):
    """numpy [N,3] -> bool [N], evaluating the torch predicate ``fn`` in chunks."""

    @torch.no_grad()
    def label(p):
        x = torch.as_tensor(np.asarray(p), dtype=torch.float32, device=device)
        return torch.cat([fn(c).reshape(-1) for c in x.split(CHUNK)]).cpu().numpy().astype(bool)

    return label


def _sdf_source(run: Run, cfg: dict, device):
    center, scale = np.asarray(cfg["center"], dtype=np.float64), float(cfg["scale"])
    if cfg.get("method") == "bsp":
        from .bsp import load

        model, _ = load(run, device)
        fn = model.hard_inside
    else:
        from . import rbf_sdf

        model, _ = rbf_sdf.load(run, device)
        model.eval()
        fn = lambda x: model.sdf(x) < 0  # noqa: E731
    return _chunked(fn, device), lambda v: v / scale + center


def _radiance_source(run: Run, cfg: dict, device):
    try:
        from . import rbf_radiance
    except ModuleNotFoundError as e:
        if "rbf_radiance" not in str(e):
            raise
        raise InputError(run.path, "radiance runs need the radiance method, not in this version yet",
                         "export an SDF run with --via bsp") from None
    model, march, _ = rbf_radiance.load(run, device)
    grid = model.grid
    box = model.occupied_box().double()
    lo = torch.maximum(box[0] - grid.cell_size.double(), grid.aabb[0].double()).cpu().numpy()
    hi = torch.minimum(box[1] + grid.cell_size.double(), grid.aabb[1].double()).cpu().numpy()
    center, scale = (lo + hi) / 2, 1.9 / float(np.linalg.norm(hi - lo))
    threshold = math.log(2.0) / march.step
    res = torch.tensor(grid.binary.shape, device=device)

    lo_t, hi_t = torch.as_tensor(lo, device=device), torch.as_tensor(hi, device=device)

    def fn(x):  # empty outside the box and in empty grid cells (the field is undefined there)
        w = x.double() / scale + torch.as_tensor(center, device=device)
        in_box = ((w >= lo_t) & (w <= hi_t)).all(1)
        w = w.float()
        cell = ((w - grid.aabb[0]) / grid.cell_size).floor().long()
        occ = grid.binary[tuple(torch.minimum(cell.clamp_min(0), res - 1).T)] & in_box
        dens = torch.zeros(len(x), device=device)
        if bool(occ.any()):
            dens[occ] = model.field.density(w[occ]).float().reshape(-1)
        return dens > threshold

    to_world = lambda v: v / scale + center  # noqa: E731
    if cfg.get("ndc"):
        from .radiance_eval import ndc_to_world
        from .rbf_radiance import _scene_of

        scene = _scene_of(cfg)
        to_world = lambda v: ndc_to_world(v / scale + center, scene)  # noqa: E731
    return _chunked(fn, device), to_world


def occupancy_source(run: Run, device):
    """(label_fn: unit points [N,3] -> bool [N], to_run_frame: unit vertices -> run frame)."""
    cfg = run.config()
    if cfg.get("task") == "sdf":
        return _sdf_source(run, cfg, device)
    if cfg.get("task") == "radiance":
        return _radiance_source(run, cfg, device)
    raise InputError(run.path, f"a {cfg.get('task')} run has no shape to approximate with convexes",
                     "pass an SDF or radiance run")


def export_from_run(run: Run, out: Path, opts: dict) -> dict:
    """Fit ``opts['convexes']`` (default 64) convexes to the run's occupancy; write ``out``.

    opts: {resolution (unused), convexes, device} from the CLI; callers may add ``steps`` or
    ``time_budget`` (default DEFAULTS["export_budget"] seconds).
    """
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.metrics import is_watertight
    from fieldfit.mesh.topology import signed_volume

    t0 = time.perf_counter()
    device = torch.device(opts.get("device") or "cpu")
    o = options({"convexes": opts.get("convexes") or 64, "checkpoint": False})
    label_fn, to_run_frame = occupancy_source(run, device)
    gen = seed_everything(0) if device.type == "cpu" else None
    rng = np.random.default_rng(0)
    surface = bsp_train.boundary_points(label_fn, 3, 64)
    if len(surface) == 0:
        raise InputError(run.path, "the run's field has no inside/outside boundary in its box", "check the run")
    pool = bsp_train.make_pool(label_fn, surface, int(o["samples"]), rng, device=device)
    probe = probe_set(label_fn, int(o["probe_points"]), rng, device)
    model = BSPField(BSPConfig(dim=3, planes=int(o["planes"]), convexes=int(o["convexes"]))).to(device)
    budget = Budget(steps=opts.get("steps"), time_budget=opts.get("time_budget") or float(o["export_budget"]))
    run.log(f"export via bsp: {o['convexes']} convexes, {o['planes']} planes, budget {budget}")
    _, report = train(model, pool, probe, budget, run, o, rng, gen)
    v, f, _, extract_s = extract(model)
    pts = rng.uniform(-1, 1, (int(o["iou_points"]), 3))
    pin, gin = inside(pts, v, f), label_fn(pts)
    v_out = to_run_frame(v)
    if signed_volume(v_out, f) < 0:  # a mirroring frame map (NDC) flips the orientation
        f = np.ascontiguousarray(f[:, ::-1])
    write_mesh(v_out, f, out)
    return {"mesh": str(out), "faces": int(len(f)), "watertight": bool(is_watertight(v_out, f)),
            "iou": float((pin & gin).sum() / max((pin | gin).sum(), 1)), "convexes": report["convexes"],
            "planes": report["planes"], "extraction_seconds": extract_s, "seconds": time.perf_counter() - t0,
            "convention": "iou against the run's own occupancy over 1M uniform points of its unit frame"}
