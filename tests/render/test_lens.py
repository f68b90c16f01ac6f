"""render.lens: the rational (FULL_OPENCV) and fisheye models against their formulas, exact round trips through
Camera.project and Camera.rays (fisheye past 90 degrees), and source views of mixed lenses."""

import math

import numpy as np
import pytest
import torch

from fieldfit.render.camera import Camera, look_at
from fieldfit.render.lens import _distort_with_jacobian, directions, distort, fisheye_project, undistort
from fieldfit.render.samplers.projection import SourceViews

F64 = torch.float64
# k1..k6, p1, p2 of a wide rational lens, monotone (invertible) over the test images
RATIONAL = torch.tensor([-0.05, 0.012, 0.0005, 0.1, 0.004, 0.0003, 1e-3, -6e-4], dtype=F64)
FISH = torch.tensor([0.03, -0.006, 0.0011, -0.0002, 0.0, 0.0], dtype=F64)


def _grid(w, h):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64) + 0.5, torch.arange(w, dtype=F64) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)


def test_rational_model_matches_its_formula():
    u, v = 0.42, -0.31
    k1, k2, k3, k4, k5, k6, p1, p2 = RATIONAL.tolist()
    r2 = u * u + v * v
    rad = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    ud = u * rad + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
    vd = v * rad + p1 * (r2 + 2 * v * v) + 2 * p2 * u * v
    out = distort(torch.tensor([[u, v]], dtype=F64), RATIONAL, "FULL_OPENCV")
    torch.testing.assert_close(out, torch.tensor([[ud, vd]], dtype=F64), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"FULL_OPENCV model takes \[8\]"):
        distort(torch.tensor([[u, v]], dtype=F64), RATIONAL[:6], "FULL_OPENCV")


def test_rational_jacobian_matches_autograd():
    gen = torch.Generator().manual_seed(4)
    uv = ((torch.rand(30, 2, generator=gen, dtype=F64) - 0.5) * 1.4).requires_grad_(True)
    ud, vd, a, b, c, d = _distort_with_jacobian(uv[:, 0], uv[:, 1], RATIONAL.unbind(), "FULL_OPENCV")
    gu = torch.autograd.grad(ud.sum(), uv, retain_graph=True)[0]
    gv = torch.autograd.grad(vd.sum(), uv)[0]
    torch.testing.assert_close(torch.stack([a, b], -1).detach(), gu)
    torch.testing.assert_close(torch.stack([c, d], -1).detach(), gv)


@pytest.mark.parametrize(("model", "dist"), [("FULL_OPENCV", RATIONAL), ("OPENCV_FISHEYE", FISH)])
def test_every_pixel_round_trips_through_rays_and_project(model, dist):
    """pixel -> Camera.rays -> a point on the ray -> Camera.project -> the same pixel, over a whole image whose
    corners are 60 degrees (rational) / 100 degrees (fisheye) off the axis."""
    w, h = 48, 36
    f = 14.0 if model == "FULL_OPENCV" else 16.0
    cam = Camera(look_at([0.5, 1.0, 2.0], [0, 0, 0], [0, 1, 0]), f, f * 1.01, 24.3, 17.8, w, h,
                 distortion=dist.numpy(), model=model)
    xy = _grid(w, h)
    o, d = cam.rays(xy, dtype=F64)
    angle = torch.rad2deg(torch.acos((d @ torch.as_tensor(cam.forward)).clamp(-1, 1)))
    assert float(angle.max()) > (55 if model == "FULL_OPENCV" else 95)
    back, depth = cam.project(o + 1.7 * d)
    torch.testing.assert_close(back, xy, atol=1e-8, rtol=0)
    if model == "FULL_OPENCV":
        assert bool((depth > 0).all())
    else:  # past 90 degrees the points are behind the image plane, and the fisheye still sees them
        assert bool((depth < 0).any())


def test_fisheye_projects_by_the_equidistant_formula_at_wide_angles():
    # camera-space points (OpenCV axes) 30, 89 and 120 degrees off the axis
    k1, k2, k3, k4 = FISH[:4].tolist()
    for deg, az in ((30, 0.3), (89, 2.0), (120, -1.1)):
        th = math.radians(deg)
        p = torch.tensor([[math.sin(th) * math.cos(az), math.sin(th) * math.sin(az), math.cos(th)]], dtype=F64) * 2.5
        td = th * (1 + k1 * th**2 + k2 * th**4 + k3 * th**6 + k4 * th**8)
        expect = torch.tensor([[td * math.cos(az), td * math.sin(az)]], dtype=F64)
        torch.testing.assert_close(fisheye_project(p, FISH), expect, rtol=0, atol=1e-14)
        d = directions(expect, FISH, "OPENCV_FISHEYE")  # and back: the unit direction
        torch.testing.assert_close(d, p / p.norm(), rtol=0, atol=1e-12)
    # in front of the camera the pinhole coordinates round trip too
    uv = torch.tensor([[0.4, -0.9], [1e-9, 0.0], [0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(undistort(distort(uv, FISH, "OPENCV_FISHEYE"), FISH, model="OPENCV_FISHEYE"), uv,
                               rtol=0, atol=1e-13)


def test_zero_fisheye_is_equidistant_not_pinhole():
    cam = Camera(np.eye(3, 4), 100.0, 100.0, 200.0, 200.0, 400, 400, model="OPENCV_FISHEYE")
    # f * pi / 2 pixels right of the centre: 90 degrees off the axis, along +x
    _, d = cam.rays(torch.tensor([[200.0 + 100.0 * math.pi / 2, 200.0]], dtype=F64), dtype=F64)
    torch.testing.assert_close(d, torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), rtol=0, atol=1e-12)


def test_source_views_of_mixed_lenses_project_as_their_cameras():
    pose = look_at([0.2, 0.1, 3.0], [0, 0, 0], [0, 1, 0])
    cams = [Camera(pose, 30.0, 30.0, 16.0, 12.0, 32, 24),
            Camera(pose, 30.0, 30.0, 16.0, 12.0, 32, 24, distortion=[0.1, 0, 0, 0, 0, 0], model="OPENCV"),
            Camera(pose, 30.0, 30.0, 16.0, 12.0, 32, 24, distortion=RATIONAL.numpy(), model="FULL_OPENCV"),
            Camera(pose, 20.0, 20.0, 16.0, 12.0, 32, 24, distortion=FISH.numpy(), model="OPENCV_FISHEYE")]
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(1, 40, 3, generator=gen) - 0.5) * 0.8
    sv = SourceViews(cams, lambda v: np.full((24, 32, 3), v / 4.0, np.float32))
    assert sorted(m for m, _, _ in sv.lenses) == ["FULL_OPENCV", "OPENCV", "OPENCV_FISHEYE"]
    views = torch.arange(4)
    xy, depth = sv._project_lenses(x[0, :, None].expand(40, 4, 3).reshape(-1, 3), views.repeat(40))
    for v, cam in enumerate(cams):
        ref, ref_depth = cam.project(x[0].double())
        torch.testing.assert_close(xy.view(40, 4, 2)[:, v].double(), ref, atol=2e-4, rtol=0)
        torch.testing.assert_close(depth.view(40, 4)[:, v].double(), ref_depth, atol=1e-5, rtol=0)
    col = sv.colours(x, views)  # the whole lookup runs with every lens
    assert col.shape == (1, 40, 4, 3)
    assert torch.isfinite(col).all()
