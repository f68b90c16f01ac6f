"""LLFF forward-facing captures: ``poses_bounds.npy`` + ``images[_N]/``.

Each row of poses_bounds.npy is a 3x5 matrix [R | t | (h, w, f)] flattened row-major, then the
near and far depth bounds of that view. R's columns are LLFF's [down, right, back]; they are
reordered to OpenGL [right, up, back] = [c1, -c0, c2].

Conventions (those of NeRF's ``load_llff_data``):
* Image folder: ``factor=N`` picks ``images_N/`` (``images/`` for N=1); when it is absent the
  full-resolution ``images/`` is area-downscaled by N instead. ``factor=None`` takes ``images/``
  if present, else the ``images_N/`` with the smallest N. Focal lengths are scaled from hwf by
  the chosen images' size / (w, h); the principal point is the image centre.
* Rescale (``bd_factor=0.75``): positions and bounds are multiplied by sc = 1 / (0.75 *
  min(near bounds)), so the nearest scene content sits at depth ~1.33.
* Recentre (``recenter=True``): poses are expressed relative to the average pose (mean
  position, mean viewing axis, mean up): c2w <- inv(avg) @ c2w. ``metadata['world_from_input']``
  is the 4x4 M with p_scene = M @ p_input (homogeneous), i.e. inv(avg) @ diag(sc, sc, sc, 1).
* NDC (``ndc=True``, the default, for forward-facing scenes): rays are to be moved to the plane
  z = -1 (``ndc_params.near_plane``) and mapped to NeRF's NDC with ``ndc_params`` (focal/size of
  the scene's images); ``near=0, far=1``; ``aabb`` spans z in [-1, 1] and, in x and y, every
  camera's rays between z = -1 and 1 (``ndc_box``): views other than the average one see past the
  cube's sides (fern: x to +-1.44), and a field clipped to the cube cannot colour those pixels;
  ``metadata['world_aabb']`` is a world box from the frusta between the depth bounds.
  ``ndc=False``: world-space marching with near = 0.9 * min bound, far = max bound (NeRF's
  non-NDC choice) and aabb = frusta_bounds([f.camera for f in frames], near, far).
* Splits: frame i (sorted file names) is a test view when i % test_every == 0.
* ``metadata['bounds']``: per-frame [near, far] after rescaling.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera, frusta_bounds
from fieldfit.render.rays import NDCParams

from ._io import check_c2w, check_downscale, frame_desc, image_header, list_dir
from .base import Frame, Scene, scale_frames

_IMG_EXT = (".png", ".jpg", ".jpeg")


def load_llff(root, downscale: int = 1, factor: int | None = None, test_every: int = 8, *,
              ndc: bool = True, recenter: bool = True, bd_factor: float | None = 0.75) -> Scene:
    root = Path(root)
    if root.is_file() and root.name == "poses_bounds.npy":
        root = root.parent
    npy = root / "poses_bounds.npy"
    if not npy.is_file():
        raise InputError(root, f"no poses_bounds.npy (not an LLFF folder); folder contains: {list_dir(root)}",
                         "point at the folder holding poses_bounds.npy and images*/")
    downscale = check_downscale(downscale, root)
    if not isinstance(test_every, int) or test_every < 1:
        raise InputError(npy, f"test_every must be a positive integer, got {test_every!r}", "use e.g. 8")

    try:
        arr = np.load(npy, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any load failure is a user-file problem
        raise InputError(npy, f"cannot read: {e}", "regenerate poses_bounds.npy (imgs2poses.py)") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] < 1:
        raise InputError(npy, f"expected an N x 17 array, got shape {list(arr.shape)}",
                         "regenerate poses_bounds.npy (imgs2poses.py)")
    arr = arr.astype(np.float64)
    n = arr.shape[0]

    folder, extra = _pick_folder(root, factor, npy)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMG_EXT
                   and not p.name.startswith("."))
    if len(files) != n:
        raise InputError(npy, f"{n} poses but {len(files)} images in {folder}",
                         "the image folder must hold exactly one image per row of poses_bounds.npy")

    poses = arr[:, :15].reshape(n, 3, 5)
    bounds = arr[:, 15:17].copy()
    if not np.all(np.isfinite(bounds)) or np.any(bounds <= 0):
        bad = int(np.where(~np.all(np.isfinite(bounds) & (bounds > 0), axis=1))[0][0])
        raise InputError(npy, f"{frame_desc(bad, files[bad].name)}: depth bounds {bounds[bad].tolist()} must be "
                         "positive and finite", "regenerate poses_bounds.npy")
    c2w = np.zeros((n, 3, 4))
    for i in range(n):
        desc = frame_desc(i, files[i].name)
        m = poses[i, :, :4]
        gl = np.concatenate([m[:, 1:2], -m[:, 0:1], m[:, 2:4]], axis=1)
        c2w[i] = check_c2w(gl, npy, desc)
        h, w, f = poses[i, :, 4]
        if not (np.all(np.isfinite(poses[i, :, 4])) and h > 0 and w > 0 and f > 0):
            raise InputError(npy, f"{desc}: hwf {poses[i, :, 4].tolist()} must be positive",
                             "regenerate poses_bounds.npy")

    sizes = [image_header(p, npy, frame_desc(i, p.name)) for i, p in enumerate(files)]
    iw, ih, _ = sizes[0]
    for i, (w_, h_, _) in enumerate(sizes):
        if (w_, h_) != (iw, ih):
            raise InputError(npy, f"{frame_desc(i, files[i].name)}: image is {w_}x{h_} but {files[0].name} is "
                             f"{iw}x{ih}", f"all images in {folder.name}/ must have one size")

    # rescale so the nearest bound is ~1/bd_factor, then recentre on the average pose
    sc = 1.0 if bd_factor is None else 1.0 / (bounds.min() * bd_factor)
    c2w[:, :, 3] *= sc
    bounds *= sc
    world_from_input = np.diag([sc, sc, sc, 1.0])
    if recenter:
        avg = _average_pose(c2w)
        inv = np.linalg.inv(avg)
        c2w = np.einsum("ij,njk->nik", inv, np.concatenate([c2w, np.tile([[[0, 0, 0, 1.0]]], (n, 1, 1))], 1))[:, :3]
        world_from_input = inv @ world_from_input

    frames = []
    for i, p in enumerate(files):
        h, w, f = poses[i, :, 4]
        sx, sy = iw / w, ih / h
        if abs(sx / sy - 1.0) > 0.01:
            raise InputError(npy, f"{frame_desc(i, p.name)}: image is {iw}x{ih} but hwf says {w:g}x{h:g} "
                             "(aspect differs)", "use the images poses_bounds.npy was computed for")
        camera = Camera(np.ascontiguousarray(c2w[i]), float(f * sx), float(f * sy), iw / 2.0, ih / 2.0, iw, ih)
        frames.append(Frame(camera, path=p, name=p.stem))
    total = downscale * extra
    frames = scale_frames(frames, total, npy)

    splits = {"train": [i for i in range(n) if i % test_every != 0] or list(range(n)),
              "test": [i for i in range(n) if i % test_every == 0]}
    metadata = {"source": str(npy), "image_folder": str(folder), "bounds": bounds,
                "scale": sc, "world_from_input": world_from_input}
    world_near, world_far = 0.9 * float(bounds.min()), float(bounds.max())
    if ndc:
        metadata["world_aabb"] = frusta_bounds([f.camera for f in frames], world_near, world_far)
        c0 = frames[0].camera
        ndc_params = NDCParams(fx=c0.fx, fy=c0.fy, width=c0.width, height=c0.height, near_plane=1.0)
        aabb = ndc_box(frames, ndc_params)
        near, far = 0.0, 1.0
    else:
        ndc_params = None
        near, far = world_near, world_far
        aabb = frusta_bounds([f.camera for f in frames], near, far)
    return Scene(name=root.resolve().name, root=root, kind="llff", frames=frames, splits=splits, aabb=aabb,
                 near=near, far=far, background=None, ndc=ndc, downscale=total, has_alpha=False,
                 ndc_params=ndc_params, metadata=metadata)


def ndc_box(frames, p: NDCParams, margin: float = 0.01) -> np.ndarray:
    """[2,3] NDC box holding every frame's corner rays from z = -1 to z = 1 (at least the cube).

    Rays are straight in NDC, and a frame's pixels lie inside its corner rays, so the box of
    the corner rays' end points holds all of them. ``margin`` pads x and y.
    """
    ax, ay = 2.0 * p.fx / p.width, 2.0 * p.fy / p.height
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    for c in (f.camera for f in frames):
        u = np.array([0.0, c.width, 0.0, c.width])
        v = np.array([0.0, 0.0, c.height, c.height])
        d = np.stack([(u - c.cx) / c.fx, -(v - c.cy) / c.fy, -np.ones(4)], 1) @ c.c2w[:, :3].T
        o = c.c2w[:, 3] + (-(p.near_plane + c.c2w[2, 3]) / d[:, 2])[:, None] * d  # on the plane z = -near
        start = np.stack([-ax * o[:, 0] / o[:, 2], -ay * o[:, 1] / o[:, 2]], 1)
        end = np.stack([-ax * d[:, 0] / d[:, 2], -ay * d[:, 1] / d[:, 2]], 1)  # z = 1: the ray at infinity
        pts = np.concatenate([start, end])
        lo, hi = np.minimum(lo, pts.min(0)), np.maximum(hi, pts.max(0))
    lo, hi = lo - margin * (hi - lo), hi + margin * (hi - lo)
    return np.array([[lo[0], lo[1], -1.0], [hi[0], hi[1], 1.0]])


def _pick_folder(root: Path, factor, npy: Path) -> tuple[Path, int]:
    """(image folder, extra area-downscale applied on top of it)."""
    found = {}
    for p in root.iterdir() if root.is_dir() else []:
        if p.is_dir():
            if p.name == "images":
                found[1] = p
            else:
                m = re.fullmatch(r"images_(\d+)", p.name)
                if m and int(m.group(1)) >= 1:
                    found[int(m.group(1))] = p
    listing = ", ".join(found[k].name + "/" for k in sorted(found)) or "none"
    if factor is None:
        if not found:
            raise InputError(root, "no image folder (looked for images/ and images_N/)",
                             f"put the photos beside {npy.name}")
        k = min(found)
        return found[k], 1
    try:
        fac = int(factor)
    except (TypeError, ValueError):
        fac = 0
    if fac < 1 or fac != factor:
        raise InputError(root, f"factor must be a positive integer, got {factor!r}",
                         f"image folders present: {listing}")
    if fac in found:
        return found[fac], 1
    if 1 in found:
        return found[1], fac
    raise InputError(root, f"no images_{fac}/ and no full-resolution images/ to downscale from; found: {listing}",
                     "pick a factor whose folder exists")


def _average_pose(c2w: np.ndarray) -> np.ndarray:
    """NeRF's poses_avg: mean position, mean back axis, mean up -> orthonormal 4x4."""
    centre = c2w[:, :, 3].mean(axis=0)
    z = c2w[:, :, 2].sum(axis=0)
    z /= np.linalg.norm(z)
    up = c2w[:, :, 1].sum(axis=0)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, centre
    return m
