"""DNMP runs (dnmp/radiance): the method's own rasterizer and shader, from any camera.

What this view needs from fieldfit.methods.dnmp (the contract; nothing else is used):
  load(run, device) -> (DNMPModel, config)          trained model, geometry frozen
  _scene_of(config) -> Scene                        cameras and background
  dnmp_render.render_image(model, camera, dirs, background) -> (rgb [P,3], opacity [P])
Cameras, presets and the home view are the radiance view's (same scenes).
"""

import numpy as np
import torch

from ..camera import Camera
from ..registry import register
from .base import camera_rays, check_mode, to_uint8
from .radiance import RadianceView


@register("dnmp/radiance")
class DNMPView(RadianceView):
    modes = ("colour", "opacity")

    def __init__(self, model, scene, device="cpu"):
        super().__init__(model, None, scene, device)
        from fieldfit.methods.dnmp import _background

        self.bg = _background(scene)

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        from fieldfit.errors import InputError
        from fieldfit.methods import dnmp

        if live:
            raise InputError(run.path, "dnmp runs cannot be viewed while training", "view the finished run")
        model, cfg = dnmp.load(run, device)
        return cls(model, dnmp._scene_of(cfg), device)

    def sync(self, tensors: dict) -> None:
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(sd)
        self.model.freeze()

    def render(self, camera: Camera, width: int, height: int, mode: str = "colour") -> np.ndarray:
        from fieldfit.methods.dnmp_render import render_image
        from fieldfit.render.raster import PinholeCamera

        mode = check_mode(self, mode)
        fx, fy, cx, cy = camera.intrinsics(width, height)
        cam = PinholeCamera(torch.as_tensor(camera.c2w, dtype=torch.float64), fx, fy, cx, cy, width, height)
        _, d = camera_rays(camera, width, height)
        rgb, opacity = render_image(self.model, cam, d, self.bg)
        if mode == "opacity":
            return to_uint8(np.repeat(opacity.reshape(height, width, 1).numpy(), 3, axis=-1))
        return to_uint8(rgb.reshape(height, width, 3))


__all__ = ["DNMPView"]
