"""Built-in radiance scene made by code: three diffuse spheres on a checkered slab, ray-traced
with numpy into a small Blender-format folder (RGBA PNGs on a transparent background).

Geometry lies inside [-1.3, 1.3]^2 x [-0.5, 0.9] (z up, as Blender), within the Blender loader's
[-1.5, 1.5]^3 box; cameras sit on a sphere of radius 4 around the origin (elevations -15..70
degrees, golden-angle azimuths), looking at the origin, like NeRF-synthetic. Pixels are traced
through their centres ((i + 0.5) convention, cx = W/2) with 2 x 2 supersampling, so edges carry
partial alpha. View i goes to the test split when i % 8 == 0, the rest to train. The folder is
marked ``"fieldfit_builtin": "radiance"`` so load_blender reports kind='builtin'.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fieldfit.render.camera import look_at

CAMERA_RADIUS = 4.0
CAMERA_ANGLE_X = 0.75  # rad, ~43 degrees
SUPERSAMPLE = 2
LIGHT = np.array([0.4, -0.3, 0.87]) / np.linalg.norm([0.4, -0.3, 0.87])

_SPHERES = (  # centre, radius, colour
    ((-0.45, -0.35, 0.35), 0.35, (0.85, 0.15, 0.12)),
    ((0.5, -0.2, 0.3), 0.3, (0.15, 0.7, 0.2)),
    ((0.0, 0.5, 0.45), 0.45, (0.15, 0.3, 0.85)),
)
_BOX = ((-1.0, -1.0, -0.5), (1.0, 1.0, 0.0))  # slab under the spheres
_BOX_COLOURS = ((0.95, 0.8, 0.25), (0.3, 0.25, 0.2))


def _trace(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rgb [R, 3], hit [R] for rays o + t d (d unit)."""
    n_rays = d.shape[0]
    t_best = np.full(n_rays, np.inf)
    normal = np.zeros((n_rays, 3))
    albedo = np.zeros((n_rays, 3))
    for c, r, col in _SPHERES:
        oc = o - np.asarray(c)
        b = np.einsum("ij,ij->i", oc, d)
        disc = b * b - (np.einsum("ij,ij->i", oc, oc) - r * r)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        hit = (disc > 0) & (t > 1e-6) & (t < t_best)
        t_best[hit] = t[hit]
        normal[hit] = (o[hit] + t[hit, None] * d[hit] - np.asarray(c)) / r
        albedo[hit] = col
    lo, hi = np.asarray(_BOX[0]), np.asarray(_BOX[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin = np.nanmax(np.minimum(t0, t1), axis=1)
    tmax = np.nanmin(np.maximum(t0, t1), axis=1)
    hit = (tmax >= tmin) & (tmin > 1e-6) & (tmin < t_best)
    if np.any(hit):
        p = o[hit] + tmin[hit, None] * d[hit]
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        q = (p - centre) / half
        axis = np.argmax(np.abs(q), axis=1)
        nrm = np.zeros_like(p)
        nrm[np.arange(len(p)), axis] = np.sign(q[np.arange(len(p)), axis])
        checker = (np.floor(p[:, 0] * 4) + np.floor(p[:, 1] * 4) + np.floor(p[:, 2] * 4)).astype(int) % 2
        t_best[hit] = tmin[hit]
        normal[hit] = nrm
        albedo[hit] = np.asarray(_BOX_COLOURS)[checker]
    hit_any = np.isfinite(t_best)
    shade = 0.3 + 0.7 * np.clip(normal @ LIGHT, 0.0, None)
    rgb = albedo * shade[:, None]
    rgb[~hit_any] = 0.0
    return rgb, hit_any


def render_view(c2w: np.ndarray, size: int, camera_angle_x: float = CAMERA_ANGLE_X) -> np.ndarray:
    """float32 straight-alpha RGBA [size, size, 4] of the built-in scene."""
    s = SUPERSAMPLE
    n = size * s
    focal = 0.5 * size / math.tan(0.5 * camera_angle_x)
    sub = (np.arange(n) + 0.5) / s  # sub-pixel centres in pixel units
    u, v = np.meshgrid(sub, sub, indexing="xy")
    dirs = np.stack([(u - size / 2) / focal, -(v - size / 2) / focal, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    rgb, hit = _trace(origins, dirs)
    prem = np.concatenate([rgb * hit[:, None], hit[:, None].astype(np.float64)], 1)
    prem = prem.reshape(size, s, size, s, 4).mean(axis=(1, 3))
    a = prem[..., 3:]
    straight = np.where(a > 0, prem[..., :3] / np.maximum(a, 1e-12), 0.0)
    return np.concatenate([straight, a], -1).astype(np.float32)


def make_builtin_radiance_scene(root: Path, n_views: int = 24, size: int = 64, seed: int = 0) -> Path:
    """Write the built-in scene as a Blender folder under ``root`` and return ``root``."""
    import imageio.v3 as iio

    if n_views < 2 or size < 4:
        raise ValueError("need n_views >= 2 and size >= 4")
    root = Path(root)
    rng = np.random.default_rng(seed)
    az0 = rng.uniform(0, 2 * math.pi)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    split_frames: dict[str, list] = {"train": [], "test": []}
    for i in range(n_views):
        elev = math.radians(-15.0 + 85.0 * (i + 0.5) / n_views)
        az = az0 + i * golden + rng.uniform(-0.05, 0.05)
        eye = CAMERA_RADIUS * np.array([math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)])
        c2w = np.vstack([look_at(eye, (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)), [0.0, 0.0, 0.0, 1.0]])
        split = "test" if i % 8 == 0 else "train"
        rel = f"{split}/r_{i:03d}"
        (root / split).mkdir(parents=True, exist_ok=True)
        rgba = render_view(c2w, size)
        iio.imwrite(root / f"{rel}.png", np.round(rgba * 255.0).astype(np.uint8))
        split_frames[split].append({"file_path": f"./{rel}", "transform_matrix": c2w.tolist()})
    # transforms_train.json last and atomically: its presence means the folder is complete
    for split in ("test", "train"):
        meta = {"camera_angle_x": CAMERA_ANGLE_X, "fieldfit_builtin": "radiance", "frames": split_frames[split]}
        tmp = root / f".transforms_{split}.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(root / f"transforms_{split}.json")
    return root
