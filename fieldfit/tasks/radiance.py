"""The radiance task's data: posed images -> rays in the marching space, training pixels, test pixels.

Marching space: world coordinates, except for forward-facing LLFF scenes (``scene.ndc``): there rays are
mapped to NeRF's normalised device coordinates (``scene.ndc_params``, ``render.rays.NDCParams``) and the field
lives in an NDC box: z in [-1,1] covers the near plane to infinity with depth resolution uniform in disparity,
and x, y cover every camera's rays (a little wider than the average camera's [-1,1]). Directions are unit
length in both spaces, so t is distance in that space (for NDC: distance inside the cube, not metres).

Unbounded captures (``scene_contraction``): real photos in world space (no alpha, not NDC) are marched through
a scene contraction (``render.contraction``): an inner cube around what the cameras look at keeps world
coordinates, all space beyond it is folded into a shell, so content out to the horizon has a place in the field.

Images stay on the host (numpy); only the sampled batch is moved to the device. Pixels of images with alpha
are kept premultiplied with their alpha, so a batch can be composited on any background colour (random per
ray during training).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera, look_at_centre
from fieldfit.render.contraction import Contraction
from fieldfit.scenes import Scene, load_scene


def load_radiance_scene(inp, downscale: int = 1, test_every: int = 8) -> Scene:
    """The Scene of an Input (a folder, or a built-in radiance scene: "blocks", "street")."""
    from fieldfit.scenes.builtin import BUILTIN, radiance_scene_dir

    radiance = [k for k, b in BUILTIN.items() if b.task == "radiance"]
    path = radiance_scene_dir(inp.builtin) if inp.builtin in radiance else inp.path
    if path is None:
        raise InputError(inp.name, "not a posed-image scene", f"pass a scene folder or one of {', '.join(radiance)}")
    scene = load_scene(path, downscale=int(downscale), test_every=int(test_every))
    views = scene.split("train")
    foot = pixel_footprint(scene) if views else 0.0
    if not foot > 0 or not np.isfinite(foot):  # one view, or every camera at one point: no centre, no scale
        raise InputError(scene.source, f"its {len(views)} training view(s) do not see the scene from two places",
                         "a radiance fit needs training cameras at two or more positions")
    return scene


def radiance_setup(job, config_cls, run_config) -> tuple:
    """(Config, scene, run config) of a radiance fit: on a resume the run's saved config with the given options
    over it; else ``config_cls.for_scene`` resolves the options for the scene and ``run_config(scene, input,
    cfg, seed)`` writes them down."""
    if job.resume:
        cfg = config_cls.from_dict(job.saved["config"]).replace(**job.options)
        scene = load_radiance_scene(job.input, cfg.downscale, cfg.test_every)
        return cfg, scene, {**job.saved, "config": cfg.to_dict()}
    given = job.options
    scene = load_radiance_scene(job.input, given.get("downscale", 1), given.get("test_every", 8))
    cfg = config_cls.for_scene(scene, job.device, **given)
    return cfg, scene, run_config(scene, job.input, cfg, job.seed)


def scene_of_config(config: dict) -> Scene:
    """The scene a radiance run was fitted to (its ``source`` folder or built-in, with the run's ``downscale`` and
    ``test_every``); InputError naming the folder when it is gone."""
    from fieldfit.scenes.inputs import Input

    opts = config.get("config", {})
    builtin = config.get("builtin")
    src = config.get("source")
    if not builtin and (src is None or not Path(src).exists()):
        raise InputError(src, "the scene this run was fitted to is not there any more",
                         "restore the scene folder at that path (the run reads its cameras and images)")
    inp = Input("radiance", None if builtin else Path(src), config.get("scene", ""), builtin)
    return load_radiance_scene(inp, opts.get("downscale", 1), opts.get("test_every", 8))


def to_march_space(scene: Scene, origins: torch.Tensor, dirs: torch.Tensor):
    """World rays [R,3] -> rays of the marching space (NDC for ``scene.ndc``), unit dirs."""
    return scene.ndc_params.rays(origins, dirs) if scene.ndc else (origins, dirs)


def camera_rays(scene: Scene, camera: Camera, xy: torch.Tensor | None = None, device="cpu"):
    """Rays of a camera's pixels (all, row-major, when xy is None), float32, in the scene's marching space.

    xy [N,2] are pixel positions (col + 0.5, row + 0.5 at centres). Lens distortion is undone exactly (fisheye
    lenses too); the rays are computed in float64 on ``device`` (an 800x800 frame costs ~60 ms on 2 CPU cores,
    nothing on a GPU) and returned as float32 there.
    """
    o, d = camera.rays(xy, device=device, dtype=torch.float64)
    o, d = to_march_space(scene, o, d)
    return o.float().contiguous(), d.float().contiguous()


def view_lift(scene: Scene, i: int) -> float:
    """How far past the scene's near the training rays of frame i start: to its own near bound where the loader
    found one from the sparse points it observes (``metadata['frame_bounds']``: COLMAP, DTU; half the 1st
    percentile of its point depths), else 0. A photo then cannot explain itself with a blob just in front of its
    own lens, where no other photo looks (the floaters held-out views see); test views and renders keep the
    scene's near."""
    bounds = getattr(scene, "metadata", {}).get("frame_bounds")
    if bounds is None or len(bounds) != len(scene.frames) or scene.ndc:
        return 0.0
    return max(float(bounds[i][0]) - float(scene.near), 0.0)


def march_bounds(scene: Scene) -> tuple[float, float]:
    """(near, far) along unit marching-space directions (NDC: the cube clips the rays)."""
    return (0.0, float("inf")) if scene.ndc else (float(scene.near), float(scene.far))


CONTRACT_MODES = ("on", "off")


def scene_contraction(scene: Scene, mode: str | None = None) -> Contraction | None:
    """The contraction of a scene's fit, or None. ``mode`` None decides: on for photographs in world space (no
    alpha channel, not NDC, not a built-in or Blender scene), whose backgrounds reach beyond any box; off for
    synthetic scenes with alpha and forward-facing (NDC) scenes.

    The inner cube is centred on the point the training cameras look at (``look_at_centre``) with half-side
    half the median camera distance from it (what the cameras look at and its surroundings; the cameras
    themselves sit in the shell), or, when the scene has sparse points, the 90th percentile of their cube
    distance from the centre where that is smaller."""
    if mode not in (None, *CONTRACT_MODES):
        raise InputError(f"--contract {mode}", "not a contraction mode", f"use one of {', '.join(CONTRACT_MODES)}")
    if mode == "off":
        return None
    if scene.ndc:
        if mode == "on":
            raise InputError(scene.source, "a forward-facing (LLFF, NDC) scene cannot be contracted",
                             "drop --contract on: NDC already maps depth to infinity into the box")
        return None
    if mode is None and (scene.has_alpha or scene.kind in ("builtin", "blender")):
        return None
    cams = scene.cameras("train")
    centre = look_at_centre(cams)
    radius = 0.5 * float(np.median([np.linalg.norm(c.c2w[:, 3] - centre) for c in cams]))
    if scene.points is not None and len(scene.points) >= 100:
        pts = np.asarray(scene.points, np.float64)
        radius = min(radius, float(np.percentile(np.abs(pts - centre).max(axis=1), 90)))
    if not radius > 0:
        radius = float(np.mean(scene.aabb[1] - scene.aabb[0])) / 2
    return Contraction(tuple(centre), radius)


def unit_box(scene: Scene) -> np.ndarray:
    """[2,3] box that sets the density unit and the NDC march step: the scene's box, except for
    NDC scenes, where it is the cube [-1,1]^3 (their box is wider in x and y only, see
    ``scenes.llff.ndc_box``, and distance along a ray is mostly the depth axis)."""
    if scene.ndc:
        return np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    return np.asarray(scene.aabb, np.float64)


def box_extent(scene: Scene) -> float:
    """Mean side of the scene's ``unit_box`` (marching-space units)."""
    box = unit_box(scene)
    return float(np.mean(box[1] - box[0]))


def pixel_footprint(scene: Scene) -> float:
    """Median width of a pixel at the point the training cameras look at (world units)."""
    cams = scene.cameras("train")
    centre = look_at_centre(cams)
    return float(np.median([np.linalg.norm(c.c2w[:, 3] - centre) / c.fx for c in cams]))


def grid_and_step(scene: Scene, grid_res: int | None = None, step: float | None = None,
                  contraction: Contraction | None = None) -> tuple[int, float]:
    """Occupancy-grid resolution and marching step of a scene, unless given.

    World scenes: cells about 0.8 pixel footprint (32..128 per axis, multiples of 16) and a step of 0.7
    footprint, at least half a cell (TensoRF's step; big boxes around real captures). NDC scenes: 128 cells and
    a step of one cell. Contracted scenes: the same rule over the inner cube, which the grid gives half its
    cells to (the shell takes the other half), so twice the cells (at most 128).
    """
    if contraction is not None:
        extent = 2.0 * contraction.radius
        foot = pixel_footprint(scene)
        res = int(grid_res or np.clip(32 * np.ceil(1.25 * extent / foot / 16), 32, 128))
        return res, float(step or max(0.7 * foot, extent / res))
    extent = box_extent(scene)
    if scene.ndc:
        res = int(grid_res or 128)
        return res, float(step or extent / res)
    foot = pixel_footprint(scene)
    res = int(grid_res or np.clip(16 * np.ceil(1.25 * extent / foot / 16), 32, 128))
    return res, float(step or max(0.7 * foot, 0.5 * extent / res))


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
    image: torch.Tensor | None = None  # [R] int32: the pixel's photo, its position in the store's frame list

    def target(self, background: torch.Tensor) -> torch.Tensor:
        """[R,3] the pixel colours seen on ``background`` [3] or [R,3]."""
        return self.rgb + (1.0 - self.alpha)[:, None] * background

    def to(self, device) -> "RayBatch":
        image = None if self.image is None else self.image.to(device, non_blocking=True)
        return RayBatch(*(t.to(device, non_blocking=True) for t in (self.origins, self.dirs, self.rgb, self.alpha)),
                        image=image)


class PixelStore:
    """Every pixel of some frames, with its ray; ``take`` gathers a batch (drawn by ``optim.Passes``).

    The pixels live in host memory, or on a GPU after ``keep_on`` (when they fit): batches are then gathered
    there, with no host gather and no copy per step (on a 2-core CPU the host gather of 52,000 rays of
    lego 400x400 takes 3.1 ms with torch's index_select, 12.0 ms with numpy's fancy indexing; the H200's
    training step of 2026-11-26 spent 6.3 of 54 ms making its batch on the host)."""

    def __init__(self, scene: Scene, ids: list[int]):
        if not ids:
            raise InputError(scene.source, "no frames to train on", "check the scene's train split")
        parts = [self._frame(scene, i) for i in ids]
        self.origins, self.dirs, self.rgb, self.alpha = (np.concatenate(p) for p in zip(*parts, strict=True))
        self.count = len(self.rgb)
        self.images = len(ids)
        self.image = np.repeat(np.arange(len(ids), dtype=np.int32), [len(p[2]) for p in parts])  # photo of a pixel
        arrays = (self.origins, self.dirs, self.rgb, self.alpha, self.image)
        self._tensors = tuple(torch.from_numpy(a) for a in arrays)

    @staticmethod
    def _frame(scene: Scene, i: int):
        rgb, alpha = premultiplied(scene, i)
        o, d = camera_rays(scene, scene.frames[i].camera)
        lift = view_lift(scene, i)
        if lift > 0:  # the march starts at the scene's near: from here that is the view's own
            o = o + d * lift
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

    def take(self, idx) -> RayBatch:
        """The pixels ``idx`` [R] (numpy or torch integers) as a RayBatch where the pixels live (the host, or the GPU
        of ``keep_on``)."""
        if not torch.is_tensor(idx):
            idx = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
        idx = idx.to(self.device)
        o, d, rgb, alpha, image = (t.index_select(0, idx) for t in self._tensors)
        return RayBatch(o, d, rgb, alpha, image)

    def mean_colour(self) -> np.ndarray:
        """[3] mean premultiplied colour (for baselines)."""
        return self.rgb.mean(axis=0)


@dataclass
class EvalRays(RayBatch):
    background: torch.Tensor = None  # [3]


def eval_rays_from(scene, n: int, seed: int, max_views: int = 8) -> EvalRays:
    """n fixed random pixels of (at most ``max_views``, evenly spaced) test views, for the PSNR during training."""
    ids = scene.split("test") or scene.split("train")
    ids = ids[:: max(1, len(ids) // max_views)][:max_views]
    store = PixelStore(scene, ids)
    idx = np.random.default_rng(seed + 1).choice(store.count, size=min(n, store.count), replace=False)
    b = store.take(idx)
    return EvalRays(b.origins, b.dirs, b.rgb, b.alpha, None, torch.from_numpy(eval_background(scene)))


__all__ = ["CONTRACT_MODES", "EvalRays", "PixelStore", "RayBatch", "box_extent", "camera_rays", "eval_background",
           "eval_rays_from",
           "grid_and_step", "load_radiance_scene", "scene_of_config", "march_bounds", "pixel_footprint",
           "premultiplied", "scene_contraction", "to_march_space", "unit_box", "view_lift"]

