"""load_scene dispatch and bounds_from_frusta."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.scenes import Frame, bounds_from_frusta, load_scene


def _tiny_transforms(root, name):
    (root / "im").mkdir(parents=True)
    iio.imwrite(root / "im" / "a.png", np.zeros((4, 4, 3), np.uint8))
    frames = [{"file_path": "im/a.png", "transform_matrix": np.eye(4).tolist()}]
    (root / name).write_text(json.dumps({"camera_angle_x": 1.0, "frames": frames}))
    return root


def test_dispatch(tmp_path):
    assert load_scene(_tiny_transforms(tmp_path / "b", "transforms_train.json")).kind == "blender"
    s = load_scene(_tiny_transforms(tmp_path / "n", "transforms.json"))
    assert s.kind == "nerfstudio" and s.split("test") == [0] and s.split("train") == [0]
    assert load_scene(tmp_path / "n" / "transforms.json", downscale=2).frames[0].width == 2


def test_empty_or_missing(tmp_path):
    with pytest.raises(InputError, match=r"looked for transforms_train.json .*transforms.json .*poses_bounds.npy.*\(empty\)") as e:
        load_scene(tmp_path)
    assert e.value.path == str(tmp_path) and e.value.fix
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="folder contains: notes.txt"):
        load_scene(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        load_scene(tmp_path / "nope")
    with pytest.raises(InputError, match="not a scene file"):
        load_scene(tmp_path / "notes.txt")


def test_bounds_from_frusta_known_camera():
    f = Frame(path=None, width=4, height=2, fx=2.0, fy=2.0, cx=2.0, cy=1.0, c2w=np.eye(4)[:3])
    box = bounds_from_frusta([f], 1.0, 3.0)
    # at depth z the image spans x in [-z, z] (half-width 2 px / fx 2), y in [-z/2, z/2]
    np.testing.assert_allclose(box, [[-3, -1.5, -3], [3, 1.5, -1]])
    g = Frame(path=None, width=4, height=2, fx=2.0, fy=2.0, cx=2.0, cy=1.0,
              c2w=np.concatenate([np.eye(3), [[10.0], [0], [0]]], 1))
    np.testing.assert_allclose(bounds_from_frusta([f, g], 1.0, 3.0), [[-3, -1.5, -3], [13, 1.5, -1]])
