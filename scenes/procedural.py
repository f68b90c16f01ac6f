"""Built-in radiance scene made by code: three diffuse spheres on a checkered slab, ray-traced
with numpy into a small Blender-format folder (RGBA PNGs on a transparent background).

Geometry lies inside [-1.3, 1.3]^2 x [-0.5, 0.9] (z up, as Blender), within the Blender loader's
[-1.5, 1.5]^3 box; cameras sit on a sphere of radius 4 around the origin (elevations -15..70
degrees, golden-angle azimuths), looking at the origin, like NeRF-synthetic. Pixels are traced
through their centres ((i + 0.5) convention, cx = W/2) with 2 x 2 supersampling, so edges carry
partial alpha. View i goes to the test split when i % 8 == 0, the rest to train. The folder is
marked ``"fieldfit_builtin": "radiance"`` so load_blender reports kind='builtin'.

The street (``make_street_scene``) is world space and wider than tall: a ground slab (asphalt, a dashed centre
line, pavements) and a row of box buildings on each side (``street_buildings``: varied widths, depths, heights
and colours, rows of windows), inside ``STREET_AABB`` (x along the street, z up), traced with the same box test.
Cameras stand along the street at eye height and look at each side, forward and backward (``street_cameras``);
the sky is transparent. Its json carries its box, near and far (``aabb``, ``near``, ``far``), which
load_blender honours. ``street_inside`` is its exact occupancy.
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


def _box_entry(o: np.ndarray, d: np.ndarray, lo, hi) -> np.ndarray:
    """[R] distance at which rays o + t d enter the box lo..hi from outside (inf: they miss it, or start inside)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0, t1 = (np.asarray(lo) - o) * inv, (np.asarray(hi) - o) * inv
    tmin = np.nanmax(np.minimum(t0, t1), axis=1)
    tmax = np.nanmin(np.maximum(t0, t1), axis=1)
    return np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)


def _box_normal(p: np.ndarray, lo, hi) -> np.ndarray:
    """[N,3] outward unit normals of the box lo..hi at points p [N,3] on its surface."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    q = (p - (lo + hi) / 2) / ((hi - lo) / 2)
    axis = np.argmax(np.abs(q), axis=1)
    nrm = np.zeros_like(p)
    nrm[np.arange(len(p)), axis] = np.sign(q[np.arange(len(p)), axis])
    return nrm


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
    tmin = _box_entry(o, d, lo, hi)
    hit = tmin < t_best
    if np.any(hit):
        p = o[hit] + tmin[hit, None] * d[hit]
        nrm = _box_normal(p, lo, hi)
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


# ---- street: a world-space scene of many box buildings, for fits in blocks ---------------------------------------
STREET_AABB = np.array([[-4.4, -1.9, -0.1], [4.4, 1.9, 1.5]])  # x along the street, z up: wider than tall
STREET_NEAR, STREET_FAR = 0.05, 10.0
STREET_GROUND = ((-4.4, -1.9, -0.05), (4.4, 1.9, 0.0))  # road and pavements, a thin slab
STREET_HALF_WIDTH = 0.55  # the facades stand at |y| >= this
STREET_ANGLE_X = 1.4  # rad, ~80 degrees: wide lenses, the facades are close
STREET_SIZE = (64, 48)
STREET_POSITIONS = 16  # camera positions along the street, 4 views each
STREET_TEST_EVERY = 9  # view i is a test view when i % 9 == 4: spread along the street and over the 4 directions
STREET_LIGHT = np.array([0.3, -0.5, 0.81]) / np.linalg.norm([0.3, -0.5, 0.81])
_FACADES = ((0.80, 0.45, 0.35), (0.85, 0.75, 0.50), (0.55, 0.60, 0.70), (0.70, 0.70, 0.65), (0.45, 0.55, 0.40),
            (0.90, 0.60, 0.45))


def street_buildings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [B,2,3] (min, max corners), colours [B,3]) of the street's buildings: a row on each side of the
    road, widths 0.4-0.85, gaps 0.05-0.3, depths 0.5-1.1, heights 0.35-1.3 (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    boxes, colours = [], []
    for side in (1.0, -1.0):
        x = -4.2 + rng.uniform(0.0, 0.2)
        while True:
            width = rng.uniform(0.4, 0.85)
            if x + width > 4.2:
                break
            depth, height = rng.uniform(0.5, 1.1), rng.uniform(0.35, 1.3)
            y0, y1 = sorted((side * STREET_HALF_WIDTH, side * (STREET_HALF_WIDTH + depth)))
            boxes.append(((x, y0, 0.0), (x + width, y1, height)))
            base = np.asarray(_FACADES[rng.integers(len(_FACADES))])
            colours.append(np.clip(base + rng.uniform(-0.08, 0.08, 3), 0.05, 0.95))
            x += width + rng.uniform(0.05, 0.3)
    return np.asarray(boxes, np.float64), np.asarray(colours, np.float64)


def street_inside(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """[N] bool: whether points [N,3] lie inside a building or the ground slab (the street's exact geometry)."""
    boxes, _ = street_buildings(seed)
    boxes = np.concatenate([boxes, np.asarray(STREET_GROUND)[None]])
    p = np.asarray(points, np.float64)[:, None, :]
    return np.any(np.all((p >= boxes[None, :, 0]) & (p <= boxes[None, :, 1]), axis=2), axis=1)


def _ground_albedo(p: np.ndarray) -> np.ndarray:
    """Asphalt between the facades with a dashed centre line, paler pavement under the buildings' rows."""
    out = np.tile([0.32, 0.32, 0.34], (len(p), 1))
    out[np.abs(p[:, 1]) > STREET_HALF_WIDTH - 0.1] = (0.62, 0.58, 0.52)
    dash = (np.abs(p[:, 1]) < 0.03) & (np.mod(p[:, 0] * 2.0, 1.0) < 0.5)
    out[dash] = (0.95, 0.95, 0.9)
    return out


def _facade_albedo(p: np.ndarray, nrm: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A building's colour with rows of dark windows on its walls (none on its roof)."""
    along = np.where(np.abs(nrm[:, 0]) > 0.5, p[:, 1], p[:, 0])  # the wall's horizontal coordinate
    window = (np.mod(p[:, 2] * 6.0, 1.0) > 0.45) & (np.mod(along * 8.0, 1.0) > 0.4) & (np.abs(nrm[:, 2]) < 0.5)
    return colour[None] * np.where(window, 0.45, 1.0)[:, None]


def _trace_street(o: np.ndarray, d: np.ndarray, boxes: np.ndarray, colours: np.ndarray):
    """rgb [R,3], hit [R] of rays o + t d (d unit) against the ground slab and the buildings."""
    t_best = _box_entry(o, d, *STREET_GROUND)
    owner = np.full(len(d), -1)  # -1: the ground
    for b, (lo, hi) in enumerate(boxes):
        t = _box_entry(o, d, lo, hi)
        closer = t < t_best
        t_best[closer] = t[closer]
        owner[closer] = b
    hit = np.isfinite(t_best)
    rgb = np.zeros((len(d), 3))
    p = o + np.where(hit, t_best, 0.0)[:, None] * d
    for b in np.unique(owner[hit]):
        m = hit & (owner == b)
        lo, hi = (STREET_GROUND if b < 0 else boxes[b])
        nrm = _box_normal(p[m], lo, hi)
        albedo = _ground_albedo(p[m]) if b < 0 else _facade_albedo(p[m], nrm, colours[b])
        rgb[m] = albedo * (0.35 + 0.65 * np.clip(nrm @ STREET_LIGHT, 0.0, None))[:, None]
    return rgb, hit


def render_street_view(c2w: np.ndarray, size=STREET_SIZE, camera_angle_x: float = STREET_ANGLE_X,
                       seed: int = 0) -> np.ndarray:
    """float32 straight-alpha RGBA [H, W, 4] of the street (sky transparent), 2 x 2 supersampled."""
    w, h = size
    s = SUPERSAMPLE
    focal = 0.5 * w / math.tan(0.5 * camera_angle_x)
    u, v = np.meshgrid((np.arange(w * s) + 0.5) / s, (np.arange(h * s) + 0.5) / s, indexing="xy")
    dirs = np.stack([(u - w / 2) / focal, -(v - h / 2) / focal, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rgb, hit = _trace_street(np.broadcast_to(c2w[:3, 3], dirs.shape), dirs, *street_buildings(seed))
    prem = np.concatenate([rgb * hit[:, None], hit[:, None].astype(np.float64)], 1)
    prem = prem.reshape(h, s, w, s, 4).mean(axis=(1, 3))
    a = prem[..., 3:]
    straight = np.where(a > 0, prem[..., :3] / np.maximum(a, 1e-12), 0.0)
    return np.concatenate([straight, a], -1).astype(np.float32)


def street_cameras(positions: int = STREET_POSITIONS, seed: int = 0) -> list[np.ndarray]:
    """4x4 camera-to-world matrices: at each of ``positions`` places along the street (eye height 0.3-0.4, a
    little off the centre line) a view of each side (turned 25 degrees forward or back, alternately), one forward
    (+x) and one backward, each tilted slightly up."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for k, x in enumerate(np.linspace(-3.6, 3.6, positions)):
        eye = np.array([x + rng.uniform(-0.1, 0.1), 0.15 * (-1) ** k, rng.uniform(0.3, 0.4)])
        turn = math.radians(25.0) * (-1) ** (k // 2)
        for yaw in (math.pi / 2 + turn, -math.pi / 2 - turn, 0.0, math.pi):
            target = eye + np.array([math.cos(yaw), math.sin(yaw), 0.12])
            out.append(np.vstack([look_at(eye, target, (0.0, 0.0, 1.0)), [0.0, 0.0, 0.0, 1.0]]))
    return out


def make_street_scene(root: Path, positions: int = STREET_POSITIONS, size=STREET_SIZE, seed: int = 0) -> Path:
    """Write the street as a Blender folder under ``root`` (its box, near and far in the json) and return ``root``."""
    import imageio.v3 as iio

    root = Path(root)
    split_frames: dict[str, list] = {"train": [], "test": []}
    for i, c2w in enumerate(street_cameras(positions, seed)):
        split = "test" if i % STREET_TEST_EVERY == 4 else "train"
        rel = f"{split}/r_{i:03d}"
        (root / split).mkdir(parents=True, exist_ok=True)
        rgba = render_street_view(c2w, size, seed=seed)
        iio.imwrite(root / f"{rel}.png", np.round(rgba * 255.0).astype(np.uint8))
        split_frames[split].append({"file_path": f"./{rel}", "transform_matrix": c2w.tolist()})
    for split in ("test", "train"):  # transforms_train.json last: its presence means the folder is complete
        meta = {"camera_angle_x": STREET_ANGLE_X, "fieldfit_builtin": "radiance", "aabb": STREET_AABB.tolist(),
                "near": STREET_NEAR, "far": STREET_FAR, "frames": split_frames[split]}
        tmp = root / f".transforms_{split}.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(root / f"transforms_{split}.json")
    return root
