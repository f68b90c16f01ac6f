"""Point samples on and around a mesh, with exact signed distances, for SDF training."""

import numpy as np

from .inside import Distance, WindingNumber


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


def sdf_training_set(vertices, faces, n: int, rng=None, surface_frac: float = 0.5,
                     sigmas=(0.01, 0.05)) -> tuple[np.ndarray, np.ndarray]:
    """Training points and exact signed distances for a mesh in unit coordinates.

    A mixture of ``n - n_s`` uniform points in [-1,1]^3 and ``n_s = round(n * surface_frac)``
    surface points perturbed by isotropic Gaussian noise, split evenly over ``sigmas``.
    Distances come from an AABB tree, signs from the fast winding number (negative inside), so
    open or slightly broken meshes still give sensible signs. Points are shuffled.

    Args:
        vertices: [V,3] float, already normalized (see ``io.normalization``).
        faces: [F,3] int.
        n: total number of points.
        rng: np.random.Generator, seed or None.
        surface_frac: fraction of near-surface points, in [0, 1].
        sigmas: noise standard deviations (unit coordinates) of the near-surface groups.

    Returns:
        (points [n,3] float32, sdf [n] float32).

    Examples:
        >>> pts, sdf = sdf_training_set(v_unit, f, 1_000_000, np.random.default_rng(0))
    """
    if not 0.0 <= surface_frac <= 1.0:
        raise ValueError(f"surface_frac must be in [0, 1], got {surface_frac}")
    rng = _rng(rng)
    sigmas = tuple(sigmas) if len(sigmas) else (0.0,)
    n_surf = int(round(n * surface_frac))
    parts = [rng.uniform(-1.0, 1.0, size=(n - n_surf, 3))]
    if n_surf:
        pts, _ = surface_samples(vertices, faces, n_surf, rng)
        sig = np.asarray(sigmas, dtype=np.float64)[np.arange(n_surf) % len(sigmas)]
        parts.append(pts + rng.normal(size=pts.shape) * sig[:, None])
    points = np.concatenate(parts)[rng.permutation(n)]
    dist = Distance(vertices, faces)(points)
    w = WindingNumber(vertices, faces)(points)
    sdf = np.where(w >= 0.5, -dist, dist)
    return points.astype(np.float32), sdf.astype(np.float32)
