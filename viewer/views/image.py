"""Image runs: the fitted 2D field, evaluated on the visible window at any zoom.

The image lies on the plane z = 0, one unit per pixel of the fitted image: column c and
row r cover x in [c, c+1], y in [-(r+1), -r] (y up, so the image is upright). A point of the
plane maps to the field's uv as the fit defines it (pixel centres from -1 to 1), so the home
camera at the image's own size draws exactly reconstruction.png, and a zoomed camera evaluates
the field between the training pixels (``ImageModel.rgb(uv)``).
"""

import numpy as np
import torch

from fieldfit.render.camera import Camera, look_at

from ..camera import Orbit, lens
from ..registry import register
from .base import BACKGROUND, check_mode, to_uint8


@register("image")
class ImageView:
    modes = ("colour",)
    planar = True

    def __init__(self, model):
        self.model, self.device = model, torch.device(model.device)
        self.h, self.w = int(model.height), int(model.width)
        self.default_size = (self.w, self.h)

    @classmethod
    def open(cls, model, live: bool = False):
        return cls(model)  # live: untrained weights, sync() brings the trainer's

    def sync(self, tensors: dict, force: bool = False) -> None:
        self.model.sync(tensors)

    def home(self, aspect: float) -> Orbit:
        """Straight above the image centre, the whole image in view (one image pixel per window pixel
        when the window has the image's size)."""
        ref = lens(*self.default_size)
        fit_h = max(self.h, self.w / max(aspect, 1e-6))
        dist = fit_h * ref.fy / ref.height
        centre = np.array([self.w / 2.0, -self.h / 2.0, 0.0])
        return Orbit(ref.with_pose(look_at(centre + [0, 0, dist], centre, [0, 1, 0])), dist, [0, 0, 1])

    def presets(self) -> list:
        return []

    def plane_uv(self, camera: Camera):
        """(uv [H*W,2] of the field, inside [H*W] bool) where each pixel's ray meets the image plane."""
        o, d = camera.rays(device=self.device, dtype=torch.float64)
        t = -o[:, 2] / torch.where(d[:, 2].abs() > 1e-12, d[:, 2], torch.full_like(d[:, 2], 1e-12))
        p = o + t[:, None] * d
        x, row = p[:, 0], -p[:, 1]
        inside = (t > 0) & (x >= 0) & (x <= self.w) & (row >= 0) & (row <= self.h)
        u = -1.0 + 2.0 * (x - 0.5) / max(self.w - 1, 1)
        v = -1.0 + 2.0 * (row - 0.5) / max(self.h - 1, 1)
        return torch.stack([u, v], -1).float(), inside

    @torch.no_grad()
    def render(self, camera: Camera, mode: str = "colour") -> np.ndarray:
        check_mode(self, mode)
        width, height = camera.width, camera.height
        uv, inside = self.plane_uv(camera)
        out = torch.as_tensor(BACKGROUND, device=self.device).repeat(width * height, 1)
        idx = inside.nonzero().squeeze(-1)
        chunk = 1 << 18
        for s in range(0, idx.numel(), chunk):
            sel = idx[s:s + chunk]
            out[sel] = self.model.rgb(uv[sel]).to(out.device, out.dtype)
        return to_uint8(out.reshape(height, width, 3))


__all__ = ["ImageView"]
