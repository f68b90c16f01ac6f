"""The built-in procedural radiance scene."""

import numpy as np

from fieldfit.scenes import load_blender, load_scene, make_builtin_radiance_scene


def test_writes_loads_and_is_not_empty(tmp_path):
    root = make_builtin_radiance_scene(tmp_path / "builtin", n_views=16, size=32)
    assert (root / "transforms_train.json").is_file()
    assert (root / "transforms_test.json").is_file()
    s = load_blender(root)
    assert s.kind == "builtin"
    assert len(s.frames) == 16
    assert s.has_alpha
    assert s.split("test") == [14, 15]
    assert len(s.split("train")) == 14
    for i in (0, 14):
        f = s.frames[i].camera
        assert (f.width, f.height) == (32, 32)
        img, a = s.image(i), s.alpha(i)
        assert 0.05 < a.mean() < 0.9  # object covers part of the view
        assert a[0, 0] == 0
        assert a[16, 16] == 1
        assert img[a == 1].std() > 0.05  # shaded, coloured, not flat
        # the origin projects to the principal point: cameras look at it (OpenGL convention)
        p = f.c2w[:, :3].T @ (np.zeros(3) - f.c2w[:, 3])
        assert p[2] < 0
        assert abs(f.fx * p[0] / -p[2]) < 1e-9
        assert abs(f.fy * p[1] / -p[2]) < 1e-9
    assert load_scene(root).kind == "builtin"


def test_deterministic(tmp_path):
    a = load_blender(make_builtin_radiance_scene(tmp_path / "a", n_views=2, size=8, seed=3))
    b = load_blender(make_builtin_radiance_scene(tmp_path / "b", n_views=2, size=8, seed=3))
    np.testing.assert_array_equal(a.image(1), b.image(1))
    np.testing.assert_array_equal(a.frames[1].camera.c2w, b.frames[1].camera.c2w)
