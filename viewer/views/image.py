"""Image runs: the fitted 2D field, evaluated on the visible window at any zoom.

The image lies on the plane z = 0, one unit per pixel of the fitted image: column c and
row r cover x in [c, c+1], y in [-(r+1), -r] (y up, so the image is upright). A point of the
plane maps to the field's uv as the fit defines it (rbf_image.pixel_uv: pixel centres from
-1 to 1), so the home camera at the image's own size draws exactly reconstruction.png, and a
zoomed camera evaluates the field between the training pixels.
"""

import numpy as np
import torch

from ..camera import Camera, Lens, look_at
from ..registry import register
from .base import BACKGROUND, camera_rays, check_mode, to_uint8


@register("rbf/image")
class ImageView:
    modes = ("colour",)
    planar = True

    def __init__(self, model, config: dict, device="cpu"):
        self.model, self.device = model, torch.device(device)
        self.h, self.w, self.channels = int(config["height"]), int(config["width"]), int(config["channels"])
        self.default_size = (self.w, self.h)

    @classmethod
    def open(cls, run, device="cpu", live: bool = False):
        from fieldfit.fields.gaussian_rbf import FieldConfig, ImageRBF
        from fieldfit.methods import rbf_image

        if live:  # weights arrive through sync()
            cfg = run.config()
            model = ImageRBF(FieldConfig.from_dict(cfg["field"]), channels=cfg["channels"], device=device)
            return cls(model.to(device).eval(), cfg, device)
        model, cfg = rbf_image.load(run, device)
        return cls(model.eval(), cfg, device)

    def sync(self, tensors: dict) -> None:
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(sd)

    def home(self, aspect: float) -> Camera:
        """Straight above the image centre, the whole image in view (one image pixel per window pixel
        when the window has the image's size)."""
        lens = Lens(aspect=1.0)
        fit_h = max(self.h, self.w / max(aspect, 1e-6))
        dist = fit_h * lens.fy_rel
        centre = np.array([self.w / 2.0, -self.h / 2.0, 0.0])
        return Camera(look_at(centre + [0, 0, dist], centre, [0, 1, 0]), dist, [0, 0, 1], lens)

    def presets(self) -> list:
        return []

    def plane_uv(self, camera: Camera, width: int, height: int):
        """(uv [H*W,2] of the field, inside [H*W] bool) where each pixel's ray meets the image plane."""
        o, d = camera_rays(camera, width, height, torch.float64, self.device)
        t = -o[:, 2] / torch.where(d[:, 2].abs() > 1e-12, d[:, 2], torch.full_like(d[:, 2], 1e-12))
        p = o + t[:, None] * d
        x, row = p[:, 0], -p[:, 1]
        inside = (t > 0) & (x >= 0) & (x <= self.w) & (row >= 0) & (row <= self.h)
        u = -1.0 + 2.0 * (x - 0.5) / max(self.w - 1, 1)
        v = -1.0 + 2.0 * (row - 0.5) / max(self.h - 1, 1)
        return torch.stack([u, v], -1).float(), inside

    @torch.no_grad()
    def render(self, camera: Camera, width: int, height: int, mode: str = "colour") -> np.ndarray:
        check_mode(self, mode)
        uv, inside = self.plane_uv(camera, width, height)
        out = torch.as_tensor(BACKGROUND, device=self.device).repeat(width * height, 1)
        idx = inside.nonzero().squeeze(-1)
        chunk = 1 << 18
        for s in range(0, idx.numel(), chunk):
            sel = idx[s:s + chunk]
            rgb = self.model.rgb(uv[sel]).float().clamp(0, 1)
            out[sel] = rgb if rgb.shape[-1] == 3 else rgb[:, :1].expand(-1, 3)
        return to_uint8(out.reshape(height, width, 3))

