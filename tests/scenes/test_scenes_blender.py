"""Blender loader on tiny scenes written here; broken-frame cases; Scene image cache/downscale."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.scenes import Scene, load_blender, load_scene

ANGLE = 0.8


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def pose(i):
    m = np.eye(4)
    m[:3, :3] = rot_z(0.3 * i)
    m[:3, 3] = [0.1 * i, -0.2, 4.0]
    return m


def rgba_image(w, h, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
    img[0, 0, 3] = 0  # one fully transparent pixel
    img[0, 1, 3] = 255
    return img


def write_blender(root, splits=(("train", 3), ("val", 1), ("test", 2)), size=(8, 6), ext=True):
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n in splits:
        (root / split).mkdir(exist_ok=True)
        frames = []
        for j in range(n):
            iio.imwrite(root / split / f"r_{j}.png", rgba_image(*size, seed=k))
            frames.append({"file_path": f"./{split}/r_{j}" + (".png" if ext and j == 0 else ""),
                           "transform_matrix": pose(k).tolist()})
            k += 1
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": ANGLE, "frames": frames}))
    return root


def test_intrinsics_splits_bounds(tmp_path):
    s = load_blender(write_blender(tmp_path / "sc"))
    assert isinstance(s, Scene)
    assert s.kind == "blender"
    assert len(s.frames) == 6
    assert s.splits == {"train": [0, 1, 2], "val": [3], "test": [4, 5]}
    assert s.split("test") == [4, 5]
    f = s.frames[0].camera
    assert (f.width, f.height) == (8, 6)
    assert f.fx == pytest.approx(0.5 * 8 / math.tan(ANGLE / 2))
    assert f.fy == pytest.approx(f.fx)
    assert (f.cx, f.cy) == (4.0, 3.0)
    assert f.distortion is None
    for i, fr in enumerate(s.cameras()):
        assert fr.c2w.shape == (3, 4)
        assert fr.c2w.dtype == np.float64
        np.testing.assert_allclose(fr.c2w, pose(i)[:3])
    assert s.frames[3].name == "val/r_0"
    np.testing.assert_array_equal(s.aabb, [[-1.5] * 3, [1.5] * 3])
    assert (s.near, s.far, s.ndc, s.has_alpha) == (2.0, 6.0, False, True)
    np.testing.assert_array_equal(s.background, [1, 1, 1])
    with pytest.raises(InputError, match="no 'nope' split"):
        s.split("nope")


def test_image_composited_on_white_and_alpha(tmp_path):
    s = load_blender(write_blender(tmp_path / "sc"))
    raw = rgba_image(8, 6, seed=0).astype(np.float32) / 255
    img, a = s.image(0), s.alpha(0)
    assert img.dtype == np.float32
    assert img.shape == (6, 8, 3)
    assert a.shape == (6, 8)
    want = raw[..., :3] * raw[..., 3:] + (1 - raw[..., 3:])
    np.testing.assert_allclose(img, want, atol=1e-6)
    np.testing.assert_allclose(img[0, 0], 1.0)  # transparent -> white
    np.testing.assert_allclose(a, raw[..., 3], atol=1e-7)
    img[:] = 0  # callers get a copy, the cache is not corrupted
    np.testing.assert_allclose(s.image(0), want, atol=1e-6)


def test_downscale_area_average_exact(tmp_path):
    root = write_blender(tmp_path / "sc", splits=(("train", 2), ("test", 1)), size=(9, 6))
    full, half = load_blender(root), load_blender(root, downscale=2)
    f1, f2 = full.frames[1].camera, half.frames[1].camera
    assert (f2.width, f2.height) == (4, 3)
    assert half.downscale == 2
    assert (f2.fx, f2.fy, f2.cx, f2.cy) == pytest.approx((f1.fx / 2, f1.fy / 2, f1.cx / 2, f1.cy / 2))
    big = full.image(1)[:6, :8]
    want = big.reshape(3, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(half.image(1), want, atol=1e-6)
    np.testing.assert_allclose(half.alpha(1), full.alpha(1)[:6, :8].reshape(3, 2, 4, 2).mean(axis=(1, 3)), atol=1e-6)


def test_lru_cache_budget(tmp_path):
    s = load_blender(write_blender(tmp_path / "sc"))
    s.cache_bytes = 1  # keeps only the newest image
    for i in range(len(s.frames)):
        s.image(i)
    assert len(s._cache) == 1


def test_load_scene_accepts_folder_or_json(tmp_path):
    root = write_blender(tmp_path / "sc")
    assert load_scene(root).kind == "blender"
    assert load_scene(root / "transforms_test.json").kind == "blender"


# ---------------------------------------------------------------- broken frames

def _edit_train(root, fn):
    js = root / "transforms_train.json"
    meta = json.loads(js.read_text())
    fn(meta)
    js.write_text(json.dumps(meta))
    return js


def _set_matrix(i, m):
    def f(meta):
        meta["frames"][i]["transform_matrix"] = m
    return f


def _bad_rot():
    m = pose(1)
    m[:3, :3] *= 1.5
    return m.tolist()


def _bad_last_row():
    m = pose(1)
    m[3] = [0, 0, 1, 1]
    return m.tolist()


def _reflection():
    m = pose(1)
    m[:3, 0] *= -1
    return m.tolist()


def _nan():
    m = pose(1)
    m[1, 2] = float("nan")
    return m.tolist()


@pytest.mark.parametrize(("mutate", "pattern"), [
    (lambda root: (root / "train" / "r_1.png").unlink(), r"frame 1 \('./train/r_1'\): image file not found"),
    (lambda root: iio.imwrite(root / "train" / "r_1.png", rgba_image(5, 6, 0)),
     r"frame 1 .*is 5x6 but the other frames are 8x6"),
    (lambda root: _edit_train(root, _set_matrix(1, _nan())), r"frame 1 .*NaN"),
    (lambda root: _edit_train(root, _set_matrix(1, _bad_rot())), r"frame 1 .*not a rotation"),
    (lambda root: _edit_train(root, _set_matrix(1, _reflection())), r"frame 1 .*not a rotation"),
    (lambda root: _edit_train(root, _set_matrix(1, _bad_last_row())), r"frame 1 .*last row"),
    (lambda root: _edit_train(root, _set_matrix(1, [[1, 0], [0, 1]])), r"frame 1 .*shape"),
    (lambda root: _edit_train(root, lambda m: m["frames"][1].update(file_path="../../etc/passwd")),
     r"frame 1 .*outside the scene folder"),
    (lambda root: _edit_train(root, lambda m: m["frames"][1].update(file_path="/etc/passwd")),
     r"frame 1 .*outside the scene folder"),
    (lambda root: _edit_train(root, lambda m: m["frames"][1].pop("transform_matrix")),
     r"frame 1 .*missing 'transform_matrix'"),
    (lambda root: _edit_train(root, lambda m: m.pop("frames")), r"no 'frames' list"),
    (lambda root: _edit_train(root, lambda m: m.pop("camera_angle_x")), r"frame 0 .*no focal length"),
    (lambda root: (root / "transforms_train.json").write_text('{"camera_angle_x": 0.8, "frames": [}'),
     r"malformed JSON"),
])
def test_broken_train_frame(tmp_path, mutate, pattern):
    root = write_blender(tmp_path / "sc")
    mutate(root)
    with pytest.raises(InputError, match=pattern) as e:
        load_blender(root)
    assert e.value.path == str(root / "transforms_train.json")
    assert e.value.fix


def test_broken_frame_in_test_json_names_that_json(tmp_path):
    root = write_blender(tmp_path / "sc")
    (root / "test" / "r_1.png").unlink()
    with pytest.raises(InputError, match=r"frame 5 \('./test/r_1'\)") as e:
        load_blender(root)
    assert e.value.path == str(root / "transforms_test.json")


def test_image_changed_after_load_is_caught_on_read(tmp_path):
    root = write_blender(tmp_path / "sc")
    s = load_blender(root)
    iio.imwrite(root / "test" / "r_0.png", rgba_image(4, 4, 0))
    with pytest.raises(InputError, match=r"frame 4 .*is 4x4 but the scene declares 8x6") as e:
        s.image(4)
    assert e.value.path == str(root / "transforms_test.json")


def test_not_a_blender_folder(tmp_path):
    with pytest.raises(InputError, match="no transforms_train.json"):
        load_blender(tmp_path)
    with pytest.raises(InputError, match="downscale must be a positive integer"):
        load_blender(write_blender(tmp_path / "sc"), downscale=0)
