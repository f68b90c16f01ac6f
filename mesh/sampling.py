"""Point samples on and around a mesh, with exact signed distances, for SDF training.

Distances are exact (libigl's AABB tree); signs come from the fast winding number (``inside`` module doc),
evaluated with ``fast=True`` by default here: the same side of 0.5 as the reference evaluation, for a quarter of
its cost next to the surface.
"""

import time

import numpy as np

from .inside import Distance, WindingNumber, morton_order


def _rng(rng) -> np.random.Generator:
    """Accept a Generator, a seed or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def surface_samples(vertices, faces, n: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """Uniform (area-weighted) random points on the surface and the normals of their faces.

    Args:
        vertices: [V,3] float.
        faces: [F,3] int.
        n: number of samples.
        rng: np.random.Generator, seed or None.

    Returns:
        (points [n,3] float64, normals [n,3] float64 unit length; zero for zero-area faces).
    """
    rng = _rng(rng)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    total = area.sum()
    if not total > 0:
        raise ValueError("surface_samples: mesh has zero surface area")
    cdf = np.cumsum(area)
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    idx = np.minimum(idx, len(f) - 1)
    # Uniform barycentric coordinates: fold the unit square onto the triangle.
    u, w = rng.random(n), rng.random(n)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    pts = a[idx] + u[:, None] * (b[idx] - a[idx]) + w[:, None] * (c[idx] - a[idx])
    nrm = cross[idx]
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    nrm = np.divide(nrm, length, out=np.zeros_like(nrm), where=length > 0)
    return pts, nrm


def thin_part_samples(vertices, faces, n: int, rng=None, width: float = 0.02, candidates: int = 200_000,
                      winding=None, fast: bool = True) -> np.ndarray:
    """Points across the thin parts of a surface: walls (or gaps) thinner than ``width``.

    A surface point p (face normal nrm) is in a thin part when the winding-number sign at
    p + width*nrm equals the sign at p - width*nrm: the surface is crossed twice within 2*width
    (a wall between two air regions, or an air gap between two solid ones). ``n`` points are
    drawn around such candidates, p + s*nrm with s ~ U(-width, width), so both faces and the
    inside of the wall are covered. Returns [k,3] float64, k = n, or 0 when no part is thin.

    Args:
        vertices: [V,3] float, unit frame.
        faces: [F,3] int.
        n: points to return (when any thin part exists).
        rng: np.random.Generator, seed or None.
        width: thickness threshold (unit coordinates).
        candidates: surface points tested.
        winding: an optional ``WindingNumber`` of the mesh (reused when given).
        fast: two-pass winding numbers (``inside`` module doc); False: the reference evaluation.
    """
    rng = _rng(rng)
    if n <= 0:
        return np.zeros((0, 3))
    wn = winding or WindingNumber(vertices, faces)
    p, nrm = surface_samples(vertices, faces, candidates, rng)
    ok = np.linalg.norm(nrm, axis=1) > 0
    p, nrm = p[ok], nrm[ok]
    inside = wn(np.concatenate([p + width * nrm, p - width * nrm]), fast=fast) >= 0.5
    thin = inside[: len(p)] == inside[len(p):]
    if not thin.any():
        return np.zeros((0, 3))
    p, nrm = p[thin], nrm[thin]
    pick = rng.integers(0, len(p), n)
    s = rng.uniform(-width, width, n)
    return p[pick] + s[:, None] * nrm[pick]


def sdf_training_set(vertices, faces, n: int, rng=None, surface_frac: float = 0.5,
                     sigmas=(0.01, 0.05), thin_frac: float = 0.0, thin_width: float = 0.02,
                     fast: bool = True, timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training points and exact signed distances for a mesh in unit coordinates.

    A mixture of ``n - n_s`` uniform points in [-1,1]^3 and ``n_s = round(n * surface_frac)``
    surface points perturbed by isotropic Gaussian noise, split evenly over ``sigmas``. With
    ``thin_frac > 0``, that fraction of the near-surface points is drawn across thin walls and
    gaps instead (``thin_part_samples``; none when no part is thinner than ``thin_width``).
    Distances come from an AABB tree, signs from the fast winding number (negative inside), so
    open or slightly broken meshes still give sensible signs. Points come sorted along a Z-order curve
    (``inside.morton_order``), not shuffled: both tree queries walk them in that order, and a fit draws
    random indices, so the order carries nothing.

    Args:
        vertices: [V,3] float, already normalized (see ``io.normalization``).
        faces: [F,3] int.
        n: total number of points.
        rng: np.random.Generator, seed or None.
        surface_frac: fraction of near-surface points, in [0, 1].
        sigmas: noise standard deviations (unit coordinates) of the near-surface groups.
        thin_frac: fraction of all points placed across thin parts, in [0, surface_frac].
        thin_width: thickness below which a part counts as thin (unit coordinates).
        fast: two-pass winding numbers for the signs (``inside`` module doc); False: the reference evaluation
            (the same points and distances; a sign can differ only where the first pass erred by more than
            ``inside.MARGIN``).
        timings: a dict that receives the seconds of each part: ``samples`` (drawing the points), ``thin``
            (finding thin parts), ``distance`` (unsigned distances), ``sign`` (winding numbers).

    Returns:
        (points [n,3] float32, sdf [n] float32).

    Examples:
        >>> import trimesh
        >>> ball = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
        >>> pts, sdf = sdf_training_set(ball.vertices, ball.faces, 1000, np.random.default_rng(0))
        >>> pts.shape, sdf.shape, bool((np.abs(np.linalg.norm(pts, axis=1) - 0.5 - sdf) < 0.01).mean() > 0.95)
        ((1000, 3), (1000,), True)
    """
    if not 0.0 <= surface_frac <= 1.0:
        raise ValueError(f"surface_frac must be in [0, 1], got {surface_frac}")
    if not 0.0 <= thin_frac <= surface_frac:
        raise ValueError(f"thin_frac must be in [0, surface_frac={surface_frac}], got {thin_frac}")
    rng = _rng(rng)
    times = {"samples": 0.0, "thin": 0.0}
    clock = time.perf_counter
    t = clock()
    sigmas = tuple(sigmas) if len(sigmas) else (0.0,)
    n_surf = int(round(n * surface_frac))
    parts = [rng.uniform(-1.0, 1.0, size=(n - n_surf, 3))]
    wn = WindingNumber(vertices, faces)
    if thin_frac > 0:
        t_thin = clock()
        thin = thin_part_samples(vertices, faces, int(round(n * thin_frac)), rng, thin_width, winding=wn,
                                 fast=fast)
        times["thin"] = clock() - t_thin
        times["samples"] -= times["thin"]
        parts.append(thin)
        n_surf -= len(thin)
    if n_surf:
        pts, _ = surface_samples(vertices, faces, n_surf, rng)
        sig = np.asarray(sigmas, dtype=np.float64)[np.arange(n_surf) % len(sigmas)]
        parts.append(pts + rng.normal(size=pts.shape) * sig[:, None])
    points = np.concatenate(parts)
    points = points[morton_order(points)]  # one gather: both queries then read it in order
    times["samples"] += clock() - t
    t = clock()
    dist = Distance(vertices, faces)(points, presorted=True)
    times["distance"] = clock() - t
    t = clock()
    w = wn(points, fast=fast, presorted=True)
    times["sign"] = clock() - t
    if timings is not None:
        timings.update(times)
    sdf = np.where(w >= 0.5, -dist, dist)
    return points.astype(np.float32), sdf.astype(np.float32)
