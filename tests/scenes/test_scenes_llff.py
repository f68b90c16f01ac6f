"""LLFF poses_bounds.npy loader on tiny scenes written here."""

import math

import imageio.v3 as iio
import numpy as np
import pytest

from fieldfit.errors import InputError
from fieldfit.scenes import load_llff, load_scene

W, H, F = 8, 6, 40.0  # full-resolution hwf is (4H, 4W, F) -> images_4 are W x H


def gl_pose(i):
    """Forward-facing OpenGL c2w: small rotations about y, cameras spread in x, looking along -z."""
    a = 0.05 * (i - 4)
    r = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return r, np.array([0.2 * i, 0.1 * (i % 3), 1.0])


def llff_row(r_gl, t, near=2.0, far=10.0):
    m = np.concatenate([-r_gl[:, 1:2], r_gl[:, 0:1], r_gl[:, 2:3]], axis=1)  # [down, right, back]
    hwf = np.array([[4 * H], [4 * W], [F]])
    return np.concatenate([np.concatenate([m, t[:, None], hwf], axis=1).ravel(), [near, far]])


def write_llff(root, n=10, folders=("images_4",), rows=None):
    root.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else [llff_row(*gl_pose(i), near=2.0 + 0.1 * i) for i in range(n)]
    np.save(root / "poses_bounds.npy", np.stack(rows))
    for folder in folders:
        k = 1 if folder == "images" else int(folder.split("_")[1])
        (root / folder).mkdir(exist_ok=True)
        for i in range(n):
            img = np.random.default_rng(i).integers(0, 256, (4 * H // k, 4 * W // k, 3), dtype=np.uint8)
            iio.imwrite(root / folder / f"img{i:03d}.png", img)
    return root


def test_axis_swap_without_recentering(tmp_path):
    s = load_llff(write_llff(tmp_path / "ll"), recenter=False, bd_factor=None, ndc=False)
    for i, f in enumerate(s.cameras()):
        r, t = gl_pose(i)
        np.testing.assert_allclose(f.c2w[:, :3], r, atol=1e-12)  # right, up, back
        np.testing.assert_allclose(f.c2w[:, 3], t)
    f = s.frames[0].camera
    assert (f.width, f.height) == (W, H)
    assert (f.fx, f.fy, f.cx, f.cy) == pytest.approx((F / 4, F / 4, W / 2, H / 2))
    assert (s.near, s.far) == pytest.approx((0.9 * 2.0, 10.0))
    assert not s.ndc


def test_known_pose_is_right_up_back(tmp_path):
    # camera looking along world -y with up +z: back=(0,1,0), right = up x back = (-1,0,0);
    # LLFF columns [down, right, back] = [(0,0,-1), (-1,0,0), (0,1,0)]
    m = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0.0]])
    row = np.concatenate([np.concatenate([m, [[1.0], [2.0], [3.0]], [[4 * H], [4 * W], [F]]], 1).ravel(), [1.0, 5.0]])
    s = load_llff(write_llff(tmp_path / "ll", n=1, rows=[row]), recenter=False, bd_factor=None)
    np.testing.assert_allclose(s.frames[0].camera.c2w, [[-1, 0, 0, 1], [0, 0, 1, 2], [0, 1, 0, 3]])  # right, up, back


def test_recenter_rescale_ndc(tmp_path):
    s = load_llff(write_llff(tmp_path / "ll"))
    assert s.kind == "llff"
    assert s.ndc
    assert (s.near, s.far) == (0.0, 1.0)
    _box_holds_every_ray(s)
    assert s.metadata["bounds"].min() == pytest.approx(1 / 0.75)
    sc = s.metadata["scale"]
    assert sc == pytest.approx(1 / (2.0 * 0.75))
    m = s.metadata["world_from_input"]
    for i, f in enumerate(s.cameras()):
        r, t = gl_pose(i)
        np.testing.assert_allclose(f.c2w[:, :3], m[:3, :3] / sc @ r, atol=1e-12)  # M = rotation * sc
        np.testing.assert_allclose(f.c2w[:, 3], m[:3, :3] @ t + m[:3, 3], atol=1e-12)
        np.testing.assert_allclose(f.c2w[:, :3].T @ f.c2w[:, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(s.c2w[:, :, 3].mean(0), 0, atol=1e-12)  # centred on the mean pose
    p = s.ndc_params
    assert (p.fx, p.width, p.height, p.near_plane) == (F / 4, W, H, 1.0)
    w_aabb = s.metadata["world_aabb"]
    assert np.all(w_aabb[0] < w_aabb[1])
    assert w_aabb[0, 2] < -5


def test_every_8th_is_test(tmp_path):
    s = load_llff(write_llff(tmp_path / "ll", n=17))
    assert s.split("test") == [0, 8, 16]
    assert len(s.split("train")) == 14
    assert load_llff(write_llff(tmp_path / "l2", n=5), test_every=2).split("test") == [0, 2, 4]


def test_folder_choice_and_downscale(tmp_path):
    root = write_llff(tmp_path / "ll", n=3, folders=("images", "images_4"))
    s = load_llff(root)  # default: full-res images/
    assert (s.frames[0].camera.width, s.frames[0].camera.fx) == (4 * W, F)
    assert s.downscale == 1
    s4 = load_llff(root, factor=4)
    assert s4.metadata["image_folder"].endswith("images_4")
    assert s4.downscale == 1
    s2 = load_llff(root, factor=2)  # no images_2/: area-downscale images/ by 2
    f = s2.frames[1].camera
    assert s2.downscale == 2
    assert (f.width, f.height, f.fx, f.cx) == (2 * W, 2 * H, F / 2, W)
    full = iio.imread(root / "images" / "img001.png").astype(np.float32) / 255
    want = full.reshape(2 * H, 2, 2 * W, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(s2.image(1), want, atol=1e-6)
    s8 = load_llff(root, factor=4, downscale=2)
    assert (s8.frames[0].camera.width, s8.frames[0].camera.fx) == (W // 2, F / 8)
    assert load_llff(write_llff(tmp_path / "l3", n=2, folders=("images_4", "images_8"))).frames[0].camera.width == W


def test_missing_factor_folder_lists_what_exists(tmp_path):
    root = write_llff(tmp_path / "ll", n=2, folders=("images_4",))
    with pytest.raises(InputError, match=r"no images_2/ and no full-resolution images/.*found: images_4/"):
        load_llff(root, factor=2)


def test_broken(tmp_path):
    rows = [llff_row(*gl_pose(i)) for i in range(3)]
    rows[1][3] = np.nan  # x of the camera position
    root = write_llff(tmp_path / "a", n=3, rows=rows)
    with pytest.raises(InputError, match=r"frame 1 \('img001.png'\): .*NaN") as e:
        load_llff(root)
    assert e.value.path == str(root / "poses_bounds.npy")

    rows = [llff_row(*gl_pose(i)) for i in range(3)]
    rows[2][:3] *= 2.0  # first row of R scaled: not a rotation
    with pytest.raises(InputError, match=r"frame 2 .*not a rotation"):
        load_llff(write_llff(tmp_path / "b", n=3, rows=rows))

    root = write_llff(tmp_path / "c", n=3)
    (root / "images_4" / "img002.png").unlink()
    with pytest.raises(InputError, match=r"3 poses but 2 images"):
        load_llff(root)

    root = write_llff(tmp_path / "d", n=3)
    iio.imwrite(root / "images_4" / "img001.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(InputError, match=r"frame 1 \('img001.png'\): image is 5x5"):
        load_llff(root)

    root = write_llff(tmp_path / "e", n=3)
    np.save(root / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(InputError, match=r"expected an N x 17 array"):
        load_scene(root)

    root = write_llff(tmp_path / "f", n=3)
    (root / "poses_bounds.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"cannot read"):
        load_scene(root)


def _box_holds_every_ray(s):
    """The NDC box: z in [-1, 1]; x, y hold the rays through every pixel corner from z = -1 to 1,
    and no more than the 1% margin beyond the widest ray."""
    import torch

    from fieldfit.tasks.radiance import camera_rays

    lo, hi = s.aabb
    assert (lo[2], hi[2]) == (-1.0, 1.0)
    assert np.all(lo[:2] <= -1)
    assert np.all(hi[:2] >= 1)
    pts = []
    for f in s.cameras():
        u, v = np.meshgrid(np.arange(f.width + 1.0), np.arange(f.height + 1.0))
        xy = torch.from_numpy(np.stack([u.ravel(), v.ravel()], 1))
        o, d = (t.double().numpy() for t in camera_rays(s, f, xy))
        for z in (-1.0, 1.0):
            pts.append((o + ((z - o[:, 2]) / d[:, 2])[:, None] * d)[:, :2])
    pts = np.concatenate(pts)
    assert np.all(pts >= lo[:2] - 1e-6)
    assert np.all(pts <= hi[:2] + 1e-6)
    span = hi[:2] - lo[:2]
    tight_lo = np.minimum(pts.min(0), -1) - lo[:2]
    tight_hi = hi[:2] - np.maximum(pts.max(0), 1)
    assert np.all(tight_lo <= 0.011 * span)
    assert np.all(tight_hi <= 0.011 * span)
