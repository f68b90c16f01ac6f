"""The shared real captures (../shared/data); skipped in a clone without it."""

import math

import numpy as np
import pytest

from conftest import data_path
from fieldfit.scenes import load_scene

pytestmark = pytest.mark.data
need = data_path


def test_lego():
    s = load_scene(need("lego_400"))
    assert s.kind == "blender"
    assert len(s.split("train")) == 100
    assert len(s.split("test")) == 200
    assert len(s.split("val")) == 100
    f = s.frames[0].camera
    assert (f.width, f.height) == (400, 400)
    assert f.fx == pytest.approx(555.555, abs=0.01)
    img = s.image(s.split("test")[0])
    assert img.shape == (400, 400, 3)
    assert img[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert 0.05 < s.alpha(0).mean() < 0.8
    pos = s.c2w[:, :, 3]
    assert np.all((np.linalg.norm(pos, axis=1) > s.near) & (np.linalg.norm(pos, axis=1) < s.far))


def test_fern_images_8():
    s = load_scene(need("fern_llff"))
    assert s.kind == "llff"
    assert s.ndc
    assert len(s.frames) == 20
    assert s.split("test") == [0, 8, 16]
    f = s.frames[0].camera
    assert (f.width, f.height) == (504, 378)
    assert s.image(0).shape == (378, 504, 3)
    assert f.fx == pytest.approx(3260.52633 / 8)
    # forward-facing after recentring: every camera looks roughly along -z
    assert np.all(s.c2w[:, 2, 2] > 0.9)
    s16 = load_scene(need("fern_llff"), factor=16)
    assert (s16.frames[0].camera.width, s16.frames[0].camera.height) == (252, 189)


def test_fox():
    s = load_scene(need("fox_ingp"))
    assert s.kind == "nerfstudio"
    assert len(s.frames) == 67
    f = s.frames[0].camera
    assert (f.width, f.height) == (1080, 1920)  # portrait; matches the JPEG headers (checked at load)
    assert f.distortion is not None
    assert f.model == "OPENCV"
    assert f.distortion[0] == pytest.approx(0.0578421)
    assert f.distortion[5] == pytest.approx(0.00015575)
    assert s.split("test")[:3] == [0, 8, 16]
    assert len(s.split("test")) == math.ceil(67 / 8)
    assert np.all(s.aabb[0] < 0)
    assert np.all(s.aabb[1] > 0)
    s4 = load_scene(need("fox_ingp"), downscale=8)
    assert s4.image(3).shape == (240, 135, 3)
    assert s4.frames[3].camera.fx == pytest.approx(1375.52 / 8)
