"""Posed images -> rays: the scene, training pixels on the host, test views, the marching space.

Marching space: world coordinates, except for forward-facing LLFF scenes (``scene.ndc``):
there rays are mapped to NeRF's normalised device coordinates (``render.ndc_rays`` with
the scene's ``ndc_params``) and the field lives in an NDC box: z in [-1,1] covers the near
plane to infinity with depth resolution uniform in disparity, and x, y cover every camera's
rays (a little wider than the average camera's [-1,1]). Directions are unit length in both spaces, so t is distance in that
space (for NDC: distance inside the cube, not metres).

Images stay on the host (numpy); only the sampled batch is moved to the device.
Pixels of images with alpha are kept premultiplied with their alpha, so a batch can be
composited on any background colour (random per ray during training).
"""

from dataclasses import dataclass

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.render import ndc_rays, pixel_rays
from fieldfit.scenes import Frame, Scene, load_scene


def load_radiance_scene(inp, extra: dict) -> Scene:
    """The Scene of an Input (folder or the built-in "blocks"), honouring downscale / test_every."""
    from fieldfit.scenes.builtin import blocks_scene_dir

    path = blocks_scene_dir() if inp.builtin == "blocks" else inp.path
    if path is None:
        raise InputError(inp.name, "not a posed-image scene", "pass a scene folder or 'blocks'")
    return load_scene(path, downscale=int(extra.get("downscale", 1)), test_every=int(extra.get("test_every", 8)))


def _distortion(frame: Frame, device="cpu"):
    if frame.distortion is None or not np.any(frame.distortion):
        return None
    if frame.camera_model == "OPENCV_FISHEYE":
        raise InputError(frame.path or frame.name, "fisheye cameras are not supported by the radiance pipeline",
                         "undistort the images first (e.g. colmap image_undistorter)")
    return torch.as_tensor(frame.distortion, dtype=torch.float64, device=device)


def to_march_space(scene: Scene, origins: torch.Tensor, dirs: torch.Tensor):
    """World rays [R,3] -> rays of the marching space (NDC for ``scene.ndc``), unit dirs."""
    if not scene.ndc:
        return origins, dirs
    p = scene.ndc_params
    o, d = ndc_rays(origins, dirs, p.height, p.width, p.fx, p.near_plane)
    return o, d / d.norm(dim=-1, keepdim=True)


def frame_rays(scene: Scene, frame: Frame, xy: torch.Tensor | None = None, device="cpu"):
    """Rays of a frame's pixels (all, row-major, when xy is None), float32, marching space.

    xy [N,2] are pixel positions (col + 0.5, row + 0.5 at centres). Lens distortion is undone
    exactly (render.pixel_rays); computed in float64 on ``device`` (an 800x800 frame costs
    ~60 ms on 2 CPU cores, nothing on a GPU), returned as float32 there.
    """
    if xy is None:
        ys, xs = torch.meshgrid(torch.arange(frame.height, dtype=torch.float64, device=device) + 0.5,
                                torch.arange(frame.width, dtype=torch.float64, device=device) + 0.5, indexing="ij")
        xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)
    c2w = torch.as_tensor(frame.c2w, dtype=torch.float64, device=device)
    o, d = pixel_rays(xy.double(), frame.fx, frame.fy, frame.cx, frame.cy, c2w, _distortion(frame, device))
    o, d = to_march_space(scene, o, d)
    return o.float().contiguous(), d.float().contiguous()


def march_bounds(scene: Scene) -> tuple[float, float]:
    """(near, far) along unit marching-space directions (NDC: the cube clips the rays)."""
    return (0.0, float("inf")) if scene.ndc else (float(scene.near), float(scene.far))


def unit_box(scene: Scene) -> np.ndarray:
    """[2,3] box that sets the density unit and the NDC march step: the scene's box, except for
    NDC scenes, where it is the cube [-1,1]^3 (their box is wider in x and y only, see
    ``scenes.llff.ndc_box``, and distance along a ray is mostly the depth axis)."""
    if scene.ndc:
        return np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    return np.asarray(scene.aabb, np.float64)


def eval_background(scene: Scene) -> np.ndarray:
    """[3] the colour test images are composited on (black for scenes without alpha)."""
    return np.zeros(3, np.float32) if scene.background is None else np.asarray(scene.background, np.float32)


def premultiplied(scene: Scene, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb premultiplied [H,W,3], alpha [H,W]) of frame i; alpha 1 without an alpha channel."""
    img = scene.image(i)
    alpha = scene.alpha(i)
    if alpha is None:
        return img, np.ones(img.shape[:2], np.float32)
    return img - (1.0 - alpha)[..., None] * eval_background(scene), alpha


@dataclass
class RayBatch:
    """R rays and their targets. rgb is premultiplied; target(bg) composites it on bg."""

    origins: torch.Tensor  # [R,3]
    dirs: torch.Tensor  # [R,3] unit
    rgb: torch.Tensor  # [R,3] premultiplied
    alpha: torch.Tensor  # [R]

    def target(self, background: torch.Tensor) -> torch.Tensor:
        """[R,3] the pixel colours seen on ``background`` [3] or [R,3]."""
        return self.rgb + (1.0 - self.alpha)[:, None] * background

    def to(self, device) -> "RayBatch":
        return RayBatch(*(t.to(device, non_blocking=True) for t in (self.origins, self.dirs, self.rgb, self.alpha)))


class PixelStore:
    """Every pixel of some frames, with its ray; ``sample`` / ``take`` draw batches.

    The pixels live in host memory, or on a GPU after ``keep_on`` (when they fit): batches are then gathered
    there, with no host gather and no copy per step (on a 2-core CPU the host gather of 52,000 rays of
    lego 400x400 takes 3.1 ms with torch's index_select, 12.0 ms with numpy's fancy indexing; the H200's
    training step of 2026-11-26 spent 6.3 of 54 ms making its batch on the host)."""

    def __init__(self, scene: Scene, ids: list[int]):
        if not ids:
            raise InputError(scene.source, "no frames to train on", "check the scene's train split")
        parts = [self._frame(scene, i) for i in ids]
        self.origins, self.dirs, self.rgb, self.alpha = (np.concatenate(p) for p in zip(*parts))
        self.count = len(self.rgb)
        self._tensors = tuple(torch.from_numpy(a) for a in (self.origins, self.dirs, self.rgb, self.alpha))

    @staticmethod
    def _frame(scene: Scene, i: int):
        rgb, alpha = premultiplied(scene, i)
        o, d = frame_rays(scene, scene.frames[i])
        return o.numpy(), d.numpy(), rgb.reshape(-1, 3), alpha.reshape(-1)

    @property
    def device(self) -> torch.device:
        return self._tensors[0].device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors)

    def keep_on(self, device, share: float = 0.25) -> bool:
        """Move the pixels to ``device`` when it is a GPU and they take at most ``share`` of its free memory
        (lego 400x400: 16 M pixels, 640 MB). Returns whether they are there."""
        device = torch.device(device)
        if device.type != "cuda":
            return self.device == device
        free, _ = torch.cuda.mem_get_info(device)
        if self.nbytes > share * free:
            return False
        self._tensors = tuple(t.to(device) for t in self._tensors)
        return True

    def take(self, idx: np.ndarray) -> RayBatch:
        """The pixels ``idx`` [R] as a RayBatch where the pixels live (the host, or the GPU of ``keep_on``)."""
        idx = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)).to(self.device)
        return RayBatch(*(t.index_select(0, idx) for t in self._tensors))

    def sample(self, n: int, rng: np.random.Generator) -> RayBatch:
        """n pixels drawn uniformly with replacement."""
        return self.take(rng.integers(0, self.count, int(n)))

    def mean_colour(self) -> np.ndarray:
        """[3] mean premultiplied colour (for baselines)."""
        return self.rgb.mean(axis=0)


__all__ = ["PixelStore", "RayBatch", "eval_background", "frame_rays", "load_radiance_scene", "march_bounds",
           "premultiplied", "to_march_space"]
