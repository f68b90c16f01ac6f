"""Lens models: distortion of normalised image coordinates, its exact inverse, and fisheye rays.

Notation: a camera-space point (x, y, z) in OpenCV axes (x right, y down, z forward) has the normalised
coordinates (u, v) = (x / z, y / z), r2 = u^2 + v^2; a pixel is (fx u_d + cx, fy v_d + cy) where (u_d, v_d)
is (u, v) after the lens. Coefficient vectors (``Camera.distortion``) by model:

* OPENCV (6 numbers: k1, k2, k3, k4, p1, p2; nerfstudio's layout), polynomial radial:
      radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4
* FULL_OPENCV (8 numbers: k1, k2, k3, k4, k5, k6, p1, p2), OpenCV's rational model (COLMAP's FULL_OPENCV, whose
  own order k1 k2 p1 p2 k3 k4 k5 k6 the COLMAP loader reorders):
      radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)
  Both add the tangential terms:
      u_d = u radial + 2 p1 u v + p2 (r2 + 2 u^2)
      v_d = v radial + p1 (r2 + 2 v^2) + 2 p2 u v
* OPENCV_FISHEYE (6 numbers: k1, k2, k3, k4, p1, p2; p1 and p2 are ignored), equidistant (OpenCV's and COLMAP's
  fisheye): theta = angle between the point and the optical axis (atan2(sqrt(x^2 + y^2), z), up to pi),
      theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
      (u_d, v_d) = theta_d (x, y) / sqrt(x^2 + y^2)
  so a fisheye pixel may see beyond 90 degrees; ``directions`` gives its ray exactly, while ``undistort`` (pinhole
  coordinates) can only describe points in front of the camera.

"PINHOLE" with coefficients reads them as OPENCV. Inverses run Newton's method in float64 with analytic
derivatives and a fixed number of iterations (no host synchronisation); a near-singular step freezes that point.
"""

import torch

DIST_SIZE = {"PINHOLE": 6, "OPENCV": 6, "FULL_OPENCV": 8, "OPENCV_FISHEYE": 6}
FISHEYE = "OPENCV_FISHEYE"


def lens_model(model: str) -> str:
    """The model whose formula applies ("PINHOLE" coefficients are OPENCV ones); ValueError for unknown models."""
    if model not in DIST_SIZE:
        raise ValueError(f"lens model must be one of {tuple(DIST_SIZE)}, got {model!r}")
    return "OPENCV" if model == "PINHOLE" else model


def coeffs(dist, like: torch.Tensor, model: str = "OPENCV") -> tuple:
    """The coefficients of ``dist`` ([D] or [N,D]) as a tuple of scalars / [N] tensors in ``like``'s dtype."""
    dist = torch.as_tensor(dist, dtype=like.dtype, device=like.device)
    n = DIST_SIZE[lens_model(model)]
    if dist.shape[-1] != n:
        raise ValueError(f"dist: the {model} model takes [{n}] or [N,{n}] coefficients, got {tuple(dist.shape)}")
    return dist.unbind(-1)


def _radial(r2, k, model):
    """(radial factor, its derivative in r2) of the pinhole models; k is the coefficient tuple."""
    if model == "FULL_OPENCV":
        k1, k2, k3, k4, k5, k6 = k[:6]
        num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
        den = torch.where(den.abs() > 1e-12, den, torch.full_like(den, 1e-12))
        dnum = k1 + r2 * (2.0 * k2 + r2 * 3.0 * k3)
        dden = k4 + r2 * (2.0 * k5 + r2 * 3.0 * k6)
        return num / den, (dnum * den - num * dden) / (den * den)
    k1, k2, k3, k4 = k[:4]
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    return radial, k1 + r2 * (2.0 * k2 + r2 * (3.0 * k3 + r2 * 4.0 * k4))


def _distort_with_jacobian(u, v, k, model="OPENCV"):
    """(u_d, v_d, du_d/du, du_d/dv, dv_d/du, dv_d/dv) of a pinhole model (OPENCV / FULL_OPENCV)."""
    p1, p2 = k[-2], k[-1]
    r2 = u * u + v * v
    radial, dradial_dr2 = _radial(r2, k, model)
    ud = u * radial + 2.0 * p1 * u * v + p2 * (r2 + 2.0 * u * u)
    vd = v * radial + p1 * (r2 + 2.0 * v * v) + 2.0 * p2 * u * v
    # d r2 / du = 2u, d r2 / dv = 2v
    dud_du = radial + 2.0 * u * u * dradial_dr2 + 2.0 * p1 * v + 6.0 * p2 * u
    dud_dv = 2.0 * u * v * dradial_dr2 + 2.0 * p1 * u + 2.0 * p2 * v
    dvd_du = 2.0 * u * v * dradial_dr2 + 2.0 * p1 * u + 2.0 * p2 * v
    dvd_dv = radial + 2.0 * v * v * dradial_dr2 + 6.0 * p1 * v + 2.0 * p2 * u
    return ud, vd, dud_du, dud_dv, dvd_du, dvd_dv


def _theta_d(theta, k):
    """(theta_d, d theta_d / d theta) of the fisheye polynomial."""
    k1, k2, k3, k4 = k[:4]
    t2 = theta * theta
    poly = 1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))
    return theta * poly, 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))


def fisheye_project(p: torch.Tensor, dist) -> torch.Tensor:
    """OpenCV camera-space points p [N,3] -> distorted normalised coordinates [N,2] of the fisheye model (any angle
    up to pi from the optical axis); differentiable."""
    k = coeffs(dist, p, FISHEYE)
    rho = torch.sqrt((p[:, 0] * p[:, 0] + p[:, 1] * p[:, 1]).clamp_min(1e-300))  # no NaN gradient on the axis
    theta = torch.atan2(rho, p[:, 2])
    td, _ = _theta_d(theta, k)
    tiny = rho <= 1e-12 * p[:, 2].abs().clamp_min(1e-300)
    # on the axis theta_d / rho -> 1 / z (theta ~ rho / z)
    scale = torch.where(tiny, 1.0 / torch.where(p[:, 2] == 0, torch.ones_like(rho), p[:, 2]),
                        td / torch.where(tiny, torch.ones_like(rho), rho))
    return p[:, :2] * scale[:, None]


def _fisheye_theta(xy_d: torch.Tensor, k, iters: int):
    """(theta, rho_d) of distorted fisheye coordinates [N,2] (float64): Newton on theta_d(theta) = rho_d."""
    rd = torch.sqrt(xy_d[:, 0] * xy_d[:, 0] + xy_d[:, 1] * xy_d[:, 1])
    theta = rd.clone()
    for _ in range(iters):
        td, dtd = _theta_d(theta, k)
        ok = dtd > 1e-9
        step = torch.where(ok, (td - rd) / torch.where(ok, dtd, torch.ones_like(dtd)), torch.zeros_like(dtd))
        theta = (theta - step).clamp(0.0, torch.pi)
    return theta, rd


def distort(xy: torch.Tensor, dist: torch.Tensor, model: str = "OPENCV") -> torch.Tensor:
    """Normalised coordinates (u, v) [N,2] (y down) -> where the lens puts them, [N,2]; differentiable.

    ``dist`` is [D] or [N,D] in ``model``'s layout (module doc). For OPENCV_FISHEYE, (u, v) are those of a point in
    front of the camera (``fisheye_project`` takes any point).

    Examples:
        >>> distort(torch.tensor([[0.5, 0.0]]), torch.tensor([0.1, 0, 0, 0, 0, 0])).tolist()
        [[0.512499988079071, 0.0]]
    """
    model = lens_model(model)
    if model == FISHEYE:
        return fisheye_project(torch.cat([xy, torch.ones_like(xy[:, :1])], -1), dist)
    ud, vd, *_ = _distort_with_jacobian(xy[..., 0], xy[..., 1], coeffs(dist, xy, model), model)
    return torch.stack([ud, vd], dim=-1)


def undistort(xy_distorted: torch.Tensor, dist: torch.Tensor, iters: int = 10, model: str = "OPENCV") -> torch.Tensor:
    """Invert ``distort`` by Newton's method: distorted (u_d, v_d) [N,2] -> (u, v) [N,2].

    Runs in float64 internally (the result is cast back to the input dtype) from the distorted point; 10
    iterations reach float64 round-off for the magnitudes of real lenses (|k1| <~ 0.3 over the image). A
    near-singular Jacobian (far outside the image circle) freezes that point instead of producing NaN. Fisheye
    points at 90 degrees or more from the axis have no pinhole coordinates (inf / negative): use ``directions``.
    """
    model = lens_model(model)
    xd = xy_distorted.double()
    k = coeffs(dist, xd, model)
    if model == FISHEYE:
        theta, rd = _fisheye_theta(xd, k, max(iters, 20))
        ratio = torch.where(rd > 1e-300, torch.tan(theta) / torch.where(rd > 1e-300, rd, torch.ones_like(rd)),
                            torch.ones_like(rd))
        return (xd * ratio[:, None]).to(xy_distorted.dtype)
    ud_t, vd_t = xd[..., 0], xd[..., 1]
    u, v = ud_t.clone(), vd_t.clone()
    for _ in range(iters):
        ud, vd, a, b, c, d = _distort_with_jacobian(u, v, k, model)
        fu, fv = ud - ud_t, vd - vd_t
        det = a * d - b * c
        ok = det.abs() > 1e-12
        safe = torch.where(ok, det, torch.ones_like(det))
        du = torch.where(ok, (d * fu - b * fv) / safe, torch.zeros_like(det))
        dv = torch.where(ok, (a * fv - c * fu) / safe, torch.zeros_like(det))
        u, v = u - du, v - dv
    return torch.stack([u, v], dim=-1).to(xy_distorted.dtype)


def directions(xy_distorted: torch.Tensor, dist, model: str = "OPENCV", iters: int = 20) -> torch.Tensor:
    """Unit camera-space directions [N,3] in OpenCV axes (x right, y down, z forward) of distorted normalised
    coordinates [N,2], in float64: the exact inverse of the lens, fisheye angles past 90 degrees included."""
    model = lens_model(model)
    xd = xy_distorted.double()
    if model == FISHEYE:
        theta, rd = _fisheye_theta(xd, coeffs(dist, xd, model), iters)
        safe = torch.where(rd > 0, rd, torch.ones_like(rd))
        unit = torch.where((rd > 0)[:, None], xd / safe[:, None], torch.zeros_like(xd))
        return torch.cat([unit * torch.sin(theta)[:, None], torch.cos(theta)[:, None]], -1)
    uv = xd if dist is None else undistort(xd, dist, iters, model)
    d = torch.cat([uv, torch.ones_like(uv[:, :1])], -1)
    return d / d.norm(dim=-1, keepdim=True)


__all__ = ["DIST_SIZE", "directions", "distort", "fisheye_project", "lens_model", "undistort"]
