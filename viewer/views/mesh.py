"""Shape runs (task sdf) drawn as triangle meshes, through render/'s rasterizer (``render.raster.rasterize``,
one layer: a z-buffer).

rbf runs: the exported ``mesh.ply`` (else ``SDFModel.mesh()``), shaded clay. It is rasterized, not sphere
traced: the fitted SDF is not Eikonal (|grad| != 1 away from the surface), so a safe sphere tracer needs small
steps, ~50-100 field evaluations per pixel, seconds per frame on a CPU, while the mesh is what the run
delivers (marching cubes at the fit's resolution) and rasterizes in tens of milliseconds.

bsp runs: ``convexes.ply`` (faces coloured by convex), else the exact union of the convexes
(``BSPRun.mesh()``: faces labelled by convex, coloured here as the method colours convexes.ply); faces are
drawn from both sides (no culling) with flat normals.

Training while viewing (``live``), or following a run whose fit still runs: the view re-meshes the model
from the weights it is sent (``sync``) when its mesh is older than ``remesh_every_s`` (rbf: marching cubes
at the coarse ``live_resolution``; bsp: the union again).
"""

import colorsys
import time

import numpy as np
import torch

from fieldfit.errors import FitError, InputError
from fieldfit.render.camera import Camera, look_at
from fieldfit.render.raster import rasterize

from ..camera import Orbit, Preset, lens, orbit_home
from ..registry import register
from .base import BACKGROUND, check_mode, colormap, normals_rgb, to_uint8

SURFACE = np.array([0.78, 0.74, 0.68], np.float32)  # clay colour of SDF surfaces


def palette(n: int) -> np.ndarray:
    """n distinct colours [n,3] uint8 (golden-ratio hues): the colours the bsp method gives convexes.ply."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return (np.array([colorsys.hsv_to_rgb(h, 0.65, 0.95) for h in hues]).reshape(-1, 3) * 255).astype(np.uint8)


class Mesh:
    """Vertices, faces, normals and optional face colours as torch tensors (CPU)."""

    def __init__(self, vertices, faces, face_colors=None):
        import trimesh

        v, f = np.asarray(vertices, np.float64).reshape(-1, 3), np.asarray(faces, np.int64).reshape(-1, 3)
        tm = trimesh.Trimesh(v, f, process=False)
        self.verts = torch.tensor(np.asarray(tm.vertices), dtype=torch.float32)
        self.faces = torch.tensor(np.asarray(tm.faces), dtype=torch.int64).reshape(-1, 3)
        self.vnormals = torch.tensor(np.asarray(tm.vertex_normals), dtype=torch.float32).reshape(-1, 3)
        self.fnormals = torch.tensor(np.asarray(tm.face_normals), dtype=torch.float32).reshape(-1, 3)
        self.colors = None if face_colors is None else torch.as_tensor(face_colors, dtype=torch.float32)
        lo, hi = tm.bounds if len(tm.vertices) else (np.zeros(3), np.ones(3))
        self.centre, self.radius = (lo + hi) / 2.0, max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)

    @classmethod
    def empty(cls) -> "Mesh":
        return cls(np.zeros((0, 3)), np.zeros((0, 3), np.int64))

    @classmethod
    def labelled(cls, vertices, faces, labels) -> "Mesh":
        """Faces coloured by ``labels`` [F] (the convex each face comes from)."""
        lab = np.asarray(labels, np.int64).reshape(-1)
        colours = palette(int(lab.max()) + 1 if len(lab) else 1)[np.maximum(lab, 0)] / 255.0
        return cls(vertices, faces, colours)

    @classmethod
    def load(cls, path, colours: bool = False) -> "Mesh":
        import trimesh

        try:
            tm = trimesh.load(str(path), process=False, force="mesh")
        except Exception as e:  # trimesh raises many types for broken files
            raise InputError(path, f"cannot read the mesh ({e})", "re-export it with fieldfit export") from None
        fc = np.asarray(tm.visual.face_colors)[:, :3] / 255.0 if colours and tm.visual.kind else None
        return cls(tm.vertices, tm.faces, fc)


def axis_presets(mesh: Mesh, up, reference: Camera | None = None) -> list[Preset]:
    """Six cameras looking at the mesh along the axes (front, back, left, right, top, bottom), 800 x 800."""
    reference = reference or lens(800, 800)
    home = orbit_home(mesh.centre, mesh.radius, up, reference)
    dist, up = home.distance, np.asarray(up, np.float64)
    out = []
    for name, d in (("front", [0, 0, 1]), ("back", [0, 0, -1]), ("right", [1, 0, 0]), ("left", [-1, 0, 0]),
                    ("top", [0, 1, 0]), ("bottom", [0, -1, 0])):
        eye = mesh.centre + dist * np.asarray(d, np.float64)
        ref = [0, 0, -1] if abs(np.dot(d, up)) > 0.9 else up
        out.append(Preset(name, reference.with_pose(look_at(eye, mesh.centre, ref))))
    return out


class Raster:
    """One layer of fragments as images: face [H,W] (-1 empty), bary [H,W,3], depth [H,W] (inf empty)."""

    def __init__(self, mesh: Mesh, camera: Camera, near: float, cull_back: bool):
        h, w = camera.height, camera.width
        if len(mesh.faces):
            frags = rasterize(mesh.verts, mesh.faces, camera, k=1, near=near, cull_back=cull_back)
            self.face = frags.face[:, 0].reshape(h, w)
            self.bary = frags.bary[:, 0].reshape(h, w, 3)
            self.depth = frags.depth[:, 0].reshape(h, w)
        else:
            self.face = torch.full((h, w), -1, dtype=torch.int64)
            self.bary = torch.zeros(h, w, 3)
            self.depth = torch.full((h, w), float("inf"))

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def shade(mesh: Mesh, frags: Raster, camera: Camera, mode: str, smooth: bool) -> np.ndarray:
    """Fragments -> float image [H,W,3] for mode shaded | convexes | normals | depth."""
    mask = frags.mask
    h, w = mask.shape
    if mode == "depth":
        return colormap(frags.depth.numpy(), mask.numpy())
    face = frags.face[mask]
    if smooth:
        corners = mesh.faces[face]  # [P,3]
        n = (frags.bary[mask][..., None].to(mesh.vnormals.dtype) * mesh.vnormals[corners]).sum(1)
    else:
        n = mesh.fnormals[face]
    n = torch.nn.functional.normalize(n, dim=-1)
    normals = torch.zeros(h, w, 3)
    normals[mask] = n
    if mode == "normals":
        return normals_rgb(normals.numpy(), mask.numpy())
    c2w = torch.as_tensor(camera.c2w, dtype=torch.float32)
    to_cam = c2w[:, 2]  # headlight along the view axis, plus a key light above-left of the camera
    key = torch.nn.functional.normalize(-0.4 * c2w[:, 0] + 0.7 * c2w[:, 1] + 0.6 * c2w[:, 2], dim=0)
    light = 0.15 + 0.45 * (n @ to_cam).abs() + 0.45 * (n @ key).clamp(min=0)
    base = mesh.colors[face] if (mode == "convexes" and mesh.colors is not None) else torch.from_numpy(SURFACE)
    out = torch.from_numpy(np.tile(BACKGROUND, (h, w, 1)))
    out[mask] = (base * light[:, None]).clamp(0, 1)
    return out.numpy()


class Style:
    """How a method's shapes are drawn: modes, normals, culling, and where the mesh comes from."""

    modes = ("shaded", "normals", "depth")
    smooth = True  # interpolated vertex normals (marching-cubes surfaces) or flat faces (convexes)
    cull = True  # back faces culled (closed, outward-oriented meshes)
    file = "mesh.ply"  # the run's mesh, when the fit has finished
    colours = False

    @staticmethod
    def mesh_of(model, resolution: int | None) -> Mesh:
        v, f = model.mesh(resolution)
        return Mesh(v, f)


class ConvexStyle(Style):
    modes = ("convexes", "normals", "depth")
    smooth = False
    cull = False
    file = "convexes.ply"
    colours = True

    @staticmethod
    def mesh_of(model, resolution: int | None) -> Mesh:
        return Mesh.labelled(*model.mesh())


STYLES = {"bsp": ConvexStyle}  # any other method: Style (SDFModel.mesh(resolution) -> (v, f))


@register("sdf")
class MeshView:
    """A mesh of a shape run; ``modes``, normals and culling from the method's ``Style``."""

    modes = Style.modes
    planar = False
    up = (0.0, 1.0, 0.0)
    default_size = (800, 600)
    live_resolution = 64  # marching cubes while training (rbf)
    remesh_every_s = 2.0

    def __init__(self, mesh: Mesh, model=None, style: type = Style, follow: bool = False):
        """``follow``: the mesh comes from the model, so new weights (``sync``) mean a new mesh."""
        self.mesh, self.model, self.style, self.follow = mesh, model, style, follow
        self.modes, self.smooth, self.cull = style.modes, style.smooth, style.cull
        self.resolution = None  # of the meshes made from the model (None: the run's own)
        self.last_mesh = time.perf_counter()

    @classmethod
    def open(cls, model, live: bool = False):
        style = STYLES.get(model.method, Style)
        path = model.run.path / style.file
        if not live and path.is_file():
            return cls(Mesh.load(path, colours=style.colours), model, style)
        view = cls(Mesh.empty(), model, style, follow=True)
        if live:  # untrained weights: the first sync brings a surface; meanwhile frame the unit cube
            frame = getattr(model, "frame", model)
            if hasattr(frame, "center") and hasattr(frame, "scale"):
                view.mesh.centre = np.asarray(frame.center, np.float64)
                view.mesh.radius = 0.95 / float(frame.scale)
            view.resolution, view.last_mesh = cls.live_resolution, -np.inf
        else:
            view.mesh = view.mesh_of_model()
        return view

    def mesh_of_model(self) -> Mesh:
        """The model's surface now (an empty mesh when it has none yet, early in training)."""
        self.last_mesh = time.perf_counter()
        try:
            return self.style.mesh_of(self.model, self.resolution)
        except (FitError, FloatingPointError, ValueError):  # no surface yet
            return Mesh.empty()

    def home(self, aspect: float) -> Orbit:
        return orbit_home(self.mesh.centre, self.mesh.radius, self.up, lens(*self.default_size))

    def presets(self) -> list[Preset]:
        return axis_presets(self.mesh, self.up)

    @torch.no_grad()
    def render(self, camera: Camera, mode: str = "") -> np.ndarray:
        mode = check_mode(self, mode)
        frags = Raster(self.mesh, camera, near=1e-3 * self.mesh.radius, cull_back=self.cull)
        return to_uint8(shade(self.mesh, frags, camera, mode, self.smooth))

    @torch.no_grad()
    def depth(self, camera: Camera) -> np.ndarray:
        """float [H,W]: depth along the camera's axis of the nearest surface, nan where there is none."""
        frags = Raster(self.mesh, camera, near=1e-3 * self.mesh.radius, cull_back=self.cull)
        return torch.where(frags.mask, frags.depth, torch.full_like(frags.depth, float("nan"))).numpy()

    def sync(self, tensors: dict, force: bool = False) -> None:
        """Take the trainer's weights; re-mesh when the last mesh is older than ``remesh_every_s`` or ``force`` (the
        final weights; a view of a finished run's mesh file ignores them)."""
        if not self.follow or (not force and time.perf_counter() - self.last_mesh < self.remesh_every_s):
            return
        self.model.sync(tensors)
        mesh = self.mesh_of_model()
        if len(mesh.faces):  # no surface (yet, or for a moment): keep the last one, or the unit cube's framing
            self.mesh = mesh


__all__ = ["ConvexStyle", "Mesh", "MeshView", "Raster", "STYLES", "Style", "axis_presets", "palette", "shade"]
