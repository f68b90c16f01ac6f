"""Radiance runs after training: test-view renders and metrics, videos, density meshes.

Metrics conventions (metrics.json): ``test.psnr`` is the mean over test views of each view's
PSNR, ``test.ssim`` the mean SSIM (11x11 Gaussian window, sigma 1.5), ``test.lpips`` (AlexNet)
only when the ``lpips`` package is installed; renders are compared with the test images as
stored (alpha scenes composited on the scene's background). ``render_ms_per_frame`` is the
wall time per test view (rays, marching, field, compositing), ``samples_per_ray`` the mean
number of field samples per test ray (composited ones with FIELDFIT_MARCH=packed; with the
default rounds, every sample the field coloured, a round's samples past an opaque point included).

Mesh export: marching cubes on -(density - threshold) over the box of the occupied cells, so
the surface is closed where it meets the box; threshold = ln 2 / step (one marching step of it
has opacity 1/2). Vertex colours: the field's colour at the vertex seen along -normal (as
from a camera straight in front of the surface). NDC scenes are meshed in the NDC cube and
mapped back to the scene's world frame, depth capped at twice the far bound.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runs import atomic_write
from ..trainer import counted
from .radiance_data import PixelStore, RayBatch, eval_background, frame_rays
from .radiance_paths import path_frames, write_video
from .radiance_render import render_rays


@dataclass
class EvalRays(RayBatch):
    background: torch.Tensor = None  # [3]


def eval_rays_from(scene, n: int, seed: int, max_views: int = 8) -> EvalRays:
    """n fixed random pixels of (at most ``max_views``, evenly spaced) test views, for the PSNR during training."""
    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // max_views)][:max_views]
    store = PixelStore(scene, ids)
    idx = np.random.default_rng(seed + 1).choice(store.count, size=min(n, store.count), replace=False)
    b = store.take(idx)
    return EvalRays(b.origins, b.dirs, b.rgb, b.alpha, torch.from_numpy(eval_background(scene)))


def _png(path: Path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    img = (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    atomic_write(path, lambda tmp: iio.imwrite(tmp, img, extension=".png"))


def render_frame(model, scene, frame, march, device) -> tuple[np.ndarray, int]:
    """([H,W,3] float32 render of ``frame``, number of field samples)."""
    o, d = frame_rays(scene, frame, device=device)
    rgb, _, n = render_rays(model, o, d, eval_background(scene), march, device)
    return rgb.reshape(frame.height, frame.width, 3).numpy(), n


def evaluate_views(model, scene, march, run, device, render_fn=None) -> dict:
    """Render every test view to renders/test_NNN.png and measure it (see the module doc).

    ``render_fn(frame) -> (rgb [H,W,3], field samples)`` replaces the marcher (other methods).
    """
    from fieldfit.render.metrics import lpips_fn, psnr, ssim

    ids = scene.split("test")
    lp = lpips_fn(device=device) if ids else None
    psnrs, ssims, lpipss, seconds, samples, rays = [], [], [], 0.0, 0, 0
    for k, i in enumerate(counted(ids, "test views", run)):
        frame = scene.frames[i]
        t = time.perf_counter()
        pred, n = render_fn(frame) if render_fn else render_frame(model, scene, frame, march, device)
        seconds += time.perf_counter() - t
        samples, rays = samples + n, rays + frame.width * frame.height
        _png(run.path / "renders" / f"test_{k:03d}.png", pred)
        gt = scene.image(i)
        psnrs.append(psnr(pred, gt))
        ssims.append(ssim(pred, gt) if min(gt.shape[:2]) >= 11 else float("nan"))
        if lp is not None:
            lpipss.append(lp(pred, gt))
    test = {"psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
            "ssim": float(np.nanmean(ssims)) if ssims else float("nan"), "views": len(ids)}
    if lpipss:
        test["lpips"] = float(np.mean(lpipss))
    f0 = scene.frames[ids[0]] if ids else scene.frames[0]
    return {"test": test, "render_ms_per_frame": 1000.0 * seconds / max(len(ids), 1),
            "samples_per_ray": samples / max(rays, 1), "render_size": [f0.width, f0.height]}


def render_video(model, scene, march, path: str, out, n: int, device, render_fn=None) -> tuple[Path, str]:
    """Render a camera path (orbit | spiral | test) and write it as a video (``render_fn`` as evaluate_views)."""
    frames = []
    for frame in counted(path_frames(scene, path, n), f"{path} frames"):
        rgb, _ = render_fn(frame) if render_fn else render_frame(model, scene, frame, march, device)
        frames.append((np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8))
    return write_video(frames, Path(out))


def _mesh_bounds(model) -> tuple[np.ndarray, np.ndarray]:
    """Box of the occupied cells grown by one cell, inside the grid's box."""
    g = model.grid
    box = model.occupied_box().detach().cpu().double().numpy()
    cell = g.cell_size.cpu().double().numpy()
    aabb = g.aabb.cpu().double().numpy()
    return np.maximum(box[0] - cell, aabb[0]), np.minimum(box[1] + cell, aabb[1])


@torch.no_grad()
def density_volume(model, lo, hi, res: int, device, chunk: int = 1 << 18) -> np.ndarray:
    """Density [res,res,res] on the grid of marching_cubes_closed over (lo, hi); 0 in empty cells."""
    g = model.grid
    axes = [torch.linspace(float(lo[a]), float(hi[a]), res, device=device) for a in range(3)]
    out = torch.zeros(res**3)
    gres = torch.tensor(g.binary.shape, device=device)
    for s in range(0, res**3, chunk):
        flat = torch.arange(s, min(s + chunk, res**3), device=device)
        pts = torch.stack([axes[0][flat // (res * res)], axes[1][(flat // res) % res], axes[2][flat % res]], -1)
        cell = ((pts - g.aabb[0]) / g.cell_size).floor().long()
        cell = torch.minimum(cell.clamp_min(0), gres - 1)
        occ = g.binary[cell[:, 0], cell[:, 1], cell[:, 2]]
        if bool(occ.any()):
            out[flat[occ].cpu()] = model.field.density(pts[occ]).float().cpu()
    return out.reshape(res, res, res).numpy()


@torch.no_grad()
def vertex_colours(model, verts: np.ndarray, normals: np.ndarray, device, chunk: int = 1 << 16) -> np.ndarray:
    """[V,3] colours of the field at verts seen along -normals."""
    out = []
    for s in range(0, len(verts), chunk):
        x = torch.as_tensor(verts[s:s + chunk], dtype=torch.float32, device=device)
        n = torch.tensor(np.asarray(normals[s:s + chunk]), dtype=torch.float32, device=device)
        d = -torch.nn.functional.normalize(n, dim=-1)
        out.append(model.field(x, d).rgb.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)


def ndc_to_world(verts: np.ndarray, scene) -> np.ndarray:
    """Points of the NDC cube -> the scene's world frame (inverse of render.ndc_rays' map)."""
    p = scene.ndc_params
    bounds = scene.metadata.get("bounds")
    far = 2.0 * float(np.max(bounds)) if bounds is not None else 100.0 * p.near_plane
    zn = np.minimum(verts[:, 2], 1.0 - 2.0 * p.near_plane / far)
    z = 2.0 * p.near_plane / (zn - 1.0)
    x = -verts[:, 0] * z / (2.0 * p.fx / p.width)
    y = -verts[:, 1] * z / (2.0 * p.fy / p.height)
    return np.stack([x, y, z], axis=-1)


def export_density_mesh(model, scene, out, resolution: int, step: float, device) -> dict:
    """Watertight mesh of the density with vertex colours (see the module doc) written to ``out``."""
    import trimesh

    from fieldfit.mesh import export_mesh, is_watertight, marching_cubes_closed, remove_fragments
    from fieldfit.mesh.topology import component_count, signed_volume

    t = time.perf_counter()
    threshold = math.log(2.0) / step
    lo, hi = _mesh_bounds(model)
    vol = density_volume(model, lo, hi, int(resolution), device)
    if not (vol > threshold).any():
        return {"mesh": None, "mesh_error": f"no density above {threshold:.4g}: nothing to mesh"}
    v, f = marching_cubes_closed(-(vol - threshold), 0.0, (lo, hi))
    v, f, _ = remove_fragments(v, f)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    colours = vertex_colours(model, v, normals, device)
    if scene.ndc:
        v = ndc_to_world(v, scene)
        if signed_volume(v, f) < 0:
            f = np.ascontiguousarray(f[:, ::-1])
    export_mesh(v, f, out, vertex_colors=np.clip(colours, 0, 1))
    return {"mesh": str(out), "faces": int(len(f)), "vertices": int(len(v)), "watertight": bool(is_watertight(v, f)),
            "components": int(component_count(v, f)), "mesh_threshold": threshold, "mesh_resolution": int(resolution),
            "mesh_seconds": time.perf_counter() - t}


__all__ = ["EvalRays", "eval_rays_from", "evaluate_views", "export_density_mesh", "render_frame", "render_video"]
