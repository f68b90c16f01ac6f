"""Viewer camera maths: the Orbit (a render Camera moved about a pivot), frames at any size, snapping, reset."""

import math

import numpy as np
import pytest

from fieldfit.render.camera import Camera, look_at
from fieldfit.viewer.camera import Controls, Orbit, Preset, lens, orbit_home, rotation


def _cam(eye=(0.0, 0.0, 3.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> Orbit:
    eye, target = np.asarray(eye), np.asarray(target)
    return Orbit(lens(80, 60, look_at(eye, target, up)), float(np.linalg.norm(eye - target)), up)


def _orthonormal(c2w):
    r = c2w[:, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-10)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_look_at_is_opengl():
    c = _cam(eye=(1.0, 2.0, 5.0), target=(1.0, 2.0, 0.0))
    _orthonormal(c.c2w)
    np.testing.assert_allclose(c.forward, [0, 0, -1], atol=1e-12)  # looks along -z
    np.testing.assert_allclose(c.c2w[:, 1], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(c.pivot, [1, 2, 0], atol=1e-12)
    assert isinstance(c.camera, Camera)
    assert c.camera.width == 80
    assert c.camera.height == 60
    # looking straight down the up axis still gives a valid frame
    _orthonormal(look_at([0, 5, 0], [0, 0, 0], [0, 1, 0]))


def test_rotation_matches_rodrigues_quarter_turn():
    np.testing.assert_allclose(rotation([0, 0, 1], math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_moves_replace_the_pose_and_keep_the_lens():
    c = _cam()
    before = c.camera
    c.orbit(0.3, 0.1)
    assert c.camera is not before
    assert not np.allclose(c.camera.c2w, before.c2w)
    assert (c.camera.fx, c.camera.fy, c.camera.cx, c.camera.cy, c.camera.width, c.camera.height) == \
        (before.fx, before.fy, before.cx, before.cy, before.width, before.height)
    np.testing.assert_allclose(before.c2w, _cam().c2w)  # the old Camera (frozen) is untouched
    copy = c.copy()
    copy.pan(1.0, 0.0)
    assert not np.allclose(copy.eye, c.eye)  # copies move independently


def test_orbit_keeps_pivot_and_distance():
    c = _cam()
    pivot = c.pivot.copy()
    c.orbit(0.7, 0.3)
    _orthonormal(c.c2w)
    np.testing.assert_allclose(c.pivot, pivot, atol=1e-9)
    assert np.linalg.norm(c.eye - pivot) == pytest.approx(3.0)
    # yaw right: the camera moves to its left around the pivot; pitch up: it rises
    c = _cam()
    c.orbit(0.2, 0.0)
    assert c.eye[0] < 0
    assert c.eye[1] == pytest.approx(0.0, abs=1e-12)
    c = _cam()
    c.orbit(0.0, 0.2)
    assert c.eye[1] > 0
    np.testing.assert_allclose(c.pivot, [0, 0, 0], atol=1e-9)


def test_orbit_never_flips_over_the_pole():
    c = _cam()
    for _ in range(50):
        c.orbit(0.0, 0.5)
    polar = math.degrees(math.acos(np.dot(-c.forward, c.up)))
    assert 1.9 <= polar <= 3.0  # clamped at MIN_POLAR (2 degrees), not past the up axis
    assert c.c2w[1, 1] > 0  # camera y still points roughly up


def test_pan_zoom_fly():
    c = _cam()
    c.pan(0.5, -0.25)  # in pivot distances
    np.testing.assert_allclose(c.eye, [1.5, -0.75, 3.0], atol=1e-12)
    np.testing.assert_allclose(c.pivot, [1.5, -0.75, 0.0], atol=1e-12)
    c = _cam()
    c.zoom(0.5)
    np.testing.assert_allclose(c.eye, [0, 0, 1.5], atol=1e-12)
    np.testing.assert_allclose(c.pivot, [0, 0, 0], atol=1e-12)
    c = _cam()
    c.fly(0.1, 0.0, 0.0)  # forward 0.1 pivot distances, pivot comes along
    np.testing.assert_allclose(c.eye, [0, 0, 2.7], atol=1e-12)
    assert c.distance == pytest.approx(3.0)


def test_frames_at_any_size_keep_the_vertical_fov_and_principal_point():
    cam = Camera(look_at([0, 0, 3], [0, 0, 0], [0, 1, 0]), 400.0, 380.0, 205.0, 148.0, 400, 300,
                 distortion=[0.01, 0, 0, 0, 0, 0], model="OPENCV")
    o = Orbit(cam, 3.0)
    assert o.at(400, 300) is cam  # its own size: exactly the scene camera (its rays, its distortion)
    half = o.at(200, 150)
    assert (half.fx, half.fy, half.cx, half.cy, half.width, half.height) == pytest.approx(
        (200.0, 190.0, 102.5, 74.0, 200, 150))
    wide = o.at(800, 300)  # a wider window: same vertical fov and pixel aspect, principal point in place
    assert wide.fov_y == pytest.approx(cam.fov_y)
    assert wide.fx / wide.fy == pytest.approx(400.0 / 380.0)
    assert (wide.cx / 800, wide.cy / 300) == pytest.approx((205.0 / 400, 148.0 / 300))
    np.testing.assert_allclose(wide.c2w, cam.c2w)
    assert lens(64, 48).fov_y == pytest.approx(math.radians(50.0))


def test_home_frames_the_sphere():
    c = orbit_home([1.0, 0.0, 0.0], 2.0, [0, 0, 1])
    np.testing.assert_allclose(c.pivot, [1, 0, 0], atol=1e-9)
    assert 2.0 / c.distance <= math.sin(c.camera.fov_y / 2)  # the whole sphere is inside the vertical field of view
    assert 2.0 / c.distance > 0.9 * math.sin(c.camera.fov_y / 2)  # and fills it


def test_controls_keys_snap_reset():
    home = _cam()
    presets = [Preset(f"test:{k}", Camera(look_at([k + 1.0, 0, 4], [0, 0, 0], [0, 1, 0]), 60.0, 40.0, 32, 24, 64, 48))
               for k in range(3)]
    assert presets[0].size == (64, 48)
    ctl = Controls(home, presets)
    assert ctl.press("]")
    assert ctl.camera.camera is presets[0].camera  # pose and lens: the scene camera itself
    assert ctl.camera.at(64, 48) is presets[0].camera
    ctl.press("[")
    ctl.press("[")  # wraps around to the last camera
    assert ctl.preset_index == 1
    ctl.snap_named("test:2")
    np.testing.assert_allclose(ctl.camera.c2w, presets[2].camera.c2w)
    assert ctl.camera.distance == pytest.approx(3.0)  # the pivot stays at its distance
    ctl.press("w")
    assert ctl.flying()
    before = ctl.camera.eye.copy()
    ctl.advance(0.5)
    ctl.release("w")
    assert not ctl.flying()
    moved = ctl.camera.eye - before
    np.testing.assert_allclose(moved / np.linalg.norm(moved), ctl.camera.forward, atol=1e-9)
    np.testing.assert_allclose(presets[2].camera.c2w[:, 3], [3, 0, 4])  # flying did not move the preset
    assert ctl.press("r")
    np.testing.assert_allclose(ctl.camera.c2w, home.c2w)
    assert ctl.camera.camera.fx == home.camera.fx  # and the home lens is back
    with pytest.raises(KeyError):
        ctl.snap_named("test:9")


def test_controls_mouse():
    ctl = Controls(_cam())
    ctl.drag(50, 0, 500)  # orbit
    assert ctl.camera.eye[0] < 0
    ctl = Controls(_cam())
    ctl.drag(50, 0, 500, pan=True)  # the scene follows the mouse: the camera moves left
    assert ctl.camera.eye[0] < 0
    assert ctl.camera.forward == pytest.approx([0, 0, -1])
    # one pixel of drag moves the pivot by one pixel's footprint at the pivot
    fy = ctl.camera.camera.fy / ctl.camera.camera.height * 500
    assert ctl.camera.eye[0] == pytest.approx(-50 / fy * 3.0)
    ctl.scroll(2)
    assert ctl.camera.distance == pytest.approx(3.0 * 0.81)
    planar = Controls(_cam(), planar=True)
    planar.drag(0, 30, 300)  # 2D views pan with the left button: dragging down moves the camera up
    assert planar.camera.eye[1] > 0
    assert planar.camera.forward == pytest.approx([0, 0, -1])
