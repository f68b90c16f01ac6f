"""DTU / IDR / NeuS loader on tiny folders written here: the decomposition of P, projection, unit-sphere bounds,
masks, and one InputError per bad input."""

import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from conftest import run_main
from fieldfit.errors import InputError
from fieldfit.scenes import load_dtu, load_scene
from fieldfit.scenes.dtu import decompose, rq

W, H = 32, 24
K = np.array([[41.5, 0.0, 15.2], [0.0, 40.8, 11.9], [0.0, 0.0, 1.0]])
# unit sphere -> DTU world (mm): scale 180, centred away from the origin
SCALE = np.array([[180.0, 0, 0, -30.0], [0, 180.0, 0, 12.0], [0, 0, 180.0, 610.0], [0, 0, 0, 1.0]])


def ring_rt(i, n, radius=3.0):
    """(R, t) world -> OpenCV camera of a view on a ring around the origin (sphere coordinates), looking at it."""
    a = 2 * math.pi * i / n
    eye = np.array([radius * math.cos(a), 0.5, radius * math.sin(a)])
    z = -eye / np.linalg.norm(eye)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    r = np.stack([x, np.cross(z, x), z])
    return r, -r @ eye


def write_dtu(root, n=9, masks=True, scale=True, name="cameras.npz", extra=None):
    """A DTU folder whose normalised projection world_mat_i @ scale_mat_i is K [R_i | t_i]."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir(parents=True)
    mats = {}
    for i in range(n):
        r, t = ring_rt(i, n)
        p = np.eye(4)
        p[:3] = K @ np.concatenate([r, t[:, None]], 1)
        world = p @ np.linalg.inv(SCALE) if scale else p
        mats[f"world_mat_{i}"] = world * (-2.5 if i % 2 else 0.7)  # P is defined up to scale and sign
        mats[f"camera_mat_{i}"] = np.eye(4)
        if scale:
            mats[f"scale_mat_{i}"] = SCALE
        iio.imwrite(root / "image" / f"{i:06d}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        if masks:
            (root / "mask").mkdir(exist_ok=True)
            m = np.zeros((H, W, 3), np.uint8)
            m[4 + i % 3: 18, 6:25] = 255
            iio.imwrite(root / "mask" / f"{i:03d}.png", m)
    mats.update(extra or {})
    np.savez(root / name, **mats)
    return root


def test_rq_and_decompose_recover_k_r_t():
    gen = np.random.default_rng(1)
    for _ in range(20):
        r = Rotation.random(random_state=gen).as_matrix()
        t = gen.normal(size=3)
        k = np.array([[gen.uniform(50, 3000), gen.normal() * 0.01, gen.uniform(10, 800)],
                      [0, gen.uniform(50, 3000), gen.uniform(10, 600)], [0, 0, 1]])
        p = gen.choice([-1, 1]) * gen.uniform(0.01, 100) * k @ np.concatenate([r, t[:, None]], 1)
        k2, r2, t2 = decompose(p)
        np.testing.assert_allclose(k2, k, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(r2, r, atol=1e-9)
        np.testing.assert_allclose(t2, t, atol=1e-9)
        u, q = rq(p[:, :3])
        np.testing.assert_allclose(u @ q, p[:, :3], atol=1e-9 * np.abs(p).max())
        assert np.allclose(np.tril(u, -1), 0)
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)


def test_cameras_project_as_p_does(tmp_path):
    s = load_dtu(write_dtu(tmp_path / "scan1"))
    assert s.kind == "dtu"
    assert len(s.frames) == 9
    assert s.split("test") == [0, 8]
    gen = np.random.default_rng(2)
    x = gen.uniform(-0.6, 0.6, (50, 3))  # sphere coordinates
    for i, f in enumerate(s.frames):
        r, t = ring_rt(i, 9)
        cam = f.camera
        # the decomposition: K (pixel centres at integers in P, at +0.5 in fieldfit) and the pose
        assert (cam.fx, cam.fy) == (pytest.approx(K[0, 0]), pytest.approx(K[1, 1]))
        assert (cam.cx, cam.cy) == (pytest.approx(K[0, 2] + 0.5), pytest.approx(K[1, 2] + 0.5))
        np.testing.assert_allclose(cam.position, -r.T @ t, atol=1e-9)
        np.testing.assert_allclose(cam.c2w[:, :3], r.T @ np.diag([1.0, -1, -1]), atol=1e-9)
        # world -> pixel: what world_mat @ scale_mat gives (+0.5), and the depth in front
        ph = np.concatenate([x, np.ones((50, 1))], 1) @ (K @ np.concatenate([r, t[:, None]], 1)).T
        xy, depth = cam.project(torch.from_numpy(x))
        np.testing.assert_allclose(xy.numpy(), ph[:, :2] / ph[:, 2:] + 0.5, atol=1e-8)
        np.testing.assert_allclose(depth.numpy(), ph[:, 2], atol=1e-9)
        # in DTU's world (mm) through the file's own world_mat: the same pixels
        xw = np.concatenate([x, np.ones((50, 1))], 1) @ SCALE.T
        pw = xw @ np.load(tmp_path / "scan1" / "cameras.npz")[f"world_mat_{i}"][:3].T
        np.testing.assert_allclose(xy.numpy(), pw[:, :2] / pw[:, 2:] + 0.5, atol=1e-8)
    np.testing.assert_allclose(s.metadata["world_from_scene"], SCALE)


def test_unit_sphere_bounds_and_masks(tmp_path):
    s = load_dtu(write_dtu(tmp_path / "scan"))
    np.testing.assert_allclose(s.aabb, [[-1.05] * 3, [1.05] * 3])
    dist = np.array([np.linalg.norm(f.camera.position) for f in s.frames])
    np.testing.assert_allclose(s.metadata["frame_bounds"], np.stack([dist - 1, dist + 1], 1))
    assert (s.near, s.far) == (pytest.approx(dist.min() - 1), pytest.approx(dist.max() + 1))
    assert s.has_alpha
    raw = iio.imread(tmp_path / "scan" / "image" / "000004.png").astype(np.float32) / 255
    mask = iio.imread(tmp_path / "scan" / "mask" / "004.png")[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(s.alpha(4), mask)
    np.testing.assert_allclose(s.image(4), raw * mask[..., None], atol=1e-6)  # composited on black
    assert s.image(4)[0, 0].tolist() == [0.0, 0.0, 0.0]
    s2 = load_dtu(tmp_path / "scan", downscale=2)
    assert s2.image(4).shape == (H // 2, W // 2, 3)
    np.testing.assert_allclose(s2.alpha(4), mask.reshape(H // 2, 2, W // 2, 2).mean((1, 3)), atol=1e-6)
    assert s2.frames[0].camera.cx == pytest.approx((K[0, 2] + 0.5) / 2)


def test_layouts_and_detection(tmp_path):
    a = write_dtu(tmp_path / "neus", masks=False, name="cameras_sphere.npz")
    s = load_scene(a)
    assert s.kind == "dtu"
    assert not s.has_alpha
    assert s.alpha(0) is None
    assert load_scene(a / "cameras_sphere.npz").kind == "dtu"
    np.savez(a / "cameras.npz", world_mat_0=np.eye(4))  # cameras_sphere.npz wins
    assert load_scene(a).metadata["source"].endswith("cameras_sphere.npz")
    b = write_dtu(tmp_path / "raw", masks=False, scale=False)  # no scale_mat: the matrices' own world
    s = load_dtu(b)
    assert "camera frusta" in s.metadata["bounds_rule"]
    assert np.all((s.aabb[0] < 0) & (s.aabb[1] > 0))
    assert 0 < s.near < 2.0 < s.far


def test_bad_inputs_one_error_each(tmp_path):
    root = write_dtu(tmp_path / "nokey", extra={})
    z = dict(np.load(root / "cameras.npz"))
    del z["world_mat_0"]
    np.savez(root / "cameras.npz", **z)
    with pytest.raises(InputError, match=r"no world_mat_0; it holds: camera_mat_0, camera_mat_1, .*more\)"):
        load_dtu(root)
    res = run_main(root, "--steps", "1", cwd=tmp_path)
    assert res.returncode == 2
    assert "world_mat_0" in res.stderr
    assert "Traceback" not in res.stderr

    bad = np.eye(4)
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="world_mat_3 holds NaN or inf"):
        load_dtu(write_dtu(tmp_path / "nan", extra={"world_mat_3": bad}))
    sing = np.eye(4)
    sing[2, :3] = 0.0
    with pytest.raises(InputError, match=r"view 5: the projection matrix .* is singular"):
        load_dtu(write_dtu(tmp_path / "sing", extra={"world_mat_5": sing}))
    short = write_dtu(tmp_path / "short")
    z = dict(np.load(short / "cameras.npz"))
    del z["world_mat_8"]
    np.savez(short / "cameras.npz", **z)
    with pytest.raises(InputError, match="has no world_mat_8 for image 8"):
        load_dtu(short)
    (tmp_path / "short" / "mask" / "003.png").unlink()
    with pytest.raises(InputError, match="holds 8 masks for 9 images"):
        load_dtu(short)
    pick = write_dtu(tmp_path / "pickle", masks=False)
    np.savez(pick / "cameras.npz", world_mat_0=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="cannot read the camera file"):  # never unpickled
        load_dtu(pick)
    skew = write_dtu(tmp_path / "skew", masks=False)
    z = dict(np.load(skew / "cameras.npz"))
    z["world_mat_2"] = np.array([[1, 0.2, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]) @ z["world_mat_2"]
    np.savez(skew / "cameras.npz", **z)
    with pytest.raises(InputError, match="skew moves pixels"):
        load_dtu(skew)
