"""load_scene dispatch."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.scenes import load_scene


def _tiny_transforms(root, name):
    (root / "im").mkdir(parents=True)
    iio.imwrite(root / "im" / "a.png", np.zeros((4, 4, 3), np.uint8))
    frames = [{"file_path": "im/a.png", "transform_matrix": np.eye(4).tolist()}]
    (root / name).write_text(json.dumps({"camera_angle_x": 1.0, "frames": frames}))
    return root


def test_dispatch(tmp_path):
    assert load_scene(_tiny_transforms(tmp_path / "b", "transforms_train.json")).kind == "blender"
    s = load_scene(_tiny_transforms(tmp_path / "n", "transforms.json"))
    assert s.kind == "nerfstudio"
    assert s.split("test") == [0]
    assert s.split("train") == [0]
    assert load_scene(tmp_path / "n" / "transforms.json", downscale=2).frames[0].camera.width == 2


def test_empty_or_missing(tmp_path):
    with pytest.raises(InputError, match=r"looked for transforms_train.json .*transforms.json "
                                         r".*poses_bounds.npy.*\(empty\)") as e:
        load_scene(tmp_path)
    assert e.value.path == str(tmp_path)
    assert e.value.fix
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="folder contains: notes.txt"):
        load_scene(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        load_scene(tmp_path / "nope")
    with pytest.raises(InputError, match="not a scene file"):
        load_scene(tmp_path / "notes.txt")
