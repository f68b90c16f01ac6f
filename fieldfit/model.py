"""A fitted run, loaded: what ``fieldfit.load(run_dir)`` returns, whatever the method.

Every method's loaded runs answer the same questions, so the commands (eval, export, render, view), the
viewer and notebooks never need a method's internals:

    model = fieldfit.load("runs/lego-rbf-...")
    model.metrics                              # metrics.json
    img = model.render(model.cameras("test")[0])   # Rendering: rgb, opacity, depth
    model.export_mesh("lego.ply")              # watertight mesh (every task with geometry)
    model.point_cloud(200_000)                 # coloured points (mesh.points.PointCloud)
    model.parts()                              # convex parts (bsp runs)
    model.render_video("orbit", "orbit.mp4", kind="depth")
    model.evaluate()                           # metrics again, from the checkpoint

A method answers what its task allows; the others raise ``InputError`` saying what to do instead.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .runs import Run


@dataclass
class Rendering:
    """A rendered image. rgb [H,W,3] float in [0,1]; opacity [H,W] in [0,1]; depth [H,W] (expected distance along
    each ray where the opacity is, nan where nothing was hit or the method has no depth); ``samples``: field
    evaluations it took (0 for rasterized methods). Tensors on the CPU, or on the model's GPU for the viewer."""

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    samples: int = 0
    normals: torch.Tensor | None = None  # [H,W,3] unit, where asked for (mode "normals")

    def numpy_rgb(self) -> np.ndarray:
        return self.rgb.detach().float().cpu().numpy()


@dataclass
class Occupancy:
    """Inside/outside of a run's geometry, for ``export --via bsp``.

    ``inside(points [N,3]) -> bool [N]`` is a torch function on ``device`` in the run's field space; the unit
    frame ``(x - center) * scale`` puts the geometry inside [-1,1]^3 (its box's diagonal about 1.9, as shapes
    are fitted); ``to_world(vertices [V,3] numpy)`` maps field-space points to the run's world frame (None:
    identity; forward-facing NDC scenes map back from the NDC cube)."""

    inside: object
    center: np.ndarray
    scale: float
    device: str = "cpu"
    to_world: object = None

    @classmethod
    def of_box(cls, inside, lo, hi, device="cpu", to_world=None) -> "Occupancy":
        """The unit frame of the box lo..hi: its centre at 0, its diagonal 1.9."""
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        return cls(inside, (lo + hi) / 2, 1.9 / float(np.linalg.norm(hi - lo)), device, to_world)

    def world(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v) if self.to_world is None else self.to_world(v)


class Model:
    """Base of every method's loaded run (see the module doc). Subclasses set ``task`` and implement what
    applies; the defaults say what does not."""

    task = ""
    render_modes: tuple[str, ...] = ()  # what ``render(camera, mode)`` can show (the viewer's modes)

    def __init__(self, run: Run, config: dict, device="cpu"):
        self.run, self.config, self.device = run, config, torch.device(device)

    @property
    def method(self) -> str:
        return self.config.get("method", "")

    @property
    def metrics(self) -> dict:
        """metrics.json of the run (empty before the fit ended)."""
        return self.run.metrics()

    def cameras(self, split: str | None = None) -> list:
        """The scene's cameras (``render.Camera``) of ``split`` (train / test; all when None)."""
        raise InputError(self.run.path, f"{_a(self.task)} run has no scene cameras")

    def render(self, camera, mode: str = "colour") -> Rendering:
        """The run seen from ``camera`` (a ``render.Camera``)."""
        raise InputError(self.run.path, f"{_a(self.task)} run of {self.method} cannot render cameras",
                         "look at its outputs with fieldfit view RUN")

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """Write a watertight mesh of the run's geometry to ``path`` (.ply .obj .stl .glb); returns its figures."""
        raise InputError(self.run.path, f"{_a(self.task)} run has no geometry to export")

    def occupancy(self) -> Occupancy:
        """The run's inside/outside (for ``export --via bsp``)."""
        raise InputError(self.run.path, f"{_a(self.task)} run has no geometry to export")

    def point_cloud(self, max_points: int = 200_000):
        """At most ``max_points`` coloured points of the run's surface in its world frame (``mesh.points.PointCloud``;
        shape runs: with normals)."""
        raise InputError(self.run.path, f"{_a(self.task)} run has no geometry to export")

    def parts(self) -> list:
        """The run's convex parts [(vertices [V,3], faces [F,3])], closed convex meshes in its world frame."""
        raise InputError(self.run.path, f"{_a(self.task)} run of {self.method} has no convex parts",
                         "bsp runs have them: fieldfit SHAPE --method bsp; or add --via bsp to approximate this run")

    def evaluate(self) -> dict:
        """Measure the run again from its checkpoint; merges into and returns metrics.json."""
        raise InputError(self.run.path, "this run cannot be re-evaluated")

    def render_video(self, path: str, out, frames: int = 60, *, cameras: list | None = None, fps: float = 24.0,
                     size: tuple[int, int] | None = None, kind: str = "rgb") -> tuple[Path, str]:
        """Render camera path ``path`` (orbit | spiral | test; or the Cameras ``cameras``, e.g. of
        ``render.camera_path.load_camera_path``) to ``out`` at ``fps``; ``size`` (width, height) resizes path
        cameras; ``kind``: rgb | depth | normal (``render.passes``). Returns (file written, note)."""
        raise InputError(self.run.path, f"{_a(self.task)} run has no camera path to render")

    def state(self) -> dict:
        """The tensors the checkpoint holds (for the live viewer: ``sync``)."""
        raise NotImplementedError

    def sync(self, tensors: dict) -> None:
        """Take the weights of a fit still training (checkpoint tensors, 'model.' prefix)."""
        raise InputError(self.run.path, f"{self.method} runs cannot follow a fit while it trains")


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def model_tensors(tensors: dict) -> dict:
    """The 'model.'-prefixed entries of checkpoint tensors, prefix removed."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


__all__ = ["Model", "Occupancy", "Rendering", "model_tensors"]
