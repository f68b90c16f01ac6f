"""The one camera type: rays, projection, derived cameras, look-at helpers, frustum bounds."""

import math

import numpy as np
import pytest
import torch

from fieldfit.render.camera import Camera, frusta_bounds, look_at, look_at_centre, mean_up


def test_frusta_bounds_known_camera():
    f = Camera(np.eye(4)[:3], 2.0, 2.0, 2.0, 1.0, 4, 2)
    box = frusta_bounds([f], 1.0, 3.0)
    # at depth z the image spans x in [-z, z] (half-width 2 px / fx 2), y in [-z/2, z/2]
    np.testing.assert_allclose(box, [[-3, -1.5, -3], [3, 1.5, -1]])
    g = f.with_pose(np.concatenate([np.eye(3), [[10.0], [0], [0]]], 1))
    np.testing.assert_allclose(frusta_bounds([f, g], 1.0, 3.0), [[-3, -1.5, -3], [13, 1.5, -1]])


def test_rays_hit_what_project_sends_back():
    cam = Camera(look_at([1.0, 2.0, 3.0], [0, 0, 0], [0, 1, 0]), 40.0, 42.0, 15.5, 12.0, 32, 24,
                 distortion=[0.05, -0.01, 0, 0, 0.001, -0.002], model="OPENCV")
    o, d = cam.rays(dtype=torch.float64)
    pts = o + 2.5 * d
    xy, depth = cam.project(pts)
    ys, xs = torch.meshgrid(torch.arange(24, dtype=torch.float64) + 0.5, torch.arange(32, dtype=torch.float64) + 0.5,
                            indexing="ij")
    torch.testing.assert_close(xy, torch.stack([xs.reshape(-1), ys.reshape(-1)], -1), atol=1e-6, rtol=0)
    assert bool((depth > 0).all())
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(len(d), dtype=torch.float64))


def test_centre_pixel_looks_forward_and_sizes_derive():
    cam = Camera(look_at([0, 0, 5], [0, 0, 0], [0, 1, 0]), 100.0, 100.0, 50.0, 40.0, 100, 80)
    _, d = cam.rays(torch.tensor([[50.0, 40.0]]), dtype=torch.float64)
    np.testing.assert_allclose(d.numpy(), [[0, 0, -1]], atol=1e-12)
    np.testing.assert_allclose(cam.forward, [0, 0, -1], atol=1e-12)
    half = cam.scaled(2)
    assert (half.width, half.height, half.fx, half.cx) == (50, 40, 50.0, 25.0)
    big = cam.resized(200, 160)
    assert big.fov_y == pytest.approx(cam.fov_y)
    assert (big.cx, big.cy) == (100.0, 80.0)
    assert big.fx / big.fy == pytest.approx(cam.fx / cam.fy)
    crop = cam.crop(10, 20, 30, 20)
    assert (crop.cx, crop.cy, crop.width, crop.height) == (40.0, 20.0, 30, 20)
    # a crop's pixel (0, 0) is the full image's pixel (10, 20)
    _, d_crop = crop.rays(torch.tensor([[0.5, 0.5]]), dtype=torch.float64)
    _, d_full = cam.rays(torch.tensor([[10.5, 20.5]]), dtype=torch.float64)
    torch.testing.assert_close(d_crop, d_full)


def test_bad_shapes_say_so():
    with pytest.raises(ValueError, match="c2w"):
        Camera(np.eye(3), 1.0, 1.0, 0.5, 0.5, 1, 1)
    with pytest.raises(ValueError, match="model"):
        Camera(np.eye(3, 4), 1.0, 1.0, 0.5, 0.5, 1, 1, model="KANNALA")
    assert Camera(np.eye(3, 4), 1.0, 1.0, 0.5, 0.5, 1, 1, distortion=np.zeros(6), model="OPENCV").distortion is None
    with pytest.raises(ValueError, match="FULL_OPENCV distortion must be"):
        Camera(np.eye(3, 4), 1.0, 1.0, 0.5, 0.5, 1, 1, distortion=np.ones(6), model="FULL_OPENCV")
    fish = Camera(np.eye(3, 4), 1.0, 1.0, 0.5, 0.5, 1, 1, model="OPENCV_FISHEYE")
    np.testing.assert_array_equal(fish.distortion, np.zeros(6))  # the plain equidistant lens, not "no lens"


def test_look_at_is_orthonormal_even_along_up():
    for eye in ([0, 0, 4], [3, 1, -2], [0, 5, 0]):
        m = look_at(eye, [0, 0, 0], [0, 1, 0])
        r = m[:, :3]
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(-r[:, 2], -np.asarray(eye) / np.linalg.norm(eye), atol=1e-12)
        np.testing.assert_allclose(m[:, 3], eye)


def test_look_at_centre_and_mean_up_of_a_ring():
    poses = [look_at([4 * math.cos(a), 1.0, 4 * math.sin(a)], [0.5, 0.2, -0.3], [0, 1, 0])
             for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)]
    np.testing.assert_allclose(look_at_centre(poses), [0.5, 0.2, -0.3], atol=1e-9)
    up = mean_up(poses)
    assert np.linalg.norm(up) == pytest.approx(1.0)
    assert up[1] > 0.9
    one = look_at_centre(poses[:1])  # ill-posed: the camera position
    np.testing.assert_allclose(one, poses[0][:, 3])
