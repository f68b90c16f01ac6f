"""``fieldfit export RUN --mesh out.ply --via bsp [--convexes N]``: a low-poly convex proxy of any run
(``--parts``: its convexes, one closed mesh each).

The decomposition is fitted to the run's occupancy (``Model.occupancy``: rbf SDF runs inside where sdf < 0;
bsp runs inside their exact polytopes; radiance runs inside where the density exceeds the level of their own
mesh export, within the occupied box; dnmp runs inside the union of their opaque primitives), sampled in the
run's unit frame (the geometry's box at centre 0, diagonal 1.9, as for shapes), then extracted as one exact
union and written in the run's own world frame.
"""

import time
from pathlib import Path

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.fields.bsp import BSPField, BSPFieldConfig
from fieldfit.optim import seed_everything
from fieldfit.trainer import Budget

from . import train as bsp_train
from .config import BSPConfig
from .pipeline import convex_parts, extract, probe_set, train, write_mesh

CHUNK = 1 << 16


def unit_labels(occ):
    """numpy unit-frame points [N,3] -> bool [N]: the Occupancy's inside, evaluated in chunks on its device."""
    center = torch.as_tensor(occ.center, dtype=torch.float64, device=occ.device)

    @torch.no_grad()
    def label(p):
        x = torch.as_tensor(np.asarray(p), dtype=torch.float64, device=occ.device) / occ.scale + center
        return torch.cat([occ.inside(c).reshape(-1) for c in x.split(CHUNK)]).cpu().numpy().astype(bool)

    return label


def fit_proxy(model, convexes: int | None = None, budget: Budget | None = None) -> dict:
    """Fit ``convexes`` (default 64) convexes to the occupancy of ``model`` (a ``fieldfit.model.Model``) within
    ``budget`` (default 120 s). Returns field (the ``BSPField``), occ (the run's ``Occupancy``), label_fn, rng, cfg,
    report (the training's), start (its ``perf_counter``)."""
    t0 = time.perf_counter()
    run = model.run
    occ = model.occupancy()
    device = torch.device(occ.device)
    cfg = BSPConfig.for_shape(convexes=int(convexes or 64), checkpoint=False)
    label_fn = unit_labels(occ)
    gen = seed_everything(0) if device.type == "cpu" else None
    rng = np.random.default_rng(0)
    surface = bsp_train.boundary_points(label_fn, 3, 64)
    if len(surface) == 0:
        raise InputError(run.path, "the run's field has no inside/outside boundary in its box",
                         "train the run longer (nothing to approximate)")
    pool = bsp_train.make_pool(label_fn, surface, int(cfg.train_points), rng, device=device)
    probe = probe_set(label_fn, int(cfg.probe_points), rng, device)
    field = BSPField(BSPFieldConfig(dim=3, planes=int(cfg.planes), convexes=int(cfg.convexes))).to(device)
    budget = budget or Budget(time_budget=120.0)
    run.log(f"export via bsp: {cfg.convexes} convexes, {cfg.planes} planes, budget {budget.describe()}")
    _, report = train(field, pool, probe, budget, run, cfg, rng, gen)
    return {"field": field, "occ": occ, "label_fn": label_fn, "rng": rng, "cfg": cfg, "report": report, "start": t0}


def export_via_bsp(model, out: Path, convexes: int | None = None, budget: Budget | None = None) -> dict:
    """``fit_proxy``, then write its union to ``out``; return its figures (watertight, components, Euler number:
    ``out`` as other tools load it, ``tasks.shapes.reloaded``)."""
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.topology import signed_volume
    from fieldfit.tasks.shapes import mesh_figures

    fitted = fit_proxy(model, convexes, budget)
    occ, cfg, rng, report = fitted["occ"], fitted["cfg"], fitted["rng"], fitted["report"]
    v, f, _, extract_s = extract(fitted["field"])
    pts = rng.uniform(-1, 1, (int(cfg.iou_points), 3))
    pin, gin = inside(pts, v, f), fitted["label_fn"](pts)
    v_out = occ.world(v / occ.scale + occ.center)
    if signed_volume(v_out, f) < 0:  # a mirroring frame map (NDC) flips the orientation
        f = np.ascontiguousarray(f[:, ::-1])
    write_mesh(v_out, f, out)
    return {"mesh": str(out), **mesh_figures(v_out, f, out),
            "iou": float((pin & gin).sum() / max((pin | gin).sum(), 1)), "convexes": report["convexes"],
            "planes": report["planes"], "extraction_seconds": extract_s,
            "seconds": time.perf_counter() - fitted["start"],
            "convention": "iou against the run's own occupancy over 1M uniform points of its unit frame"}


def parts_via_bsp(model, convexes: int | None = None, budget: Budget | None = None) -> list:
    """``fit_proxy``, then its convexes as closed convex meshes in the run's world frame (``pipeline.convex_parts``)."""
    fitted = fit_proxy(model, convexes, budget)
    occ = fitted["occ"]
    return convex_parts(fitted["field"], lambda v: occ.world(v / occ.scale + occ.center))


__all__ = ["export_via_bsp", "fit_proxy", "parts_via_bsp", "unit_labels"]
