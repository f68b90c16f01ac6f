"""render.rays: hand-computed rays, distortion round trips, NDC, ray-box intersection."""

import math

import pytest
import torch

from fieldfit.render.lens import distort, undistort
from fieldfit.render.rays import image_rays, ndc_rays, pixel_rays, ray_aabb

# The fox capture's magnitudes (instant-ngp data/nerf/fox, portrait 1080 x 1920).
FOX = dict(W=1080, H=1920, fx=1375.5, fy=1374.2, cx=541.3, cy=958.7)
FOX_DIST = torch.tensor([-0.1, 0.01, 0.0, 0.0, 1e-3, -6e-4], dtype=torch.float64)


def _random_rotation(gen, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=dtype))
    return q * torch.sign(torch.linalg.det(q))


def test_principal_point_looks_down_minus_z():
    o, d = pixel_rays(torch.tensor([[320.0, 240.0]]), 500.0, 400.0, 320.0, 240.0, torch.eye(3, 4))
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.0, -1.0]]))
    torch.testing.assert_close(o, torch.zeros(1, 3))


def test_corner_pixel_direction():
    # top-left pixel centre (0.5, 0.5): left (x<0) and up (y>0) in OpenGL camera space
    fx, fy, cx, cy = 500.0, 400.0, 320.0, 240.0
    f64 = torch.float64
    _, d = pixel_rays(torch.tensor([[0.5, 0.5]], dtype=f64), fx, fy, cx, cy, torch.eye(3, 4, dtype=f64))
    u, v = (0.5 - cx) / fx, (0.5 - cy) / fy
    n = math.sqrt(u * u + v * v + 1)
    torch.testing.assert_close(d, torch.tensor([[u / n, -v / n, -1 / n]], dtype=torch.float64))
    assert d[0, 0] < 0
    assert d[0, 1] > 0


def test_c2w_rotation_and_translation_applied():
    gen = torch.Generator().manual_seed(0)
    rot, t = _random_rotation(gen), torch.randn(3, generator=gen, dtype=torch.float64)
    c2w = torch.cat([rot, t[:, None]], 1)
    xy = torch.rand(50, 2, generator=gen, dtype=torch.float64) * torch.tensor([640.0, 480.0], dtype=torch.float64)
    o, d = pixel_rays(xy, 500.0, 510.0, 321.0, 239.0, c2w)
    _, d_cam = pixel_rays(xy, 500.0, 510.0, 321.0, 239.0, torch.eye(3, 4, dtype=torch.float64))
    torch.testing.assert_close(d, d_cam @ rot.t())
    torch.testing.assert_close(o, t.expand(50, 3))
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(50, dtype=torch.float64))
    # per-ray cameras and per-ray intrinsics
    c2ws = c2w.expand(50, 3, 4).clone()
    o2, d2 = pixel_rays(xy, torch.full((50,), 500.0), 510.0, 321.0, 239.0, c2ws)
    torch.testing.assert_close(d2, d)
    torch.testing.assert_close(o2, o)


def test_image_rays_row_major():
    H, W = 3, 4
    c2w = torch.eye(3, 4)
    o, d = image_rays(H, W, 5.0, 5.0, 2.0, 1.5, c2w)
    assert o.shape == d.shape == (H * W, 3)
    row, col = 2, 1
    _, d_ref = pixel_rays(torch.tensor([[col + 0.5, row + 0.5]]), 5.0, 5.0, 2.0, 1.5, c2w)
    torch.testing.assert_close(d[row * W + col], d_ref[0])
    # the bottom row looks down (y < 0)
    assert (d.view(H, W, 3)[-1, :, 1] < 0).all()


def test_distort_matches_opencv_formula():
    u, v = 0.3, -0.2
    k1, k2, k3, k4, p1, p2 = -0.1, 0.01, 0.002, 0.0, 1e-3, -6e-4
    r2 = u * u + v * v
    rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    ud = u * rad + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    vd = v * rad + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v
    dist = torch.tensor([k1, k2, k3, k4, p1, p2], dtype=torch.float64)
    out = distort(torch.tensor([[u, v]], dtype=torch.float64), dist)
    torch.testing.assert_close(out, torch.tensor([[ud, vd]], dtype=torch.float64))


def test_distort_k4_is_r8_term():
    xy = torch.tensor([[0.4, 0.3]], dtype=torch.float64)
    r8 = 0.25**4
    out = distort(xy, torch.tensor([0, 0, 0, 0.5, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(out, xy * (1 + 0.5 * r8))


def test_distortion_jacobian_matches_autograd():
    from fieldfit.render.lens import _distort_with_jacobian

    gen = torch.Generator().manual_seed(1)
    uv = (torch.rand(20, 2, generator=gen, dtype=torch.float64) - 0.5).requires_grad_(True)
    k = torch.tensor([-0.1, 0.01, 0.003, 0.0005, 1e-3, -6e-4], dtype=torch.float64)
    ud, vd, a, b, c, d = _distort_with_jacobian(uv[:, 0], uv[:, 1], k.unbind())
    gu = torch.autograd.grad(ud.sum(), uv, retain_graph=True)[0]
    gv = torch.autograd.grad(vd.sum(), uv)[0]
    torch.testing.assert_close(torch.stack([a, b], -1).detach(), gu)
    torch.testing.assert_close(torch.stack([c, d], -1).detach(), gv)


def _fox_pixel_grid(dtype):
    # every 8th pixel edge across the whole image; the corners (largest distortion) included
    ys = torch.arange(0, FOX["H"] + 1, 8, dtype=dtype)
    xs = torch.arange(0, FOX["W"] + 1, 8, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


def _to_norm(px):
    return torch.stack([(px[:, 0] - FOX["cx"]) / FOX["fx"], (px[:, 1] - FOX["cy"]) / FOX["fy"]], -1)


def _to_px(uv):
    return torch.stack([uv[:, 0] * FOX["fx"] + FOX["cx"], uv[:, 1] * FOX["fy"] + FOX["cy"]], -1)


def test_undistort_round_trip_full_image_float64():
    px = _fox_pixel_grid(torch.float64)
    und = undistort(_to_norm(px), FOX_DIST)
    err = (_to_px(distort(und, FOX_DIST)) - px).abs().max()
    assert err < 1e-5, f"round trip error {float(err)} px"
    # and the other way: undistorted grid -> distort -> undistort
    und_px = _to_px(und)
    err2 = (_to_px(undistort(distort(_to_norm(und_px), FOX_DIST), FOX_DIST)) - und_px).abs().max()
    assert err2 < 1e-5


def test_undistort_float32_inputs():
    px = _fox_pixel_grid(torch.float32)
    und = undistort(_to_norm(px), FOX_DIST.float())
    assert und.dtype == torch.float32
    err = (_to_px(distort(und.double(), FOX_DIST)) - px.double()).abs().max()
    assert err < 1e-3  # float32 spacing at ~1000 px is 6e-5 px


def test_undistort_zero_distortion_is_identity():
    xy = torch.rand(100, 2) - 0.5
    assert torch.equal(undistort(xy, torch.zeros(6)), xy)
    assert torch.equal(distort(xy, torch.zeros(6)), xy)


def test_pixel_rays_with_distortion_recover_direction():
    gen = torch.Generator().manual_seed(2)
    uv = (torch.rand(30, 2, generator=gen, dtype=torch.float64) - 0.5) * 0.8
    px = _to_px(distort(uv, FOX_DIST))  # where the lens images these directions
    _, d = pixel_rays(px, FOX["fx"], FOX["fy"], FOX["cx"], FOX["cy"], torch.eye(3, 4, dtype=torch.float64), FOX_DIST)
    ref = torch.stack([uv[:, 0], -uv[:, 1], -torch.ones(30, dtype=torch.float64)], -1)
    torch.testing.assert_close(d, ref / ref.norm(dim=-1, keepdim=True), atol=1e-10, rtol=0)


def test_ndc_rays_formula():
    H, W, f, near = 378, 504, 407.0, 1.0
    o = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    d = torch.tensor([[0.05, 0.1, -1.0]], dtype=torch.float64)
    t = -(near + 0.3) / -1.0
    ox, oy, oz = 0.1 + t * 0.05, -0.2 + t * 0.1, 0.3 - t
    ax, ay = 2 * f / W, 2 * f / H
    o_ref = [-ax * ox / oz, -ay * oy / oz, 1 + 2 * near / oz]
    d_ref = [-ax * (0.05 / -1.0 - ox / oz), -ay * (0.1 / -1.0 - oy / oz), -2 * near / oz]
    o_n, d_n = ndc_rays(o, d, H, W, f, near)
    torch.testing.assert_close(o_n, torch.tensor([o_ref], dtype=torch.float64))
    torch.testing.assert_close(d_n, torch.tensor([d_ref], dtype=torch.float64))


def test_ndc_rays_project_metric_points():
    # a metric point X on the ray lands on the NDC ray at t' = 1 - near / depth
    H, W, f, near = 300, 400, 350.0, 1.5
    gen = torch.Generator().manual_seed(3)
    o = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.1
    d = torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.2
    d[:, 2] = -1.0
    o_n, d_n = ndc_rays(o, d, H, W, f, near)
    x = o + d * (5.0 + torch.rand(40, 1, generator=gen, dtype=torch.float64) * 20)
    proj = torch.stack([-2 * f / W * x[:, 0] / x[:, 2], -2 * f / H * x[:, 1] / x[:, 2], 1 + 2 * near / x[:, 2]], -1)
    tp = 1 - near / (-x[:, 2])
    torch.testing.assert_close(o_n + tp[:, None] * d_n, proj)
    torch.testing.assert_close(o_n[:, 2], torch.full((40,), -1.0, dtype=torch.float64))


def test_ray_aabb_hand_cases():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [0.0, 5.0, 3.0], [0.0, 0.0, 3.0], [1.0, 0.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    tn, tf, hit = ray_aabb(o, d, box)
    assert hit.tolist() == [True, True, False, False, True]
    torch.testing.assert_close(tn, torch.tensor([2.0, 0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(tf, torch.tensor([4.0, 1.0, 0.0, 0.0, 2.0]))
    assert torch.isfinite(tn).all()
    assert torch.isfinite(tf).all()


def test_ray_aabb_random_against_points():
    gen = torch.Generator().manual_seed(4)
    box = torch.tensor([[-0.5, -1.0, -0.2], [0.7, 0.3, 0.9]], dtype=torch.float64)
    o = torch.randn(2000, 3, generator=gen, dtype=torch.float64) * 2
    d = torch.randn(2000, 3, generator=gen, dtype=torch.float64)
    tn, tf, hit = ray_aabb(o, d, box)
    s = torch.linspace(0, 1, 64, dtype=torch.float64)
    inside_pts = o[hit, None] + d[hit, None] * (tn[hit, None] + s * (tf - tn)[hit, None])[..., None]
    eps = 1e-9
    assert ((inside_pts >= box[0] - eps) & (inside_pts <= box[1] + eps)).all()
    # rays reported as misses have no point inside the box on t >= 0 (dense check)
    t = torch.linspace(0, 10, 4001, dtype=torch.float64)
    pts = o[~hit, None] + d[~hit, None] * t[:, None]
    assert not ((pts > box[0]) & (pts < box[1])).all(-1).any()


@pytest.mark.parametrize("bad", [torch.eye(4), torch.zeros(3, 3)])
def test_pixel_rays_rejects_bad_c2w(bad):
    with pytest.raises(ValueError, match="c2w"):
        pixel_rays(torch.zeros(1, 2), 1.0, 1.0, 0.0, 0.0, bad)
