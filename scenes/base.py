"""The one scene type every capture format is loaded into.

Conventions
-----------
* ``Frame.camera`` is a ``render.camera.Camera`` (its module doc has the conventions: OpenGL
  camera-to-world, pixel centres at +0.5, lens distortion and camera model). Its size and intrinsics
  describe the image that ``Scene.image`` returns, i.e. after ``Scene.downscale`` (sizes floor(W / N),
  intrinsics / N: exact for N x N area averaging); distortion is unchanged by downscaling.
* Images are decoded lazily and kept in a host-memory LRU cache (``cache_bytes``); nothing is
  pushed to a GPU here. RGBA images are stored premultiplied so that area downscaling and
  compositing on ``background`` commute exactly. A frame's ``mask`` file (first channel) is its
  alpha, multiplied into the image's own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera
from fieldfit.render.rays import NDCParams

from ._io import area_downscale, frame_desc, read_image

SCENE_KINDS = ("blender", "nerfstudio", "llff", "colmap", "dtu", "builtin")


@dataclass(eq=False)
class Frame:
    """One posed image: its camera (sizes and intrinsics of the image the scene returns) and its file."""

    camera: Camera
    path: Path | None = None
    name: str = ""
    mask: Path | None = None  # an object mask (DTU / IDR): its first channel is the frame's alpha

    def scaled(self, n: int) -> "Frame":
        """The frame seen through an n x n area downscale (``Camera.scaled``)."""
        return self if n == 1 else replace(self, camera=self.camera.scaled(n))


@dataclass(eq=False)
class Scene:
    """Cameras, lazily loaded images, splits and bounds of one capture.

    ``aabb`` [2, 3] (min, max) and ``near``/``far`` are in world units, except when ``ndc`` is
    True (LLFF forward-facing): then rays are marched in NDC, ``near=0, far=1`` and ``aabb`` is
    the NDC cube [-1, 1]^3 (``metadata['world_aabb']`` keeps a world-space box).
    ``metadata`` holds format-specific extras (source file, transforms applied, per-frame bounds).
    """

    name: str
    root: Path
    kind: str
    frames: list[Frame]
    splits: dict[str, list[int]]
    aabb: np.ndarray
    near: float
    far: float
    background: np.ndarray | None = None
    ndc: bool = False
    points: np.ndarray | None = None
    point_colors: np.ndarray | None = None
    downscale: int = 1
    has_alpha: bool = False
    ndc_params: NDCParams | None = None
    metadata: dict = field(default_factory=dict)
    cache_bytes: int = 4 << 30

    def __post_init__(self):
        self.root = Path(self.root)
        if self.kind not in SCENE_KINDS:
            raise ValueError(f"Scene.kind must be one of {SCENE_KINDS}, got {self.kind!r}")
        self.downscale = int(self.downscale)
        if self.downscale < 1:
            raise ValueError("Scene.downscale must be >= 1")
        self.aabb = np.asarray(self.aabb, dtype=np.float64).reshape(2, 3)
        if self.background is not None:
            self.background = np.asarray(self.background, dtype=np.float32).reshape(3)
        n = len(self.frames)
        self.splits = {k: [int(i) for i in v] for k, v in self.splits.items()}
        for k, idx in self.splits.items():
            bad = [i for i in idx if not 0 <= i < n]
            if bad:
                raise ValueError(f"split {k!r} has indices outside [0, {n}): {bad[:5]}")
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._cache_used = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.frames)

    @property
    def source(self) -> Path:
        """The file that declares the frames (json / npy), used in error messages."""
        return Path(self.metadata.get("source", self.root))

    def frame_source(self, i: int) -> Path:
        """The file that declares frame i (Blender scenes have one json per split)."""
        per = self.metadata.get("frame_sources")
        if per is not None and 0 <= i < len(per):
            return Path(per[i])
        return self.source

    def split(self, name: str) -> list[int]:
        if name not in self.splits:
            raise InputError(self.source, f"scene has no '{name}' split",
                             f"use one of: {', '.join(sorted(self.splits))}")
        return list(self.splits[name])

    @property
    def c2w(self) -> np.ndarray:
        """All camera-to-world matrices, float64 [N, 3, 4]."""
        return np.stack([f.camera.c2w for f in self.frames]) if self.frames else np.zeros((0, 3, 4))

    def cameras(self, split: str | None = None) -> list[Camera]:
        """The cameras of ``split`` (every frame's when None), in split order."""
        ids = range(len(self.frames)) if split is None else self.split(split)
        return [self.frames[i].camera for i in ids]

    def image(self, i: int) -> np.ndarray:
        """float32 [H, W, 3] in [0, 1]; images with alpha are composited on ``background``
        (on black when ``background`` is None)."""
        rgb, alpha = self._get(i)
        if alpha is None:
            return rgb.copy()
        bg = np.zeros(3, np.float32) if self.background is None else self.background
        out = rgb + (1.0 - alpha)[..., None] * bg[None, None, :]
        return out.astype(np.float32, copy=False)

    def alpha(self, i: int) -> np.ndarray | None:
        """float32 [H, W] in [0, 1], or None when the scene's images carry no alpha."""
        if not self.has_alpha:
            return None
        rgb, alpha = self._get(i)
        if alpha is None:
            return np.ones(rgb.shape[:2], np.float32)
        return alpha.copy()

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_used = 0

    # ------------------------------------------------------------------ loading
    def _get(self, i: int):
        i = int(i)
        if not 0 <= i < len(self.frames):
            raise IndexError(f"frame index {i} out of range [0, {len(self.frames)})")
        with self._lock:
            hit = self._cache.get(i)
            if hit is not None:
                self._cache.move_to_end(i)
                return hit
        entry = self._decode(i)
        size = entry[0].nbytes + (entry[1].nbytes if entry[1] is not None else 0)
        with self._lock:
            if i not in self._cache:
                self._cache[i] = entry
                self._cache_used += size
            while self._cache_used > self.cache_bytes and len(self._cache) > 1:
                _, (r, a) = self._cache.popitem(last=False)
                self._cache_used -= r.nbytes + (a.nbytes if a is not None else 0)
        return entry

    def _decode(self, i: int):
        f = self.frames[i]
        desc = frame_desc(i, f.name)
        source = self.frame_source(i)
        if f.path is None:
            raise InputError(source, f"{desc}: frame has no image file", "give the frame a file_path")
        n = self.downscale
        img = read_image(Path(f.path), source, desc)
        h, w = img.shape[:2]
        cam = f.camera
        if w // n != cam.width or h // n != cam.height:
            raise InputError(source, f"{desc}: image {f.path} is {w}x{h} but the scene declares "
                             f"{cam.width * n}x{cam.height * n}",
                             "restore the original image or fix w/h in the scene file")
        c = img.shape[2]
        if c in (2, 4):
            alpha = img[..., -1]
            rgb = img[..., :-1] * alpha[..., None]  # premultiplied
        else:
            alpha = None
            rgb = img
        if f.mask is not None:
            mask = read_image(Path(f.mask), source, desc)[..., 0]
            if mask.shape != (h, w):
                raise InputError(source, f"{desc}: mask {f.mask} is {mask.shape[1]}x{mask.shape[0]} but its image "
                                 f"is {w}x{h}", "give each image a mask of its size")
            rgb = rgb * mask[..., None]
            alpha = mask if alpha is None else alpha * mask
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        rgb = np.ascontiguousarray(area_downscale(rgb, n), dtype=np.float32)
        if alpha is not None:
            alpha = np.ascontiguousarray(area_downscale(alpha, n), dtype=np.float32)
        return rgb, alpha


def scale_frames(frames: list[Frame], n: int, source) -> list[Frame]:
    """Frames as seen through an n x n area downscale; InputError when an image would vanish."""
    for i, f in enumerate(frames):
        if f.camera.width // n < 1 or f.camera.height // n < 1:
            raise InputError(source, f"{frame_desc(i, f.name)}: image {f.camera.width}x{f.camera.height} is "
                             f"smaller than downscale {n}",
                             "use a smaller downscale")
    return [f.scaled(n) for f in frames]
