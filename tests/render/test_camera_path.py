"""nerfstudio camera paths (render/camera_path.py) and the depth / normal passes of videos (render/passes.py)."""

import json
import math

import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.render.camera import Camera, look_at
from fieldfit.render.camera_path import camera_path_json, load_camera_path
from fieldfit.render.passes import depth_frames, normals_from_points


def path_file(tmp_path, data) -> str:
    p = tmp_path / "path.json"
    p.write_text(json.dumps(data))
    return str(p)


def three_frames() -> dict:
    poses = [np.vstack([look_at([3 * math.cos(a), 3 * math.sin(a), 1], [0, 0, 0], [0, 0, 1]), [0, 0, 0, 1]])
             for a in (0.0, 0.5, 1.0)]
    return {"camera_type": "perspective", "render_width": 40, "render_height": 30, "fps": 12, "seconds": 0.25,
            "camera_path": [{"camera_to_world": p.reshape(-1).tolist(), "fov": 50.0, "aspect": 4 / 3}
                            for p in poses]}


def test_reads_poses_and_intrinsics_as_nerfstudio(tmp_path):
    data = three_frames()
    path = load_camera_path(path_file(tmp_path, data))
    assert len(path.cameras) == 3
    assert path.fps == 12
    cam = path.cameras[1]
    np.testing.assert_allclose(cam.c2w, np.asarray(data["camera_path"][1]["camera_to_world"]).reshape(4, 4)[:3])
    assert (cam.width, cam.height, cam.cx, cam.cy) == (40, 30, 20.0, 15.0)
    assert math.isclose(math.degrees(cam.fov_y), 50.0)
    assert cam.fx == cam.fy
    # flags override; without fps the frame rate is frames / seconds
    del data["fps"]
    again = load_camera_path(path_file(tmp_path, data), size=(64, 48))
    assert again.fps == 12
    assert (again.cameras[0].width, again.cameras[0].height) == (64, 48)
    assert math.isclose(math.degrees(again.cameras[0].fov_y), 50.0)
    assert load_camera_path(path_file(tmp_path, data), fps=5).fps == 5


def test_written_paths_read_back(tmp_path):
    cams = [Camera(look_at([0, 0, 3 + k], [0, 0, 0], [0, 1, 0]), 30.0, 30.0, 16.0, 12.0, 32, 24) for k in range(2)]
    back = load_camera_path(path_file(tmp_path, camera_path_json(cams, fps=10)))
    assert back.fps == 10
    for a, b in zip(cams, back.cameras, strict=True):
        np.testing.assert_allclose(a.c2w, b.c2w)
        assert math.isclose(a.fy, b.fy)
        assert (a.width, a.height) == (b.width, b.height)


@pytest.mark.parametrize(("edit", "key"), [
    (lambda d: d.pop("camera_path"), "'camera_path'"),
    (lambda d: d.update(camera_path=[]), "'camera_path'"),
    (lambda d: d.pop("render_width"), "'render_width'"),
    (lambda d: d.update(render_height=-3), "'render_height'"),
    (lambda d: d["camera_path"][2].pop("camera_to_world"), "'camera_path[2].camera_to_world'"),
    (lambda d: d["camera_path"][1]["camera_to_world"].pop(), "'camera_path[1].camera_to_world'"),
    (lambda d: d["camera_path"][0]["camera_to_world"].__setitem__(3, "x"), "'camera_path[0].camera_to_world'"),
    (lambda d: d["camera_path"][1].update(fov=0), "'camera_path[1].fov'"),
    (lambda d: d["camera_path"][1].pop("fov"), "'camera_path[1].fov'"),
    (lambda d: d.update(fps=0), "'fps'"),
    (lambda d: d.update(camera_type="fisheye"), "'camera_type'"),
])
def test_a_bad_file_names_the_key(tmp_path, edit, key):
    data = three_frames()
    edit(data)
    with pytest.raises(InputError) as e:
        load_camera_path(path_file(tmp_path, data))
    assert key in str(e.value)
    assert "\n" not in str(e.value)


def test_files_that_are_not_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_camera_path(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{camera_path: ")
    with pytest.raises(InputError, match="not JSON"):
        load_camera_path(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not an object"):
        load_camera_path(path_file(tmp_path, [1, 2]))


def test_depth_frames_share_one_range_per_video():
    near = np.full((4, 4), 1.0)
    far = np.full((4, 4), 3.0)
    far[0, 0] = np.nan
    frames, (lo, hi) = depth_frames([near, far])
    assert lo == pytest.approx(1.0, abs=0.05)
    assert hi == pytest.approx(3.0, abs=0.05)
    assert not np.array_equal(frames[0][1, 1], frames[1][1, 1])  # a per-frame range would colour both alike
    assert frames[1][0, 0].tolist() == [0, 0, 0]  # no surface: black
    alone, _ = depth_frames([far])
    assert np.array_equal(alone[0][1, 1], frames[0][1, 1])  # the near end of its own range


def test_normals_from_a_depth_map_of_a_plane_face_the_camera():
    ys, xs = np.mgrid[0:6, 0:7].astype(float)
    points = np.stack([xs, ys, 2.0 * xs + 0.5 * ys], -1)  # the plane z = 2x + y/2
    n = normals_from_points(points, eye=[0.0, 0.0, 100.0])
    inner = n[1:-1, 1:-1].reshape(-1, 3)
    expected = np.array([-2.0, -0.5, 1.0]) / np.linalg.norm([-2.0, -0.5, 1.0])
    np.testing.assert_allclose(inner, np.broadcast_to(expected, inner.shape), atol=1e-12)
    assert np.isnan(n[0]).all()
    assert np.isnan(n[:, -1]).all()
    flipped = normals_from_points(points, eye=[0.0, 0.0, -100.0])
    np.testing.assert_allclose(flipped[2, 2], -expected, atol=1e-12)
