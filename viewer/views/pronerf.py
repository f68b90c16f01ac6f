"""pronerf runs (pronerf/radiance): the run's own sampler and field, from any camera.

What this view needs from fieldfit.methods.pronerf (the contract; nothing else is used):
  load(run, device) -> (ProNeRFModel with its source views, Scene, config)    trained, eval mode
  build_model(config, device), attach_sources(model, scene, config, device)  untrained (live)
  _scene_of(config) -> Scene                                                 cameras, source images
  ProNeRFModel.render(origins, dirs, background, views) -> (RenderOutput, proposal)
  ProNeRFModel.sources.nearest(position, k)                                  the views to project into
The source views of a frame are the training cameras nearest the viewer's camera; their images
are loaded on first use and kept in memory (METHODS.md 3.7.1).
"""

import numpy as np
import torch

from ..camera import Camera
from ..registry import register
from .base import check_mode, colormap, to_uint8
from .radiance import RadianceView, scene_presets


@register("pronerf/radiance")
class ProNeRFView:
    modes = ("colour", "depth", "opacity")
    planar = False
    chunk = 8192

    def __init__(self, model, scene, device="cpu"):
        from fieldfit.methods.radiance_data import eval_background

        self.model, self.scene, self.device = model, scene, torch.device(device)
        self.background = torch.as_tensor(eval_background(scene), device=self.device)
        first = scene.frames[(scene.splits.get("train") or [0])[0]]
        self.default_size = (first.width, first.height)

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        from fieldfit.methods import pronerf

        if live:
            cfg = run.config()
            scene = pronerf._scene_of(cfg)
            model = pronerf.attach_sources(pronerf.build_model(cfg, device), scene, cfg, device)
            model.eval()
        else:
            model, scene, cfg = pronerf.load(run, device)
        return cls(model, scene, device)

    def sync(self, tensors: dict) -> None:
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(sd)

    def presets(self):
        return scene_presets(self.scene)

    def home(self, aspect: float) -> Camera:
        return RadianceView.home(self, aspect)  # needs only self.scene

    def rays(self, camera: Camera, width: int, height: int):
        return RadianceView.rays(self, camera, width, height)  # needs only self.scene and self.device

    @torch.no_grad()
    def composite(self, origins, dirs, position):
        """(rgb [R,3] clamped, opacity [R], expected t [R]) on the CPU."""
        views = torch.tensor(self.model.sources.nearest(position, self.model.refiner.v), device=self.device)
        rgb, opa, depth = [], [], []
        for s in range(0, origins.shape[0], self.chunk):
            out, _ = self.model.render(origins[s:s + self.chunk], dirs[s:s + self.chunk], self.background, views)
            rgb.append(out.rgb.clamp(0, 1).cpu())
            opa.append(out.opacity.cpu())
            depth.append(out.normalized_depth().cpu())
        return torch.cat(rgb), torch.cat(opa), torch.cat(depth)

    def render(self, camera: Camera, width: int, height: int, mode: str = "colour") -> np.ndarray:
        mode = check_mode(self, mode)
        o, d = self.rays(camera, width, height)
        rgb, opacity, t = self.composite(o, d, camera.eye)
        if mode == "colour":
            img = rgb.reshape(height, width, 3).numpy()
        elif mode == "opacity":
            img = np.repeat(opacity.reshape(height, width, 1).numpy(), 3, axis=-1)
        else:
            img = colormap(t.reshape(height, width).numpy(), (opacity > 0.5).reshape(height, width).numpy())
        return to_uint8(img)


__all__ = ["ProNeRFView"]
