"""Built-in scenes made by fieldfit's own code (no download), each with an exact answer.

- ``csg``: a machined part, box minus a through-hole and a spherical pocket, plus a torus
  handle: the occupancy is known exactly, so IoU is measured against the truth (genus 2).
- ``rings``: a 256x256 procedural image (colour rings and sharp edges) given by a formula.
- ``blocks``: a small posed-image scene ray-traced by ``scenes.procedural`` (radiance task).
- ``street``: a world-space street of box buildings, 64 views of 64x48 along it (``scenes.procedural``; radiance
  task), the scene ``--blocks`` is tested on; ``street_inside`` is its exact occupancy. ``street_large``: the
  same street in 256 views of 128x96, more than one field of the CPU's default size holds (the blocks benchmark).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Builtin:
    task: str
    description: str


BUILTIN = {
    "csg": Builtin("sdf", "machined part: box - through-hole - pocket + torus handle (genus 2), exact occupancy"),
    "rings": Builtin("image", "256x256 procedural colour rings with sharp edges, given by a formula"),
    "blocks": Builtin("radiance", "24 ray-traced views of coloured spheres and a box (Blender format)"),
    "street": Builtin("radiance", "64 ray-traced views along a street of box buildings, 8.8 x 3.8 x 1.6 (world "
                                  "space; for --blocks)"),
    "street_large": Builtin("radiance", "the street in 256 views of 128x96: more than one field holds (for "
                                        "--blocks)"),
}
STREET_LARGE = (64, (128, 96))  # camera positions (4 views each) and image size of street_large


# ---- csg: analytic signed distance (negative inside) ---------------------------------------
CSG_VERSION = 2  # bump when csg_sdf changes: its cached reference mesh is then made again


def _norm(v):  # |v| over the last axis (np.linalg.norm is several times slower on these small rows)
    return np.sqrt(np.einsum("...i,...i->...", v, v))


def _box(p, half):
    q = np.abs(p) - half
    return _norm(np.maximum(q, 0)) + np.minimum(q.max(-1), 0)


def _sphere(p, c, r):
    return _norm(p - c) - r


def _cyl_z(p, r):  # infinite cylinder along z
    return _norm(p[..., :2]) - r


def _torus_x(p, c, big, small):  # torus in the y-z plane around the x axis
    q = p - c
    d = _norm(q[..., 1:]) - big
    return np.sqrt(d**2 + q[..., 0] ** 2) - small


def csg_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance bound of the csg part at points p [...,3] (exact zero set and sign), in p's float type."""
    def v(*xs):
        return np.array(xs, dtype=p.dtype if p.dtype.kind == "f" else np.float64)

    body = _box(p, v(0.6, 0.45, 0.3))
    body = np.maximum(body, -_cyl_z(p - v(0.25, 0.0, 0.0), 0.15))  # through-hole
    body = np.maximum(body, -_sphere(p, v(-0.3, 0.0, 0.35), 0.22))  # pocket on top
    handle = _torus_x(p, v(-0.2, 0.0, -0.35), 0.25, 0.07)
    return np.minimum(body, handle)


def csg_reference_mesh(resolution: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The part as a triangle mesh (marching cubes of the analytic field, for Chamfer); made once, then read from
    fieldfit's cache folder."""
    from fieldfit.cache import cached_arrays

    def make():
        from skimage.measure import marching_cubes

        lin = np.linspace(-1, 1, resolution, dtype=np.float32)
        vol = np.empty((resolution,) * 3, np.float32)
        for i in range(0, resolution, 8):  # in slabs: the whole grid at once is 7x slower (memory-bound temporaries)
            slab = np.stack(np.meshgrid(lin[i:i + 8], lin, lin, indexing="ij"), -1)
            vol[i:i + 8] = csg_sdf(slab.reshape(-1, 3)).reshape(slab.shape[:3])
        v, f, _, _ = marching_cubes(vol, 0.0, spacing=(lin[1] - lin[0],) * 3)
        return {"vertices": (v - 1.0).astype(np.float64), "faces": f.astype(np.int64)}

    mesh = cached_arrays(f"csg_reference_{CSG_VERSION}_{int(resolution)}", make)
    return mesh["vertices"], mesh["faces"]


# ---- rings: procedural image ------------------------------------------------------------
def rings_image(size: int = 256) -> np.ndarray:
    """float32 [size,size,3] in [0,1]: smooth colour rings, a sharp disc edge, a checker corner."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (x + 0.5) / size * 2 - 1, (y + 0.5) / size * 2 - 1
    r = np.sqrt(u**2 + v**2)
    img = np.stack([0.5 + 0.5 * np.sin(12 * r), 0.5 + 0.5 * np.cos(7 * u + 3 * v), 0.5 + 0.4 * np.sin(9 * v)], -1)
    disc = (u - 0.35) ** 2 + (v + 0.3) ** 2 < 0.2**2
    img[disc] = [0.95, 0.85, 0.1]
    checker = ((np.floor(x / 16) + np.floor(y / 16)) % 2).astype(np.float32)
    corner = (u < -0.45) & (v < -0.45)
    img[corner] = checker[corner][:, None] * np.array([1.0, 1.0, 1.0])
    return img.astype(np.float32)


def blocks_scene_dir(cache: Path | None = None) -> Path:
    """Write (once, into fieldfit's cache folder) and return the folder of the built-in radiance scene."""
    from fieldfit.cache import cache_dir

    from .procedural import make_builtin_radiance_scene

    root = Path(cache or cache_dir()) / "blocks"
    if not (root / "transforms_train.json").is_file():
        make_builtin_radiance_scene(root)
    return root


STREET_VERSION = 1  # bump when the street changes: its cached folder is then made again


def street_scene_dir(cache: Path | None = None, large: bool = False) -> Path:
    """Write (once, into fieldfit's cache folder) and return the folder of the built-in street (``large``:
    street_large). It is made in a folder of its own and renamed into place, so processes that start together
    never read a half-written one."""
    import os
    import shutil
    import tempfile

    from fieldfit.cache import cache_dir

    from .procedural import make_street_scene

    root = Path(cache or cache_dir()) / f"street{'_large' if large else ''}_{STREET_VERSION}"
    if not (root / "transforms_train.json").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".street-", dir=root.parent))
        if large:  # about 30 s on 2 cores, once
            print(f"making the built-in street_large once ({STREET_LARGE[0] * 4} views) ...", flush=True)
            make_street_scene(tmp, positions=STREET_LARGE[0], size=STREET_LARGE[1])
        else:
            make_street_scene(tmp)
        try:
            os.rename(tmp, root)
        except OSError:  # another process put its copy there first
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def radiance_scene_dir(name: str) -> Path:
    """The folder of the built-in radiance scene ``name`` (blocks, street, street_large), written on first use."""
    return {"blocks": blocks_scene_dir, "street": street_scene_dir,
            "street_large": lambda: street_scene_dir(large=True)}[name]()


def street_inside(points: np.ndarray) -> np.ndarray:
    """[N] bool: the street's exact occupancy at points [N,3] (buildings and ground slab)."""
    from .procedural import street_inside as inside

    return inside(points)


SDF_FUNCTIONS: dict[str, Callable] = {"csg": csg_sdf}
