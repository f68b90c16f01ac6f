"""Where DNMP puts primitives: a point cloud of the scene's surface, voxelised at two sizes.

Point sources (``scene_points``; ``--points`` auto | scene | carve | rbf | RUN):
  - scene: the scene's own points (nerfstudio ``ply_file_path``, points in the capture); auto
    takes them when the scene has them;
  - RUN: a finished rbf run of the same scene (its folder): its density, as for rbf, without
    fitting again;
  - rbf (auto otherwise): a short rbf radiance fit of the same scene (``rbf_points``, ``points_frac``
    of the budget; with a budget in steps, that many steps, at least 64); the points are the centres of
    occupancy-grid cells where one marching step has opacity > 0.1 (a short fit is still faint:
    1/2 kept too few cells on lego), or > half the largest such opacity when the fit is fainter
    still, only those with an empty 6-neighbour; auto falls back to carving when that finds
    fewer than 100 points in a scene with alpha;
  - carve (scenes with alpha, on request): space carving. A grid of cells (half the fine voxel)
    over the scene's box; a cell is removed when its centre projects into a training view where
    the alpha (dilated by a 3x3 max, so thin parts survive one-pixel misalignments) is below 0.1.
    The points are the remaining cells with a removed 6-neighbour plus a shell ``shell`` cells
    deep. Fast and complete, but the visual hull fills concavities, and colours painted on the
    hull do not agree between views: on lego at 200x200 it plateaued near 19.5 dB where the rbf
    points reached 22 dB within a similar budget (METHODS.md 2.7 pitfall 1: geometry bounds
    rendering quality).
Voxels take the grid centre (the paper's ``--use_voxel_center``).
"""

import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from fieldfit.errors import InputError


def _surface(occ: torch.Tensor, shell: int) -> torch.Tensor:
    """Cells of ``occ`` [N,N,N] within ``shell`` cells of an empty one (6-neighbourhood steps)."""
    empty = ~occ
    near = torch.zeros_like(occ)
    grown = empty.clone()
    for _ in range(shell + 1):
        pad = torch.nn.functional.pad(grown[None, None].float(), (1, 1, 1, 1, 1, 1), value=1.0)[0, 0]
        nb = (pad[:-2, 1:-1, 1:-1] + pad[2:, 1:-1, 1:-1] + pad[1:-1, :-2, 1:-1] + pad[1:-1, 2:, 1:-1]
              + pad[1:-1, 1:-1, :-2] + pad[1:-1, 1:-1, 2:]) > 0
        near |= nb & occ
        grown = grown | nb
    return near


def carve_points(scene, cell: float, shell: int = 1, max_views: int = 60, device="cpu") -> np.ndarray:
    """Surface points [N,3] (numpy, host) of the visual hull of the training alphas (see the module doc), carved on
    ``device`` (the alphas are moved there one view at a time)."""
    lo, hi = np.asarray(scene.aabb[0], np.float64), np.asarray(scene.aabb[1], np.float64)
    res = np.maximum(np.ceil((hi - lo) / cell).astype(int), 2)
    axes = [torch.tensor(lo[a] + (np.arange(res[a]) + 0.5) * cell, device=device) for a in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    alive = torch.ones(pts.shape[0], dtype=torch.bool, device=device)
    ids = scene.split("train")
    for i in ids[:: max(1, math.ceil(len(ids) / max_views))]:
        f, alpha = scene.frames[i].camera, scene.alpha(i)
        a = torch.from_numpy(alpha).to(device)
        a = torch.nn.functional.max_pool2d(a[None, None].float(), 3, 1, 1)[0, 0]
        idx = alive.nonzero().squeeze(-1)
        c2w = torch.as_tensor(f.c2w, dtype=torch.float64, device=device)
        local = (pts[idx] - c2w[:, 3]) @ c2w[:, :3]
        z = -local[:, 2]
        u = torch.floor(f.cx + f.fx * local[:, 0] / z).long()
        v = torch.floor(f.cy - f.fy * local[:, 1] / z).long()
        seen = (z > 0) & (u >= 0) & (u < f.width) & (v >= 0) & (v < f.height)
        empty = torch.zeros_like(seen)
        empty[seen] = a[v[seen], u[seen]] < 0.1
        alive[idx[empty]] = False
    occ = alive.reshape(*res)
    return pts[_surface(occ, shell).reshape(-1)].cpu().numpy()


def rbf_points(scene, inp, budget, device, run, max_res: int = 128):
    """(surface points, grid cell size, Density) of a short rbf radiance fit of the same scene (see the module
    doc), for ``budget`` (a ``trainer.Budget``; in seconds: at least 64 steps)."""
    from fieldfit.logs import MetricLog
    from fieldfit.methods.rbf.config import RadianceConfig
    from fieldfit.methods.rbf.radiance import Stepper, build_model, param_groups, run_config
    from fieldfit.optim import make_adam
    from fieldfit.runs import Run as RunFolder
    from fieldfit.tasks.radiance import PixelStore

    cfg = RadianceConfig(max_res=int(max_res), grid_full=(16, 48, 128), contract="off",
                         appearance="off").with_device(device).with_scene(scene)  # points inside the scene's box
    run_cfg = run_config(scene, inp, cfg, 0)
    model, march = build_model(run_cfg, device)
    opt = make_adam(param_groups(model, cfg))
    store = PixelStore(scene, scene.split("train"))
    store.keep_on(device)
    stepper = Stepper(model, opt, store, march, cfg, device, 0)
    steps, seconds = budget.steps, budget.time_budget
    t0, i = time.perf_counter(), 0
    # its rows go into the rbf run it is kept as (RUN/points/metrics.csv)
    with MetricLog(RunFolder.create(run.path / POINT_FIT), "psnr", "rays", getattr(run, "log_options", None)) as logs:
        while (i < steps) if steps else (time.perf_counter() - t0 < seconds or i < 64):
            out = stepper(i, i / steps if steps else min(1.0, (time.perf_counter() - t0) / max(seconds, 1e-6)))
            i += 1
            logs.add(out)  # its tensors are read at the rows only: no wait for the GPU at each step
            if logs.due(time.perf_counter() - t0):
                logs.row(i, time.perf_counter() - t0)
        logs.row(i, time.perf_counter() - t0)
    model.update_grid(i, march.step, None, cfg.grid_threshold)
    pts, cell, solid, cells = density_points(model, march)
    run.log(f"dnmp: rbf point fit {i} steps in {time.perf_counter() - t0:.0f}s, {cells} solid cells")
    save_point_fit(run, run_cfg, model, i, time.perf_counter() - t0)
    return pts, cell, solid


POINT_FIT = "points"  # the rbf point fit, kept in the dnmp run folder as an rbf run (view it, resume from it)


def save_point_fit(run, cfg: dict, model, steps: int, seconds: float) -> None:
    """Write the point fit as an rbf radiance run in RUN/points (config.json + checkpoint.safetensors)."""
    from fieldfit.runs import Run as RunFolder
    from fieldfit.runs import model_state

    out = RunFolder.create(run.path / POINT_FIT)
    out.header = {"input": cfg["source"], "method": "rbf", "command": "dnmp point fit"}
    out.write_config(cfg)
    out.save_checkpoint(model_state(model, None)()[0], {"step": steps, "elapsed": seconds})


def density_points(model, march):
    """(surface points, grid cell size, Density, solid cell count) of a trained rbf radiance model."""
    g = model.grid
    res = g.binary.shape
    axes = [g.aabb[0, a] + (torch.arange(res[a], device=g.aabb.device) + 0.5) * g.cell_size[a] for a in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    cell_size = float(g.cell_size.max())
    inner = None
    if g.contraction is not None:  # a contracted run (``--points RUN``): the inner cube's cells, in the world
        inner = (pts.abs().amax(-1) <= 1.0).reshape(res).cpu()
        pts = g.contraction.inverse(pts)
        cell_size *= g.contraction.radius
    with torch.no_grad():
        dens = torch.cat([model.field.density(pts[s:s + (1 << 16)].float()) for s in range(0, len(pts), 1 << 16)])
    opacity = 1.0 - torch.exp(-dens * march.step)  # of one marching step
    thr = min(0.1, 0.5 * float(opacity.max()))
    occ = (opacity > thr).reshape(res).cpu()
    if inner is not None:
        occ &= inner
    field = model.field

    def density(x):
        with torch.no_grad():
            return field.density(x.to(pts.device).float()).to(x.device)  # on the caller's device

    solid = Density(density, -math.log(1.0 - thr) / float(march.step))
    return pts.cpu()[_surface(occ, 0).reshape(-1)].numpy(), cell_size, solid, int(occ.sum())


def run_points(path: str, scene, device, run):
    """``density_points`` of a finished rbf radiance run of the same scene (``--points RUN``)."""
    from fieldfit.api import open_run
    from fieldfit.methods.rbf.radiance import load

    src = open_run(path)
    cfg = src.config()
    if cfg.get("method") != "rbf" or cfg.get("task") != "radiance":
        raise InputError(path, f"--points expects an rbf radiance run, this is {cfg.get('method')} "
                         f"{cfg.get('task')}", "pass a run made with --method rbf on a posed-image scene")
    if not np.allclose(np.asarray(cfg["aabb"]), np.asarray(scene.aabb)):
        raise InputError(path, "the run was fitted to a different scene box", "fit rbf on the same scene first")
    loaded = load(src, device)
    pts, cell, solid, cells = density_points(loaded.model, loaded.march)
    run.log(f"dnmp: points from the rbf run {path}: {cells} solid cells")
    return pts, cell, solid


class Density(NamedTuple):
    """A density field (world points [N,3] -> sigma [N] on the points' device) and the sigma that counts as
    solid."""

    fn: Callable
    sigma_min: float


def scene_points(scene, inp, cfg, budget, device, run) -> tuple[np.ndarray, str, Density | None, float]:
    """(points [N,3], source description, the rbf fit's density or None, voxel size) following the module doc.
    ``cfg`` is the DNMPConfig, ``budget`` the point fit's; an rbf source raises the voxel to its grid cell when
    that is larger (one voxel per cell otherwise)."""
    if scene.ndc:
        raise InputError(scene.source, "dnmp does not handle forward-facing (NDC) scenes",
                         "use --method rbf for LLFF captures")
    how, voxel = cfg.points or "auto", float(cfg.voxel)
    if how not in ("auto", "scene", "carve", "rbf"):
        if not (Path(how) / "config.json").is_file():
            raise InputError(f"--points {how}", "unknown point source",
                             "use auto, scene, carve, rbf or the folder of an rbf run")
        pts, cell, dens = run_points(how, scene, device, run)
        return pts, "rbf run " + how, dens, max(voxel, cell)
    if how == "rbf" or (how == "auto" and (scene.points is None or len(scene.points) == 0)):
        pts, cell, dens = rbf_points(scene, inp, budget, device, run, cfg.points_max_res)
        voxel = max(voxel, cell)  # no finer than the points' spacing
        if how == "rbf" or len(pts) >= 100 or not scene.has_alpha:
            return pts, "rbf density fit", dens, voxel
        run.log(f"dnmp: the rbf fit found {len(pts)} surface points; carving the alphas instead")
        how = "carve"
    if how == "carve":
        if not scene.has_alpha:
            raise InputError(scene.source, "carving needs images with alpha", "use --points rbf")
        return carve_points(scene, voxel / 2, shell=int(cfg.shell), device=device), "alpha carving", None, voxel
    if scene.points is None or len(scene.points) == 0:
        raise InputError(scene.source, "the scene has no points", "use --points rbf (or carve for alpha scenes)")
    lo, hi = scene.aabb
    pts = np.asarray(scene.points, np.float64)
    return pts[np.all((pts >= lo) & (pts <= hi), axis=1)], "scene points", None, voxel


def voxelise(points: np.ndarray, size: float, origin: np.ndarray) -> torch.Tensor:
    """Centres [M,3] float32 (host) of the voxels (edge ``size``, grid anchored at ``origin``) holding a point."""
    if len(points) == 0:
        return torch.zeros(0, 3, device="cpu")
    cells = np.unique(np.floor((points - origin) / size).astype(np.int64), axis=0)
    return torch.from_numpy(origin + (cells + 0.5) * size).float()


__all__ = ["Density", "POINT_FIT", "carve_points", "rbf_points", "save_point_fit",
           "scene_points", "voxelise"]
