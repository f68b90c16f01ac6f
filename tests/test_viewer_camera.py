"""Viewer camera maths: look-at, orbit about the pivot, pan, zoom, fly, snapping, reset."""

import math

import numpy as np
import pytest

from fieldfit.viewer.camera import Camera, Controls, Lens, Preset, look_at, orbit_home, rotation


def _cam(eye=(0.0, 0.0, 3.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> Camera:
    eye, target = np.asarray(eye), np.asarray(target)
    return Camera(look_at(eye, target, up), float(np.linalg.norm(eye - target)), up)


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
    # looking straight down the up axis still gives a valid frame
    _orthonormal(look_at([0, 5, 0], [0, 0, 0], [0, 1, 0]))


def test_rotation_matches_rodrigues_quarter_turn():
    np.testing.assert_allclose(rotation([0, 0, 1], math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


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
    assert c.eye[0] < 0 and c.eye[1] == pytest.approx(0.0, abs=1e-12)
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


def test_lens_round_trip_and_any_size():
    lens = Lens.of_frame(fx=400.0, fy=380.0, cx=205.0, cy=148.0, width=400, height=300)
    assert lens.at(400, 300) == pytest.approx((400.0, 380.0, 205.0, 148.0))
    fx, fy, cx, cy = lens.at(200, 150)  # half size: everything halves
    assert (fx, fy, cx, cy) == pytest.approx((200.0, 190.0, 102.5, 74.0))


def test_home_frames_the_sphere():
    c = orbit_home([1.0, 0.0, 0.0], 2.0, [0, 0, 1])
    np.testing.assert_allclose(c.pivot, [1, 0, 0], atol=1e-9)
    half = math.atan(0.5 / c.lens.fy_rel)
    assert 2.0 / c.distance <= math.sin(half)  # the whole sphere is inside the vertical field of view


def test_controls_keys_snap_reset():
    home = _cam()
    presets = [Preset(f"test:{k}", look_at([k + 1.0, 0, 4], [0, 0, 0], [0, 1, 0]), Lens(aspect=1.5), (64, 48))
               for k in range(3)]
    ctl = Controls(home, presets)
    assert ctl.press("]")
    np.testing.assert_allclose(ctl.camera.c2w, presets[0].c2w)
    assert ctl.camera.lens == presets[0].lens
    ctl.press("[")
    ctl.press("[")  # wraps around to the last camera
    assert ctl.preset_index == 1
    ctl.snap_named("test:2")
    np.testing.assert_allclose(ctl.camera.c2w, presets[2].c2w)
    ctl.press("w")
    assert ctl.flying()
    before = ctl.camera.eye.copy()
    ctl.advance(0.5)
    ctl.release("w")
    assert not ctl.flying()
    moved = ctl.camera.eye - before
    np.testing.assert_allclose(moved / np.linalg.norm(moved), ctl.camera.forward, atol=1e-9)
    assert ctl.press("r")
    np.testing.assert_allclose(ctl.camera.c2w, home.c2w)
    with pytest.raises(KeyError):
        ctl.snap_named("test:9")


def test_controls_mouse():
    ctl = Controls(_cam())
    ctl.drag(50, 0, 500)  # orbit
    assert ctl.camera.eye[0] < 0
    ctl = Controls(_cam())
    ctl.drag(50, 0, 500, pan=True)  # the scene follows the mouse: the camera moves left
    assert ctl.camera.eye[0] < 0 and ctl.camera.forward == pytest.approx([0, 0, -1])
    ctl.scroll(2)
    assert ctl.camera.distance == pytest.approx(3.0 * 0.81)
    planar = Controls(_cam(), planar=True)
    planar.drag(0, 30, 300)  # 2D views pan with the left button: dragging down moves the camera up
    assert planar.camera.eye[1] > 0 and planar.camera.forward == pytest.approx([0, 0, -1])
