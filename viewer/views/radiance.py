"""Radiance runs (rbf, pronerf, dnmp): the run's own renderer from any camera, ``model.render(camera, mode)``.

Every radiance Model answers ``render(camera, mode) -> Rendering`` (rgb, opacity, depth: expected distance,
nan where nothing was hit or the method has none; ``normals`` where the method computes them), so one view
draws them all; its modes are the run's ``render_modes``: colour, depth (not dnmp's: rasterized primitives carry
no depth), normals (rbf), opacity. A scene camera renders through the same call
as the method's test renders, so ``--camera test:K`` gives renders/test_K.png.

rbf on a GPU: frames stay on the device (``render(..., on_device=True)``) and, with FIELDFIT_MARCH unset, the
marcher is the fastest of ``model.marchers()``, timed on the frames themselves (viewer/marcher.py). On a CPU
the marcher is the one the run's own renders use (``model.march_mode()``).
"""

import logging
import os
import time

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera, look_at, look_at_centre, mean_up

from ..camera import Orbit, Preset
from ..registry import register
from .base import check_mode, colormap, frame_uint8, normals_rgb, to_uint8

ALL_MODES = ("colour", "depth", "normals", "opacity")


def cameras_of(model, split: str | None = None) -> list[Camera]:
    """The run's scene cameras of ``split`` ([] when the scene has no such split)."""
    try:
        return list(model.cameras(split))
    except InputError:
        return []


def scene_presets(model) -> list[Preset]:
    """The scene's cameras as presets named "train:K" / "test:K" (K-th camera of the split)."""
    return [Preset(f"{split}:{k}", cam) for split in ("train", "test")
            for k, cam in enumerate(cameras_of(model, split))]


@register("radiance")
class RadianceView:
    MODES = ALL_MODES  # the modes a radiance view may offer; an instance offers its run's (``modes``)
    modes = ALL_MODES
    planar = False

    def __init__(self, model):
        self.model, self.device = model, torch.device(model.device)
        cams = cameras_of(model, "train") or cameras_of(model)
        if not cams:
            raise InputError(model.run.path, "the run's scene has no cameras", "check the scene the run was fitted to")
        self.default_size = (cams[0].width, cams[0].height)
        self.marching = hasattr(model, "marchers")  # rbf: render(camera, mode, march=, on_device=)
        self.march = model.march_mode() if self.marching else None  # the marcher of the method's own renders
        self.on_device = self.marching and self.device.type == "cuda"  # frames stay on the GPU
        self.choice = self._auto_choice()  # on a GPU: the fastest marcher, timed on the frames (viewer/marcher.py)
        self.modes = tuple(m for m in model.render_modes if m in ALL_MODES)

    @classmethod
    def open(cls, model, live: bool = False):
        return cls(model)  # live: untrained weights until sync()

    def _auto_choice(self):
        from ..marcher import MarcherChoice

        if not self.on_device or os.environ.get("FIELDFIT_MARCH", "").strip():
            return None
        usable = list(self.model.marchers())
        return MarcherChoice(sorted(usable, key=lambda m: m != self.march))  # the default first: timed first

    def sync(self, tensors: dict, force: bool = False) -> None:
        self.model.sync(tensors)
        if self.choice is not None:
            self.choice.weights_changed()

    def status(self) -> str:
        """The marcher drawing frames, for the status line ("auto": still timing them); "" for other methods."""
        if not self.marching:
            return ""
        if self.choice is None:
            return f"march {self.march}"
        return f"march {self.choice.last or 'auto'}" + ("" if self.choice.settled else " (timing)")

    def presets(self) -> list[Preset]:
        return scene_presets(self.model)

    def home(self, aspect: float) -> Orbit:
        """The first training camera, orbiting the point the cameras look at."""
        first = (cameras_of(self.model, "train") or cameras_of(self.model))[0]
        every = cameras_of(self.model)
        up = mean_up(every)
        eye = first.position
        scene = getattr(self.model, "scene", None)
        ndc = bool(self.model.config.get("ndc") or getattr(scene, "ndc", False))
        centre = None if ndc else look_at_centre(every)
        if centre is None or not np.all(np.isfinite(centre)) or np.linalg.norm(centre - eye) < 1e-6:
            bounds = getattr(scene, "metadata", {}).get("bounds")
            dist = float(np.median(bounds)) if bounds is not None else 1.0
            return Orbit(first, dist, up)
        return Orbit(first.with_pose(look_at(eye, centre, up)), float(np.linalg.norm(centre - eye)), up)

    @torch.no_grad()
    def rendering(self, camera: Camera, mode: str = "colour"):
        """``model.render``: by the run's own marcher, or on a GPU by the one ``choice`` picks (timed here)."""
        if not self.marching:
            return self.model.render(camera, mode)
        if self.choice is None:  # the run's own marcher (FIELDFIT_MARCH, else march_mode())
            return self.model.render(camera, mode, on_device=self.on_device)
        n = camera.pixels
        while True:
            march = self.choice.pick(n)
            self._sync()
            start = time.perf_counter()
            try:
                out = self.model.render(camera, mode, march=march, on_device=True)
                self._sync()
            except Exception as exc:  # noqa: BLE001 - a marcher that fails (a kernel that does not compile) is dropped
                if len(self.choice.candidates) == 1:
                    raise
                logging.getLogger("fieldfit").warning("viewer: the %s marcher failed (%s: %s); using the others",
                                                      march, type(exc).__name__, exc)
                self.choice.failed(march)
                continue
            self.choice.record(n, march, time.perf_counter() - start)
            return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def render(self, camera: Camera, mode: str = "colour"):
        """uint8 [H,W,3]: numpy, or for colour and opacity on a GPU a tensor there (``frame_uint8``)."""
        mode = check_mode(self, mode)
        h, w = camera.height, camera.width
        r = self.rendering(camera, "normals" if mode == "normals" else "colour")
        if mode == "colour":
            return frame_uint8(r.rgb.float().clamp(0, 1).reshape(h, w, 3))
        if mode == "opacity":
            return frame_uint8(r.opacity.float().reshape(h, w, 1).expand(h, w, 3))
        solid = (r.opacity.float().cpu() > 0.5).reshape(h, w)
        if mode == "depth":
            depth = r.depth.float().cpu().reshape(h, w)
            img = colormap(depth.numpy(), (solid & torch.isfinite(depth)).numpy())
        else:
            img = normals_rgb(r.normals.float().cpu().reshape(h, w, 3).numpy(), solid.numpy())
        return to_uint8(img)


__all__ = ["ALL_MODES", "RadianceView", "cameras_of", "scene_presets"]
