"""Radiance runs after training: test-view renders and metrics, videos along camera paths, density meshes.

Every function takes the method's renderer as ``render_fn(camera) -> (rgb [H,W,3] float numpy, field
samples)``, so rbf, dnmp and pronerf share them.

Metrics conventions (metrics.json): ``test.psnr`` is the mean over test views of each view's PSNR,
``test.ssim`` the mean SSIM (11x11 Gaussian window, sigma 1.5), ``test.lpips`` (AlexNet) where the ``lpips``
package and its weights load, else null with ``test.lpips_unavailable`` saying why (and the log saying it once);
renders are compared with the test images as stored (alpha scenes composited on the scene's background).
``render_ms_per_frame`` is the wall time per test view (rays, marching, field, compositing), ``samples_per_ray``
the mean number of field samples per test ray (for rbf: composited ones with FIELDFIT_MARCH=packed; with the
default rounds, every sample the field coloured, a round's samples past an opaque point included).

Videos (``SceneModel.render_video``): the camera path's frames as rgb, depth or normal (``render.passes``; normals
from the density gradient where the run computes them, ``render_modes`` "normals", else from the depth map).

Point clouds (``SceneModel.point_cloud``): every training camera, scaled down so that all of them together cast at
most ``RAYS_PER_POINT`` rays per point wanted, rendered; a pixel whose opacity exceeds 1/2 gives the point at its
expected depth with its rendered colour, kept where it lies in ``points_box`` (a contracted run's inner cube); the
points are thinned on a voxel grid (``mesh.points.voxel_thin``, cells from 1/2048 of their box's diagonal up).

Density meshes: marching cubes on -(density - threshold) over a box, so the surface is closed where it meets
the box; rbf's threshold is ln 2 / step (one marching step of it has opacity 1/2). Vertex colours: the
field's colour at the vertex seen along -normal (as from a camera straight in front of the surface). NDC
scenes are meshed in the NDC cube and mapped back to the scene's world frame, depth capped at twice the far
bound.
"""

import math
import time
from pathlib import Path

import numpy as np
import torch

from fieldfit.render.paths import path_cameras
from fieldfit.render.video import write_video

from ..errors import InputError
from ..model import Model
from ..runs import atomic_write
from ..trainer import counted, cpu_threads
from .radiance import camera_rays, scene_of_config

VIDEO_PATHS = ("orbit", "spiral", "test")
PREVIEW_SIDE = 256  # the logs' test-view picture: at most this many pixels a side
RAYS_PER_POINT = 4


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def _png(path: Path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    img = rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
    atomic_write(path, lambda tmp: iio.imwrite(tmp, img, extension=".png"))


def evaluate_views(render_fn, scene, run, device="cpu") -> dict:
    """Render every test view to renders/test_NNN.png and measure it (see the module doc). In a distributed fit
    (``fieldfit.dist``) the views are dealt to the ranks and rank 0 writes them all."""
    from fieldfit import dist
    from fieldfit.render.metrics import load_lpips, psnr, ssim

    ids = scene.split("test")
    lp, lp_missing = load_lpips(device=device) if ids else (None, None)
    if lp_missing:
        run.log(f"lpips not measured: {lp_missing}")
    measured, pictures = [], []
    for k, i in counted(dist.deal(list(enumerate(ids))), "test views", run):
        cam = scene.frames[i].camera
        t = time.perf_counter()
        pred, n = render_fn(cam)
        seconds = time.perf_counter() - t
        gt = scene.image(i)
        # views under 11 px: a smaller window for SSIM (render.metrics.ssim)
        measured.append((psnr(pred, gt), ssim(pred, gt), lp(pred, gt) if lp is not None else None, seconds, n,
                         cam.pixels))
        if dist.active():
            pictures.append(to_uint8(pred))
        else:
            _png(run.path / "renders" / f"test_{k:03d}.png", pred)
    measured = dist.collect(measured, len(ids))
    if dist.active():
        for k, picture in enumerate(dist.collect(pictures, len(ids), to_all=False) or []):
            _png(run.path / "renders" / f"test_{k:03d}.png", picture)
    psnrs, ssims = [m[0] for m in measured], [m[1] for m in measured]
    lpipss = [m[2] for m in measured] if lp is not None else []
    seconds, samples, rays = sum(m[3] for m in measured), sum(m[4] for m in measured), sum(m[5] for m in measured)
    test = {"psnr": float(np.mean(psnrs)) if psnrs else float("nan"),
            "ssim": float(np.nanmean(ssims)) if ssims else float("nan"), "views": len(ids)}
    if ids:
        test["lpips"] = float(np.mean(lpipss)) if lpipss else None
    if lp_missing:
        test["lpips_unavailable"] = lp_missing
    c0 = scene.frames[ids[0] if ids else 0].camera
    return {"test": test, "render_ms_per_frame": 1000.0 * seconds / max(len(ids), 1),
            "samples_per_ray": samples / max(rays, 1), "render_size": [c0.width, c0.height]}


def video_cameras(scene, path: str, n: int) -> list:
    """The cameras of a video path: orbit | spiral (n cameras with the intrinsics of the first test view, or
    the first view) or test (the test views in split order)."""
    test = scene.splits.get("test") or [0]
    if path == "test":
        return [scene.frames[i].camera for i in test]
    return path_cameras(path, scene.cameras(), n, scene.frames[test[0]].camera, scene.metadata.get("bounds"))


@torch.no_grad()
def density_volume(density_fn, lo, hi, res: int, device, occupied_fn=None, chunk: int = 1 << 18) -> np.ndarray:
    """Density [res,res,res] at the corners of ``marching_cubes_closed``'s grid over (lo, hi); 0 where
    ``occupied_fn`` (points -> bool, the occupancy grid's cells) says empty."""
    axes = [torch.linspace(float(lo[a]), float(hi[a]), res, device=device) for a in range(3)]
    out = torch.zeros(res**3)
    for s in range(0, res**3, chunk):
        flat = torch.arange(s, min(s + chunk, res**3), device=device)
        pts = torch.stack([axes[0][flat // (res * res)], axes[1][(flat // res) % res], axes[2][flat % res]], -1)
        occ = occupied_fn(pts) if occupied_fn is not None else torch.ones(len(pts), dtype=torch.bool, device=device)
        if bool(occ.any()):
            out[flat[occ].cpu()] = density_fn(pts[occ]).float().cpu()
    return out.reshape(res, res, res).numpy()


@torch.no_grad()
def vertex_colours(colour_fn, verts: np.ndarray, normals: np.ndarray, device, chunk: int = 1 << 16) -> np.ndarray:
    """[V,3] colours ``colour_fn(points, dirs)`` at verts seen along -normals."""
    out = []
    for s in range(0, len(verts), chunk):
        x = torch.as_tensor(verts[s:s + chunk], dtype=torch.float32, device=device)
        n = torch.tensor(np.asarray(normals[s:s + chunk]), dtype=torch.float32, device=device)
        out.append(colour_fn(x, -torch.nn.functional.normalize(n, dim=-1)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 3), np.float32)


def ndc_to_world(verts: np.ndarray, scene) -> np.ndarray:
    """Points of the NDC cube -> the scene's world frame, depth capped at twice the far bound."""
    bounds = scene.metadata.get("bounds")
    p = scene.ndc_params
    far = 2.0 * float(np.max(bounds)) if bounds is not None else 100.0 * p.near_plane
    return p.to_world(torch.as_tensor(verts, dtype=torch.float64), far=far).numpy()


def export_density_mesh(density_fn, colour_fn, lo, hi, threshold: float, scene, out, resolution: int, device,
                        occupied_fn=None) -> dict:
    """Watertight mesh of ``density_fn`` above ``threshold`` over the box (lo, hi) (marching space), with vertex
    colours from ``colour_fn(points, dirs) -> rgb`` (see the module doc), written to ``out``. ``scene`` maps an NDC
    box back to the world; None for a world-space run (its export then needs no source scene)."""
    import trimesh

    from fieldfit.mesh import export_mesh, is_watertight, marching_cubes_closed, remove_fragments
    from fieldfit.mesh.topology import component_count, signed_volume

    t = time.perf_counter()
    vol = density_volume(density_fn, lo, hi, int(resolution), device, occupied_fn)
    if not (vol > threshold).any():
        return {"mesh": None, "mesh_error": f"no density above {threshold:.4g}: nothing to mesh"}
    v, f = marching_cubes_closed(-(vol - threshold), 0.0, (lo, hi))
    v, f, _ = remove_fragments(v, f)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    colours = vertex_colours(colour_fn, v, normals, device)
    if scene is not None and scene.ndc:
        v = ndc_to_world(v, scene)
        if signed_volume(v, f) < 0:
            f = np.ascontiguousarray(f[:, ::-1])
    export_mesh(v, f, out, vertex_colors=np.clip(colours, 0, 1))
    return {"mesh": str(out), "faces": int(len(f)), "vertices": int(len(v)), "watertight": bool(is_watertight(v, f)),
            "components": int(component_count(v, f)), "mesh_threshold": threshold, "mesh_resolution": int(resolution),
            "mesh_seconds": time.perf_counter() - t}


class SceneModel(Model):
    """Base of the radiance runs (rbf, dnmp, pronerf): the scene they were fitted to (loaded on first use),
    its cameras, test-view metrics and camera-path videos, all drawn through the subclass's ``render``."""

    task = "radiance"

    def __init__(self, run, config: dict, device="cpu", scene=None):
        super().__init__(run, config, device)
        self._scene = scene

    @property
    def scene(self):
        """Cameras, images, background, NDC map of the fit."""
        if self._scene is None:
            self._scene = self.load_scene()
        return self._scene

    def load_scene(self):
        return scene_of_config(self.config)

    def cameras(self, split: str | None = None) -> list:
        return self.scene.cameras(split)

    def frame(self, camera) -> tuple[np.ndarray, int]:
        """``render(camera)`` on the host (waits for a GPU, so frame timings hold): (rgb [H,W,3], samples)."""
        r = self.render(camera)
        return r.rgb.detach().cpu().numpy(), r.samples

    def preview(self) -> np.ndarray:
        """rgb [H,W,3] of the first test view (or the first view), shrunk to at most ``PREVIEW_SIDE`` pixels a side
        (the picture of the logs while training)."""
        ids = self.scene.split("test") or [0]
        cam = self.scene.frames[ids[0]].camera
        return self.frame(cam.scaled(max(1, -(-max(cam.width, cam.height) // PREVIEW_SIDE))))[0]

    def measure(self) -> dict:
        """Render and measure every test view (``evaluate_views``)."""
        return evaluate_views(self.frame, self.scene, self.run, self.device)

    def evaluate(self) -> dict:
        with cpu_threads(self.run, self.device):
            metrics = {**self.run.metrics(), **self.measure()}
        self.run.write_metrics(metrics)
        return metrics

    def render_video(self, path: str, out, frames: int = 60, *, cameras: list | None = None, fps: float = 24.0,
                     size: tuple[int, int] | None = None, kind: str = "rgb"):
        from fieldfit import dist

        cams = list(cameras) if cameras is not None else video_cameras(self.scene, path, frames)
        if size is not None and cameras is None:
            cams = [c.resized(*size) for c in cams]
        with cpu_threads(self.run, self.device):
            pictures, note = self.pictures(cams, kind, "camera path" if cameras is not None else f"{path} frames")
        if not dist.is_main():  # several ranks (torchrun ... render): rank 0 writes the video
            return Path(out), note
        written, written_note = write_video(pictures, Path(out), fps)
        return written, "; ".join(n for n in (note, written_note) if n)

    def pictures(self, cameras: list, kind: str = "rgb", what: str = "frames") -> tuple[list[np.ndarray], str]:
        """(uint8 frames [H,W,3] of ``cameras``, note) for pass ``kind`` rgb | depth | normal (module doc). With
        several ranks (``fieldfit.dist``) each draws its share of the cameras and every rank gets every frame."""
        from fieldfit import dist
        from fieldfit.render.passes import depth_frames, normal_frame, normals_from_points

        if kind == "rgb":
            mine = [to_uint8(self.frame(c)[0]) for c in counted(dist.deal(cameras), what)]
            return dist.collect(mine, len(cameras)), ""
        gradient = kind == "normal" and "normals" in self.render_modes
        maps = []
        for cam in counted(dist.deal(cameras), what):
            points, r = self.surface(cam, "normals" if gradient else "colour")
            if kind == "depth":
                maps.append(np.where(np.isfinite(points[..., 0]), r.depth.float().cpu().numpy(), np.nan))
            elif gradient:
                n = r.normals.float().cpu().numpy()
                maps.append(normal_frame(n, np.isfinite(points[..., 0])))
            else:
                n = normals_from_points(points, cam.position)
                maps.append(normal_frame(np.nan_to_num(n), np.isfinite(n[..., 0])))
        maps = dist.collect(maps, len(cameras))
        if kind == "depth":
            frames, (lo, hi) = depth_frames(maps)
            return frames, f"depth colours: turbo from {lo:.4g} (blue) to {hi:.4g} (red), black: no surface"
        return maps, "normals from the " + ("density gradient" if gradient else "depth map")

    def surface(self, camera, mode: str = "colour"):
        """(world points [H,W,3] at the expected depth of each pixel whose opacity exceeds 1/2, nan elsewhere;
        the ``Rendering``). InputError for runs whose renders carry no depth (dnmp)."""
        r = self.render(camera, mode)
        h, w = camera.height, camera.width
        t = r.depth.float().cpu().reshape(-1)
        solid = (r.opacity.float().cpu().reshape(-1) > 0.5) & torch.isfinite(t)
        if not bool(torch.isfinite(t).any()) and bool((r.opacity.float() > 0.5).any()):
            raise InputError(self.run.path, f"{self.method} renders carry no depth", "use --pass rgb")
        o, d = camera_rays(self.scene, camera)
        p = (o.double() + d.double() * t.double().nan_to_num(0.0)[:, None]).numpy()
        if self.scene.ndc and bool(solid.any()):
            p[solid.numpy()] = ndc_to_world(p[solid.numpy()], self.scene)
        p[~solid.numpy()] = np.nan
        return p.reshape(h, w, 3), r

    def points_box(self):
        """[2,3] world box the point cloud keeps, or None for all points (``RadianceRun``: the inner cube of a
        contracted run)."""
        return None

    def point_cloud(self, max_points: int = 200_000):
        """Points of the training views' renders (module doc)."""
        from fieldfit.mesh.points import PointCloud, voxel_thin
        from fieldfit.mesh.weld import diagonal

        cams = self.cameras("train") or self.cameras()
        total = sum(c.pixels for c in cams)
        k = max(1, math.ceil(math.sqrt(total / (RAYS_PER_POINT * max_points))))
        clouds = []
        with cpu_threads(self.run, self.device):
            box = self.points_box()
            for cam in counted(cams, "point views"):
                points, r = self.surface(cam.scaled(k))
                hit = np.isfinite(points[..., 0])
                if box is not None:  # a contracted run: its background out to the horizon is left out
                    hit &= np.all((points >= box[0]) & (points <= box[1]), axis=-1)
                clouds.append(PointCloud(points[hit], to_uint8(r.rgb.float().cpu().numpy()[hit])))
        cloud = PointCloud.concat(clouds)
        if len(cloud) == 0:
            raise InputError(self.run.path, "no pixel of the training views is opaque: no points",
                             "train longer (--time-budget / --steps)")
        return voxel_thin(cloud, max_points, diagonal(cloud.points) / 2048)


__all__ = ["VIDEO_PATHS", "SceneModel", "density_volume", "evaluate_views", "export_density_mesh", "ndc_to_world",
           "vertex_colours", "video_cameras"]
