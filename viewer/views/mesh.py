"""Shape runs drawn as triangle meshes: SDF runs (rbf/sdf) and BSP convexes (bsp/sdf).

SDF runs: the exported ``mesh.ply`` is rasterized with a z-buffer (viewer/raster.py), not
sphere traced. The fitted SDF is not Eikonal (|grad| != 1 away from the surface), so a safe
sphere tracer needs small steps: ~50-100 field evaluations per pixel, seconds per frame on a
CPU, while the mesh is what the run delivers (marching cubes at the fit's resolution) and
rasterizes in tens of milliseconds. When training while viewing, or for a run without
mesh.ply, the view re-meshes the field itself at a coarse resolution (``live_resolution``).

BSP runs: ``convexes.ply`` (faces coloured by convex, written by the bsp method).
"""

import time

import numpy as np
import torch

from fieldfit.errors import InputError

from ..camera import Camera, Preset, look_at, orbit_home
from ..raster import rasterize
from ..registry import register
from .base import BACKGROUND, check_mode, colormap, normals_rgb, to_uint8

SURFACE = np.array([0.78, 0.74, 0.68], np.float32)  # clay colour of SDF surfaces


class Mesh:
    """Vertices, faces, normals and optional face colours as torch tensors (CPU)."""

    def __init__(self, vertices, faces, face_colors=None):
        import trimesh

        tm = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
        self.verts = torch.tensor(np.asarray(tm.vertices), dtype=torch.float32)
        self.faces = torch.tensor(np.asarray(tm.faces), dtype=torch.int64)
        self.vnormals = torch.tensor(np.asarray(tm.vertex_normals), dtype=torch.float32)
        self.fnormals = torch.tensor(np.asarray(tm.face_normals), dtype=torch.float32)
        self.colors = None if face_colors is None else torch.as_tensor(face_colors, dtype=torch.float32)
        lo, hi = tm.bounds if len(tm.vertices) else (np.zeros(3), np.ones(3))
        self.centre, self.radius = (lo + hi) / 2.0, max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)

    @classmethod
    def load(cls, path, colours: bool = False) -> "Mesh":
        import trimesh

        try:
            tm = trimesh.load(str(path), process=False, force="mesh")
        except Exception as e:  # trimesh raises many types for broken files
            raise InputError(path, f"cannot read the mesh ({e})", "re-export it with fieldfit export") from None
        fc = np.asarray(tm.visual.face_colors)[:, :3] / 255.0 if colours and tm.visual.kind else None
        return cls(tm.vertices, tm.faces, fc)


def axis_presets(mesh: Mesh, up) -> list[Preset]:
    """Six cameras looking at the mesh along the axes (front, back, left, right, top, bottom)."""
    home = orbit_home(mesh.centre, mesh.radius, up)
    dist, up = home.distance, np.asarray(up, np.float64)
    out = []
    for name, d in (("front", [0, 0, 1]), ("back", [0, 0, -1]), ("right", [1, 0, 0]), ("left", [-1, 0, 0]),
                    ("top", [0, 1, 0]), ("bottom", [0, -1, 0])):
        eye = mesh.centre + dist * np.asarray(d, np.float64)
        ref = [0, 0, -1] if abs(np.dot(d, up)) > 0.9 else up
        out.append(Preset(name, look_at(eye, mesh.centre, ref), home.lens, (800, 800)))
    return out


def shade(mesh: Mesh, frags, camera: Camera, mode: str, smooth: bool) -> np.ndarray:
    """Fragments -> float image [H,W,3] for mode shaded | convexes | normals | depth."""
    mask = frags.mask
    h, w = mask.shape
    if mode == "depth":
        return colormap(frags.depth.numpy(), mask.numpy())
    face = frags.face[mask]
    if smooth:
        corners = mesh.faces[face]  # [P,3]
        n = (frags.bary[mask][..., None] * mesh.vnormals[corners]).sum(1)
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


class _MeshView:
    modes: tuple = ()
    planar = False
    smooth = True
    cull = True
    up = (0.0, 1.0, 0.0)
    default_size = (800, 600)

    def __init__(self, mesh: Mesh):
        self.mesh = mesh

    def home(self, aspect: float) -> Camera:
        return orbit_home(self.mesh.centre, self.mesh.radius, self.up)

    def presets(self) -> list[Preset]:
        return axis_presets(self.mesh, self.up)

    @torch.no_grad()
    def render(self, camera: Camera, width: int, height: int, mode: str = "") -> np.ndarray:
        mode = check_mode(self, mode)
        frags = rasterize(self.mesh.verts, self.mesh.faces, camera.c2w, camera.intrinsics(width, height),
                          width, height, near=1e-3 * self.mesh.radius, cull_back=self.cull)
        return to_uint8(shade(self.mesh, frags, camera, mode, self.smooth))

    def sync(self, tensors: dict) -> None:  # a mesh does not train
        return None


@register("rbf/sdf")
class SDFView(_MeshView):
    modes = ("shaded", "normals", "depth")
    live_resolution = 64
    remesh_every_s = 2.0

    def __init__(self, mesh: Mesh | None, model=None, config: dict | None = None):
        self.model, self.config, self.last_mesh = model, config or {}, -1e9
        super().__init__(mesh if mesh is not None else self._mesh_of_field())
        if not len(self.mesh.faces) and "scale" in self.config:  # nothing yet: frame the unit cube
            self.mesh.centre = np.asarray(self.config["center"], np.float64)
            self.mesh.radius = 0.95 / float(self.config["scale"])

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        from fieldfit.fields.gaussian_rbf import FieldConfig, SDFRBF
        from fieldfit.methods import rbf_sdf

        path = run.path / "mesh.ply"
        if not live and path.is_file():
            return cls(Mesh.load(path))
        if live:
            cfg = run.config()
            return cls(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), SDFRBF(FieldConfig.from_dict(cfg["field"])), cfg)
        model, cfg = rbf_sdf.load(run, device)
        return cls(None, model, cfg)

    def _mesh_of_field(self) -> Mesh:
        from fieldfit.mesh.extract import extract_sdf_mesh

        self.last_mesh = time.perf_counter()
        self.model.eval()
        try:
            tm = extract_sdf_mesh(self.model.sdf, resolution=self.live_resolution)
        except ValueError:  # no surface yet (early in training)
            return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))
        scale, centre = float(self.config["scale"]), np.asarray(self.config["center"])
        return Mesh(np.asarray(tm.vertices) / scale + centre, tm.faces)  # unit frame -> input frame

    def sync(self, tensors: dict) -> None:
        """Take the trainer's weights; re-mesh when the last mesh is older than remesh_every_s."""
        if self.model is None or time.perf_counter() - self.last_mesh < self.remesh_every_s:
            return
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(sd)
        mesh = self._mesh_of_field()
        if len(mesh.faces) or not len(self.mesh.faces):
            self.mesh = mesh


@register("bsp/sdf")
class BSPView(_MeshView):
    """convexes.ply, each convex in its colour; faces are drawn from both sides (no culling)."""

    modes = ("convexes", "normals", "depth")
    smooth = False
    cull = False

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        path = run.path / "convexes.ply"
        if not path.is_file():
            raise InputError(path, "missing", "the bsp fit writes it at the end; view the run once it has finished")
        return cls(Mesh.load(path, colours=True))
