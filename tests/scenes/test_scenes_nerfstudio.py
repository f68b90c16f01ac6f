"""nerfstudio / instant-ngp transforms.json loader on tiny scenes written here."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.scenes import load_nerfstudio, load_scene


def orbit_pose(i, n, radius=3.0):
    """OpenGL c2w on a circle in the xy plane, looking at the origin."""
    a = 2 * math.pi * i / n
    eye = np.array([radius * math.cos(a), radius * math.sin(a), 0.5])
    z = eye / np.linalg.norm(eye)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, eye
    return m


def write_ns(root, n=10, size=(8, 6), meta_extra=None, frame_extra=None, ext=".jpg"):
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 20 * i, np.uint8)
        iio.imwrite(root / "images" / f"{i:04d}{ext}", img)
        fr = {"file_path": f"images/{i:04d}{ext}", "transform_matrix": orbit_pose(i, n).tolist()}
        fr.update((frame_extra or {}).get(i, {}))
        frames.append(fr)
    meta = {"fl_x": 10.0, "fl_y": 11.0, "cx": 3.9, "cy": 3.1, "w": w, "h": h,
            "k1": 0.1, "k2": -0.02, "p1": 0.001, "p2": -0.002, "aabb_scale": 2, "frames": frames}
    meta.update(meta_extra or {})
    meta = {k: v for k, v in meta.items() if v is not None}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_ngp_intrinsics_distortion_splits_aabb(tmp_path):
    s = load_nerfstudio(write_ns(tmp_path / "ns"))
    assert s.kind == "nerfstudio"
    assert len(s.frames) == 10
    assert not s.has_alpha
    assert s.background is None
    f = s.frames[3].camera
    assert (f.width, f.height, f.fx, f.fy, f.cx, f.cy) == (8, 6, 10.0, 11.0, 3.9, 3.1)
    assert f.model == "OPENCV"
    np.testing.assert_allclose(f.distortion, [0.1, -0.02, 0.0, 0.0, 0.001, -0.002])
    np.testing.assert_allclose(f.c2w, orbit_pose(3, 10)[:3])
    assert s.split("test") == [0, 8]
    assert s.split("train") == [1, 2, 3, 4, 5, 6, 7, 9]
    half = 0.5 * 2 / 0.33  # ngp: unit cube at 0.5 scaled by aabb_scale, /scale back to json units
    np.testing.assert_allclose(s.aabb, [[-half] * 3, [half] * 3])
    assert 0 < s.near < 3.0 < s.far
    assert s.image(2).shape == (6, 8, 3)
    np.testing.assert_allclose(s.image(2), 40 / 255, atol=2 / 255)  # JPEG
    assert s.alpha(2) is None


def test_ngp_scale_offset_permutation(tmp_path):
    s = load_nerfstudio(write_ns(tmp_path / "ns",
                                 meta_extra={"scale": 0.5, "offset": [0.0, 0.5, 1.0], "aabb_scale": 1}))
    # ngp q = (y, z, x) * 0.5 + offset; box centre q = 0.5 -> y = 1, z = 0, x = -1
    np.testing.assert_allclose(s.aabb.mean(0), [-1.0, 1.0, 0.0])
    np.testing.assert_allclose(s.aabb[1] - s.aabb[0], [2.0, 2.0, 2.0])


def test_per_frame_intrinsics_angle_fallback_no_extension(tmp_path):
    root = write_ns(tmp_path / "ns", n=3, ext=".png", meta_extra={
        "fl_x": None, "fl_y": None, "cx": None, "cy": None, "w": None, "h": None,
        "k1": None, "k2": None, "p1": None, "p2": None, "aabb_scale": None, "camera_angle_x": 1.0},
        frame_extra={1: {"fl_x": 7.0, "fl_y": 8.0, "cx": 4.5, "cy": 2.5, "file_path": "images/0001"}})
    s = load_nerfstudio(root)
    f0, f1 = s.frames[0].camera, s.frames[1].camera
    assert f0.fx == pytest.approx(4 / math.tan(0.5))
    assert f0.fy == pytest.approx(f0.fx)
    assert (f0.cx, f0.cy, f0.distortion, f0.model) == (4.0, 3.0, None, "PINHOLE")
    assert (f1.fx, f1.fy, f1.cx, f1.cy) == (7.0, 8.0, 4.5, 2.5)
    assert s.frames[1].path.name == "0001.png"
    assert s.frames[1].name == "images/0001"
    # no aabb_scale: bounds from the frusta contain the look-at point and the cameras
    assert np.all(s.aabb[0] < -2.5)
    assert np.all(s.aabb[1][:2] > 2.5)
    assert s.metadata["bounds_rule"] == "camera frusta"


def test_fisheye_and_k3k4(tmp_path):
    s = load_nerfstudio(write_ns(tmp_path / "ns", n=2, meta_extra={
        "camera_model": "OPENCV_FISHEYE", "k1": 0.1, "k2": 0.2, "k3": 0.3, "k4": 0.4, "p1": None, "p2": None}))
    assert s.frames[0].camera.model == "OPENCV_FISHEYE"
    np.testing.assert_allclose(s.frames[0].camera.distortion, [0.1, 0.2, 0.3, 0.4, 0, 0])
    with pytest.raises(InputError, match="unsupported camera_model"):
        load_nerfstudio(write_ns(tmp_path / "ns2", n=2, meta_extra={"camera_model": "EQUIRECTANGULAR"}))


def test_named_splits_and_test_every(tmp_path):
    root = write_ns(tmp_path / "ns", n=5, meta_extra={
        "train_filenames": ["images/0000.jpg", "images/0002.jpg", "images/0003.jpg"],
        "test_filenames": ["images/0001.jpg", "images/0004.jpg"]})
    s = load_nerfstudio(root)
    assert s.splits == {"train": [0, 2, 3], "test": [1, 4]}
    s = load_nerfstudio(write_ns(tmp_path / "ns2", n=7), test_every=3)
    assert s.split("test") == [0, 3, 6]
    with pytest.raises(InputError, match="'test_filenames' lists 'images/9.jpg'"):
        load_nerfstudio(write_ns(tmp_path / "ns3", n=3, meta_extra={"test_filenames": ["images/9.jpg"]}))


def test_downscale_halves_intrinsics_keeps_distortion(tmp_path):
    s = load_nerfstudio(write_ns(tmp_path / "ns", n=2), downscale=2)
    f = s.frames[0].camera
    assert (f.width, f.height, f.fx, f.fy, f.cx, f.cy) == (4, 3, 5.0, 5.5, 1.95, 1.55)
    np.testing.assert_allclose(f.distortion, [0.1, -0.02, 0, 0, 0.001, -0.002])
    assert s.image(1).shape == (3, 4, 3)


def test_rgba_and_points(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    root = write_ns(tmp_path / "ns", n=2, ext=".png", meta_extra={"ply_file_path": "sparse.ply"})
    iio.imwrite(root / "images" / "0000.png", np.zeros((6, 8, 4), np.uint8))  # transparent
    pts = np.array([[0.0, 0, 0], [1, 2, 3], [-1, 0.5, 2]])
    cols = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]], np.uint8)
    trimesh.PointCloud(pts, colors=cols).export(root / "sparse.ply")
    s = load_nerfstudio(root)
    assert s.has_alpha
    assert s.background is not None
    np.testing.assert_allclose(s.image(0), 1.0)
    np.testing.assert_allclose(s.points, pts)
    np.testing.assert_allclose(s.point_colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1]])


@pytest.mark.parametrize(("frame_extra", "meta_extra", "pattern"), [
    ({1: {"file_path": "images/missing.jpg"}}, None, r"frame 1 \('images/missing.jpg'\): image file not found"),
    ({1: {"file_path": "../outside.jpg"}}, None, r"frame 1 .*outside the scene folder"),
    ({1: {"w": 9}}, None, r"frame 1 .*is 8x6 but the json declares 9x6"),
    (None, {"h": 7}, r"frame 0 .*is 8x6 but the json declares 8x7"),
    ({2: {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, float("nan"), 0], [0, 0, 0, 1]]}}, None,
     r"frame 2 .*NaN"),
    ({2: {"transform_matrix": [[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}}, None,
     r"frame 2 .*not a rotation"),
    ({0: {"fl_x": -3}}, None, r"frame 0 .*'fl_x' must be a finite positive"),
    (None, {"frames": []}, r"'frames' list is empty"),
])
def test_broken(tmp_path, frame_extra, meta_extra, pattern):
    root = write_ns(tmp_path / "ns", n=3, frame_extra=frame_extra, meta_extra=meta_extra)
    with pytest.raises(InputError, match=pattern) as e:
        load_nerfstudio(root)
    assert e.value.path == str(root / "transforms.json")


def test_malformed_json_and_load_scene(tmp_path):
    root = write_ns(tmp_path / "ns", n=2)
    assert load_scene(root).kind == "nerfstudio"
    (root / "transforms.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON") as e:
        load_scene(root)
    assert e.value.path == str(root / "transforms.json")
