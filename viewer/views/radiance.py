"""Radiance runs (rbf/radiance): the radiance method's own marcher, from any camera.

What this view needs from fieldfit.methods.rbf_radiance (the contract; nothing else is used):
  load(run, device) -> (RadianceModel, MarchConfig, config)     trained model, eval mode
  build_model(config, device) -> (RadianceModel, MarchConfig)   untrained (training while viewing)
  _scene_of(config) -> Scene                                    cameras, background, NDC mapping
  RadianceModel.render(origins, dirs, background, march) -> (RenderOutput, RaySamples)
  RadianceModel.field.density(x) -> [N]                         for the normals mode
Rays are made as the method makes them for its test renders (float64 pixel rays, mapped to
the marching space, then float32), so a scene camera renders exactly renders/test_NNN.png.
"""

import numpy as np
import torch

from ..camera import Camera, Lens, Preset, look_at
from ..registry import register
from .base import check_mode, colormap, frame_uint8, normals_rgb, to_uint8


def scene_presets(scene) -> list[Preset]:
    """The scene's cameras as presets named "train:K" / "test:K" (K-th camera of the split)."""
    out = []
    for split in ("train", "test"):
        for k, i in enumerate(scene.splits.get(split, [])):
            f = scene.frames[i]
            out.append(Preset(f"{split}:{k}", np.asarray(f.c2w, np.float64),
                              Lens.of_frame(f.fx, f.fy, f.cx, f.cy, f.width, f.height), (f.width, f.height)))
    return out


@register("rbf/radiance")
class RadianceView:
    modes = ("colour", "depth", "normals", "opacity")
    planar = False

    def __init__(self, model, march, scene, device="cpu"):
        from fieldfit.methods.radiance_render import march_mode, render_chunk

        self.model, self.march, self.scene, self.device = model, march, scene, torch.device(device)
        self.mode = march_mode(self.device, model)  # the marcher of the method's own renders: pinned on a CPU
        self.choice = self._auto_choice()  # on a GPU: the fastest marcher, timed on the frames (viewer/marcher.py)
        self.chunk = render_chunk(self.device)  # and its rays per chunk
        from fieldfit.methods.radiance_data import eval_background

        self.background = torch.as_tensor(eval_background(scene), device=self.device)
        first = scene.frames[(scene.splits.get("train") or [0])[0]]
        self.default_size = (first.width, first.height)

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        from fieldfit.methods import rbf_radiance

        if live:
            cfg = run.config()
            model, march = rbf_radiance.build_model(cfg, device)
            model.eval()
        else:
            model, march, cfg = rbf_radiance.load(run, device)
        return cls(model, march, rbf_radiance._scene_of(cfg), device)

    def _auto_choice(self):
        import os

        from fieldfit.methods.radiance_render import MARCH_MODES

        from ..marcher import MarcherChoice

        if self.device.type != "cuda" or os.environ.get("FIELDFIT_MARCH", "").strip():
            return None
        usable = [m for m in MARCH_MODES if m != "fused" or self.model.fusable()]
        return MarcherChoice(sorted(usable, key=lambda m: m != self.mode))  # the default first: timed first

    def sync(self, tensors: dict) -> None:
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(sd)
        self.model.refresh()
        if self.choice is not None:
            self.choice.weights_changed()

    def status(self) -> str:
        """The marcher drawing frames, for the status line ("auto": still timing them)."""
        if self.choice is None:
            return f"march {self.mode}"
        return f"march {self.choice.last or 'auto'}" + ("" if self.choice.settled else " (timing)")

    def presets(self) -> list[Preset]:
        return scene_presets(self.scene)

    def home(self, aspect: float) -> Camera:
        """The first training camera, orbiting the point the cameras look at."""
        from fieldfit.methods.radiance_paths import _mean_up
        from fieldfit.scenes.nerfstudio import look_at_centre

        f = self.scene.frames[(self.scene.splits.get("train") or [0])[0]]
        up = _mean_up(self.scene)
        lens = Lens.of_frame(f.fx, f.fy, f.cx, f.cy, f.width, f.height)
        eye = np.asarray(f.c2w[:, 3], np.float64)
        centre = None if self.scene.ndc else look_at_centre(self.scene.frames)
        if centre is None or not np.all(np.isfinite(centre)) or np.linalg.norm(centre - eye) < 1e-6:
            bounds = self.scene.metadata.get("bounds")
            dist = float(np.median(bounds)) if bounds is not None else 1.0
            return Camera(np.asarray(f.c2w, np.float64), dist, up, lens)
        return Camera(look_at(eye, centre, up), float(np.linalg.norm(centre - eye)), up, lens)

    def rays(self, camera: Camera, width: int, height: int):
        """(origins, dirs) [H*W,3] float32 in the marching space."""
        from fieldfit.methods.radiance_data import to_march_space
        from fieldfit.render import image_rays

        fx, fy, cx, cy = camera.intrinsics(width, height)
        c2w = torch.as_tensor(camera.c2w, dtype=torch.float64, device=self.device)  # rays made on the device
        o, d = image_rays(height, width, fx, fy, cx, cy, c2w)
        o, d = to_march_space(self.scene, o, d)
        return o.float().contiguous(), d.float().contiguous()

    @torch.no_grad()
    def composite(self, origins, dirs):
        """(rgb [R,3] clamped, opacity [R], expected t [R]) on the view's device, for rays there, in chunks."""
        rgb, opacity, depth = self._march(origins, dirs)
        t = depth / opacity.clamp_min(1e-10)  # RenderOutput.normalized_depth
        return rgb.clamp(0, 1), opacity, t

    def _march(self, origins, dirs):
        """render_chunked by the pinned marcher, or on a GPU by the one ``choice`` picks (timed here)."""
        import logging
        import time

        from fieldfit.methods.radiance_render import render_chunked

        def draw(mode):
            return render_chunked(self.model, origins, dirs, self.background, self.march, self.chunk, mode)[:3]

        if self.choice is None:
            return draw(self.mode)
        n = origins.shape[0]
        while True:
            mode = self.choice.pick(n)
            self._sync()
            start = time.perf_counter()
            try:
                out = draw(mode)
                self._sync()
            except Exception as exc:  # noqa: BLE001 - a marcher that fails (a kernel that does not compile) is dropped
                if len(self.choice.candidates) == 1:
                    raise
                logging.getLogger("fieldfit").warning("viewer: the %s marcher failed (%s: %s); using the others",
                                                      mode, type(exc).__name__, exc)
                self.choice.failed(mode)
                continue
            self.choice.record(n, mode, time.perf_counter() - start)
            return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def normals(self, x: torch.Tensor, chunk: int = 1 << 15) -> torch.Tensor:
        """Unit normals [N,3] = -grad(density) / |grad(density)| at points x [N,3] (marching space)."""
        out = []
        for s in range(0, x.shape[0], chunk):
            p = x[s:s + chunk].to(self.device).requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self.model.field.density(p).sum(), p)
            out.append(torch.nn.functional.normalize(-g, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 3)

    def render(self, camera: Camera, width: int, height: int, mode: str = "colour"):
        """uint8 [H,W,3]: numpy, or for colour and opacity on a GPU a tensor there (``frame_uint8``)."""
        mode = check_mode(self, mode)
        o, d = self.rays(camera, width, height)
        rgb, opacity, t = self.composite(o, d)
        if mode == "colour":
            return frame_uint8(rgb.reshape(height, width, 3))
        if mode == "opacity":
            return frame_uint8(opacity.reshape(height, width, 1).expand(height, width, 3))
        opacity, t = opacity.cpu(), t.cpu()
        solid = (opacity > 0.5).reshape(height, width)
        if mode == "depth":
            img = colormap(t.reshape(height, width).numpy(), solid.numpy())
        else:
            flat = solid.reshape(-1)
            n = torch.zeros(height * width, 3)
            n[flat] = self.normals(o.cpu()[flat] + d.cpu()[flat] * t[flat, None])
            img = normals_rgb(n.reshape(height, width, 3).numpy(), solid.numpy())
        return to_uint8(img)


__all__ = ["RadianceView", "scene_presets"]
