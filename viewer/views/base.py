"""The contract every view answers, and small helpers shared by the views.

A view draws one loaded run (a ``fieldfit.model.Model``): ``render(camera, mode) -> uint8 [H,W,3]`` for a
``fieldfit.render.camera.Camera`` already sized to the frame (a numpy array, or a torch tensor on the
view's GPU, which ``overlay.compose`` scales there); ``modes`` lists its modes (the first is the default);
``home(aspect)`` is the reset ``Orbit`` for a window of that aspect; ``presets()`` are the scene's cameras
for [ and ] and ``--camera``; ``planar`` says that the mouse pans instead of orbiting (2D views);
``default_size`` is the window size when none is asked for. ``sync(tensors)`` takes the weights of a fit
that is still training (checkpoint tensors: the live view, or a run followed while it trains).
"""

from typing import Protocol

import numpy as np
import torch

from fieldfit.render.camera import Camera

from ..camera import Orbit, Preset

BACKGROUND = np.array([0.16, 0.16, 0.18], np.float32)  # outside the image / where rays hit nothing


class View(Protocol):
    modes: tuple[str, ...]
    planar: bool
    default_size: tuple[int, int]

    def render(self, camera: Camera, mode: str) -> np.ndarray: ...

    def home(self, aspect: float) -> Orbit: ...

    def presets(self) -> list[Preset]: ...

    def sync(self, tensors: dict, force: bool = False) -> None: ...


def to_uint8(rgb) -> np.ndarray:
    """float [H,W,3] in [0,1] (numpy or torch) -> uint8 [H,W,3], rounded like the run's PNGs."""
    if torch.is_tensor(rgb):
        rgb = rgb.detach().float().cpu().numpy()
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def frame_uint8(rgb: torch.Tensor):
    """float [H,W,3] in [0,1] -> uint8 [H,W,3]: on a GPU a tensor converted (and later composed) there, so
    only a quarter of the bytes cross to the host and the CPU does no per-pixel work; else ``to_uint8``'s
    numpy array. The same rounding either way."""
    if rgb.device.type == "cpu":
        return to_uint8(rgb)
    return (rgb.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


_LUT = None


def colormap(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scalar image [H,W] -> float [H,W,3] through the turbo colour map, scaled to the valid range."""
    global _LUT
    if _LUT is None:
        import matplotlib

        _LUT = matplotlib.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3].astype(np.float32)
    v = np.asarray(values, np.float32)
    valid = np.isfinite(v) if valid is None else (valid & np.isfinite(v))
    out = np.broadcast_to(BACKGROUND, v.shape + (3,)).copy()
    if valid.any():
        lo, hi = float(v[valid].min()), float(v[valid].max())
        t = (v[valid] - lo) / max(hi - lo, 1e-12)
        out[valid] = _LUT[np.clip((t * 255).astype(np.int64), 0, 255)]
    return out


def normals_rgb(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unit normals [H,W,3] -> colours n/2 + 1/2, background where not valid."""
    out = np.broadcast_to(BACKGROUND, normals.shape).copy()
    out[valid] = normals[valid] * 0.5 + 0.5
    return out


def check_mode(view, mode: str) -> str:
    from fieldfit.errors import InputError

    mode = mode or view.modes[0]
    if mode not in view.modes:
        raise InputError(f"--mode {mode}", "not a mode of this view", f"choose one of {', '.join(view.modes)}")
    return mode
