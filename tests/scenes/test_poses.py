"""``fieldfit poses``: structure-from-motion on a synthetic capture with known cameras.

The capture: a ground slab and three boxes coloured by a solid value-noise texture (a function of the 3D point, so
every view sees the same surface colours), ray-cast from 12 cameras on a 90-degree arc (240x180, fx = fy = 200).
SfM fixes no scale, origin or orientation, so its cameras are compared after a similarity fitted on the centres.
"""

import hashlib
import sys

import numpy as np
import pytest
import torch

from conftest import run_main
from fieldfit.render.camera import Camera, look_at, look_at_centre, mean_up
from fieldfit.sfm import compare_poses, umeyama
from fieldfit.sfm.align import CAMERA_DISTANCE, canonical_frame, rotation_between, transform_poses, up_direction

pycolmap = pytest.importorskip("pycolmap", reason="fieldfit poses needs pycolmap (pip install 'fieldfit[sfm]')")

W, H, F = 240, 180, 200.0
VIEWS = 12
BOXES = [((-2.0, -2.0, -0.2), (2.0, 2.0, 0.0)), ((-0.8, -0.6, 0.0), (0.2, 0.4, 0.9)),
         ((0.4, -0.2, 0.0), (1.0, 0.6, 0.5)), ((-0.4, 0.7, 0.0), (0.1, 1.2, 0.6))]


def _noise(p: np.ndarray, grids) -> np.ndarray:
    """[N,3] colours: octaves of trilinearly interpolated random grids at points p [N,3]."""
    out = np.zeros((len(p), 3))
    for scale, amp, grid in grids:
        g = grid.shape[0]
        q = (p * scale) % (g - 1)
        i = np.minimum(np.floor(q).astype(int), g - 2)
        f = q - i
        for corner in np.ndindex(2, 2, 2):
            w = np.prod([f[:, k] if c else 1.0 - f[:, k] for k, c in enumerate(corner)], axis=0)
            out += amp * w[:, None] * grid[i[:, 0] + corner[0], i[:, 1] + corner[1], i[:, 2] + corner[2]]
    return out


def _render(cam: Camera, grids) -> np.ndarray:
    """uint8 [H,W,3]: the first box each pixel's ray hits (slab test), textured; grey where none is hit."""
    o, d = (t.numpy() for t in cam.rays(dtype=torch.float64))
    t_hit = np.full(len(o), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo, hi in BOXES:
            t0, t1 = (np.array(lo) - o) / d, (np.array(hi) - o) / d
            near, far = np.minimum(t0, t1).max(axis=1), np.maximum(t0, t1).min(axis=1)
            hit = (near <= far) & (near > 1e-6) & (near < t_hit)
            t_hit = np.where(hit, near, t_hit)
    found = np.isfinite(t_hit)
    col = _noise(o + d * np.where(found, t_hit, 0.0)[:, None], grids)
    col = 0.5 + 0.22 * (col - col[found].mean()) / col[found].std()
    col[~found] = 0.8
    return (np.clip(col, 0.0, 1.0).reshape(cam.height, cam.width, 3) * 255).astype(np.uint8)


def synthetic_capture(n: int = VIEWS, seed: int = 0):
    """(images uint8 [n,H,W,3], OpenGL camera-to-world [n,3,4]) of the textured boxes from an arc of cameras."""
    rng = np.random.default_rng(seed)
    grids = [(s, a, rng.normal(size=(40, 40, 40, 3))) for s, a in ((6, 1.0), (12, 0.7), (24, 0.5))]
    imgs, poses = [], []
    for k in range(n):
        az, el = np.deg2rad(-45 + 90 * k / (n - 1)), np.deg2rad(35)
        eye = 3.5 * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cam = Camera(look_at(eye, [0, 0, 0.3], [0, 0, 1]), F, F, W / 2, H / 2, W, H)
        imgs.append(_render(cam, grids))
        poses.append(cam.c2w)
    return np.stack(imgs), np.stack(poses)


def _write_photos(folder, imgs):
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(imgs):
        iio.imwrite(folder / f"view_{k:02d}.png", img)
    (folder / "notes.txt").write_text("not a photo: ignored")


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _sparse_c2w(image) -> np.ndarray:
    """OpenGL camera-to-world [3,4] of a pycolmap image, computed here independently of fieldfit.sfm.export."""
    w2c = np.eye(4)
    w2c[:3] = image.cam_from_world().matrix()
    c2w = np.linalg.inv(w2c)[:3]
    return c2w * np.array([1.0, -1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def capture():
    return synthetic_capture()


@pytest.fixture(scope="module")
def photo_scene(capture, tmp_path_factory):
    """`fieldfit poses` on the 12 photos: (the photos folder, its digest before, the scene, the CompletedProcess)."""
    root = tmp_path_factory.mktemp("poses")
    _write_photos(root / "photos", capture[0])
    before = _digest(root / "photos")
    (root / "scene").mkdir()  # an empty --out is taken (and replaced whole at the end)
    res = run_main("poses", root / "photos", "--out", root / "scene", "--threads", "1")
    return root / "photos", before, root / "scene", res


@pytest.mark.slow
def test_poses_recovers_the_cameras(capture, photo_scene):
    photos, before, scene, res = photo_scene
    assert res.returncode == 0, res.stderr
    assert "fieldfit " + str(scene) + " --method rbf" in res.stdout
    stages = [line.split(":")[0] for line in res.stdout.splitlines()]
    assert stages[:4] == ["images", "features", "matching (exhaustive)", "mapping"]
    rec = pycolmap.Reconstruction(scene / "sparse" / "0")
    est = {im.name: _sparse_c2w(im) for im in rec.images.values() if im.has_pose}
    assert len(est) >= VIEWS - 1, sorted(est)
    ref = {f"view_{k:02d}.png": c2w for k, c2w in enumerate(capture[1])}
    cmp = compare_poses(est, ref)
    assert cmp["rotation_deg"].max() < 2.0, cmp["rotation_deg"]
    assert cmp["position"].max() < 0.03, cmp["position"]  # in units of the cameras' spread about their centre
    r = cmp["similarity"][1]  # the scene is written upright: the truth's +z (up) is the scene's +z
    assert np.degrees(np.arccos(np.clip(r[2, 2], -1.0, 1.0))) < 1.0, r
    poses = np.stack(list(est.values()))
    assert np.linalg.norm(look_at_centre(list(poses))) < 0.02 * CAMERA_DISTANCE  # centred on what they look at
    assert np.median(np.linalg.norm(poses[:, :, 3], axis=1)) == pytest.approx(CAMERA_DISTANCE, rel=0.02)
    assert "frame: z up" in res.stdout
    assert _digest(photos) == before  # the user's files are only read
    assert sorted(p.name for p in (scene / "images").iterdir()) == [f"view_{k:02d}.png" for k in range(VIEWS)]
    assert not (scene / "database.db").exists()
    assert not [p for p in scene.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_poses_scene_loads_with_the_sparse_cameras(photo_scene):
    from fieldfit.scenes import load_scene

    _, _, scene, res = photo_scene
    assert res.returncode == 0, res.stderr
    loaded = load_scene(scene)
    rec = pycolmap.Reconstruction(scene / "sparse" / "0")
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    assert sorted(f.path.name for f in loaded.frames) == sorted(by_name)
    cam = next(iter(rec.cameras.values()))  # one shared SIMPLE_RADIAL camera: f, cx, cy, k
    assert len(rec.cameras) == 1
    assert cam.model_name == "SIMPLE_RADIAL"
    f, cx, cy, k = cam.params
    for frame in loaded.frames:
        c = frame.camera
        np.testing.assert_allclose(c.c2w, _sparse_c2w(by_name[frame.path.name]), atol=1e-9)
        assert (c.fx, c.fy, c.cx, c.cy, c.width, c.height) == pytest.approx((f, f, cx, cy, W, H))
        assert c.distortion is None if k == 0 else c.distortion[0] == pytest.approx(k)
    assert abs(f - F) < 0.05 * F  # COLMAP's focal length, estimated from the images alone
    pts = np.stack([p.xyz for p in rec.points3D.values()])
    assert loaded.points.shape == pts.shape
    assert loaded.point_colors.shape == pts.shape
    np.testing.assert_allclose(np.sort(loaded.points, axis=0), np.sort(pts, axis=0), atol=1e-5 * np.abs(pts).max())


@pytest.mark.slow
def test_poses_downscaled_finds_features_at_full_size_and_shrinks_the_model(capture, tmp_path):
    from fieldfit.scenes import load_scene

    _write_photos(tmp_path / "photos", capture[0])
    scene = tmp_path / "scene"
    res = run_main("poses", tmp_path / "photos", "--out", scene, "--threads", "1", "--downscale", "2")
    assert res.returncode == 0, res.stderr
    assert "on the full-size photos" in res.stdout
    assert sorted(p.name for p in scene.iterdir() if p.name.startswith(".")) == []
    rec = pycolmap.Reconstruction(scene / "sparse" / "0")
    cam = next(iter(rec.cameras.values()))
    assert (cam.width, cam.height) == (W // 2, H // 2)
    assert abs(cam.params[0] - F / 2) < 0.05 * F / 2
    errors = []  # every observation against its point projected by the written (shrunk) model
    for im in rec.images.values():
        for p in im.points2D:
            if p.has_point3D():
                errors.append(np.linalg.norm(im.project_point(rec.points3D[p.point3D_id].xyz) - p.xy))
    assert len(errors) > 100
    assert np.median(errors) < 0.5  # pixels of the small images; unshrunk 2-D points would be off by ~W/4
    est = {im.name: _sparse_c2w(im) for im in rec.images.values() if im.has_pose}
    assert len(est) >= VIEWS - 1, sorted(est)
    cmp = compare_poses(est, {f"view_{k:02d}.png": c2w for k, c2w in enumerate(capture[1])})
    assert cmp["rotation_deg"].max() < 2.0, cmp["rotation_deg"]
    frames = load_scene(scene).frames
    assert {(f.camera.width, f.camera.height) for f in frames} == {(W // 2, H // 2)}


@pytest.fixture(scope="module")
def blur_video(capture, tmp_path_factory):
    """(an .mp4 of 6 views 15 degrees apart, each sharp frame between two blurred copies of itself, views)."""
    import imageio.v3 as iio

    pytest.importorskip("imageio_ffmpeg", reason="reading videos needs imageio-ffmpeg")
    from scipy.ndimage import uniform_filter

    imgs = capture[0][::2]
    blurred = [uniform_filter(im.astype(np.float32), size=(5, 5, 1)).astype(np.uint8) for im in imgs]
    frames = [f for im, b in zip(imgs, blurred, strict=True) for f in (b, im, b)]
    video = tmp_path_factory.mktemp("video") / "orbit.mp4"
    iio.imwrite(video, np.stack(frames), fps=10, codec="libx264", quality=10, macro_block_size=1, plugin="FFMPEG")
    return video, len(imgs)


@pytest.mark.slow
def test_poses_video_keeps_the_sharp_frames(blur_video, tmp_path):
    video, n = blur_video
    res = run_main("poses", video, "--out", tmp_path / "scene", "--frames", str(n), "--threads", "1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"frames: {3 * n} decoded, {n} kept")
    assert "matching (sequential)" in res.stdout
    kept = sorted(p.name for p in (tmp_path / "scene" / "images").iterdir())
    assert kept == [f"frame_{3 * k + 1:06d}.jpg" for k in range(n)]
    rec = pycolmap.Reconstruction(tmp_path / "scene" / "sparse" / "0")
    assert rec.num_reg_images() == n


def test_video_every_k_keeps_the_sharpest_of_each_k(blur_video, tmp_path):
    from fieldfit.sfm.images import video_frames

    video, n = blur_video
    got = video_frames(video, tmp_path, frames=None, every=3, downscale=2)
    assert (got.decoded, got.window) == (3 * n, 3.0)
    assert got.names == [f"frame_{3 * k + 1:06d}.jpg" for k in range(n)]
    assert set(got.sizes.values()) == {(W // 2, H // 2)}


def test_poses_noise_fails_naming_the_images(tmp_path, capfd):
    """Independent random blocks: SIFT finds features, no pair of images shares a geometry."""
    import imageio.v3 as iio

    rng = np.random.default_rng(1)
    (tmp_path / "noise").mkdir()
    for k in range(4):
        blocks = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
        iio.imwrite(tmp_path / "noise" / f"n{k}.png", blocks.repeat(4, axis=0).repeat(4, axis=1))
    res = run_main("poses", tmp_path / "noise", "--out", tmp_path / "scene", "--threads", "1")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "structure-from-motion failed" in lines[0]
    assert all(f"n{k}.png" in lines[0] for k in range(4))
    assert "--matcher" not in lines[0]  # exhaustive already: not suggested
    assert capfd.readouterr().err == ""  # COLMAP's own log (written by C++ to fd 2) is silenced
    assert not (tmp_path / "scene").exists()
    assert not list(tmp_path.glob(".scene.tmp-*"))


@pytest.mark.slow
def test_poses_under_half_registered_warns_and_writes(capture, tmp_path):
    """6 views of the boxes and 7 unrelated noise images: the 6 register, the scene is written with a warning."""
    import imageio.v3 as iio

    rng = np.random.default_rng(4)
    (tmp_path / "mixed").mkdir()
    for k, img in enumerate(capture[0][::2]):
        iio.imwrite(tmp_path / "mixed" / f"a_view{k}.png", img)
    for k in range(7):
        blocks = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)
        iio.imwrite(tmp_path / "mixed" / f"b_noise{k}.png", blocks.repeat(4, axis=0).repeat(4, axis=1))
    res = run_main("poses", tmp_path / "mixed", "--out", tmp_path / "scene", "--threads", "1")
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stdout.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, res.stdout
    assert all(f"b_noise{k}.png" in warning[0] for k in range(7))
    assert "a_view" not in warning[0]
    assert "mapping: 6/13 images registered" in res.stdout
    from fieldfit.scenes import load_scene

    assert sorted(f.path.name for f in load_scene(tmp_path / "scene").frames) == [f"a_view{k}.png" for k in range(6)]


def test_poses_two_photos_fail_naming_them(capture, tmp_path):
    import imageio.v3 as iio

    (tmp_path / "two").mkdir()
    for k in range(2):
        iio.imwrite(tmp_path / "two" / f"p{k}.jpg", capture[0][k])
    res = run_main("poses", tmp_path / "two", "--out", tmp_path / "scene")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line
    assert "p0.jpg" in line
    assert "p1.jpg" in line
    assert "at least 3" in line
    assert not (tmp_path / "scene").exists()


def test_poses_refuses_a_non_empty_out(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "keep.txt").write_text("mine")
    res = run_main("poses", tmp_path / "photos", "--out", tmp_path / "scene")
    assert res.returncode == 2
    assert "is not empty" in res.stderr
    assert "\n" not in res.stderr.strip()
    assert (tmp_path / "scene" / "keep.txt").read_text() == "mine"


def test_poses_undecodable_photo_is_named(capture, tmp_path):
    import imageio.v3 as iio

    (tmp_path / "photos").mkdir()
    for k in range(3):
        iio.imwrite(tmp_path / "photos" / f"p{k}.png", capture[0][k])
    (tmp_path / "photos" / "p3.jpg").write_bytes(b"not a jpeg at all")
    res = run_main("poses", tmp_path / "photos", "--out", tmp_path / "scene")
    assert res.returncode == 2
    assert "p3.jpg" in res.stderr
    assert "\n" not in res.stderr.strip()


def test_poses_undecodable_video_is_named(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="reading videos needs imageio-ffmpeg")
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00" * 1000)
    res = run_main("poses", video, "--out", tmp_path / "scene")
    assert res.returncode == 2
    assert "broken.mp4" in res.stderr
    assert "\n" not in res.stderr.strip()


def test_poses_without_pycolmap_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap now raises ImportError
    res = run_main("poses", tmp_path, "--out", tmp_path / "scene")
    assert res.returncode == 2
    assert 'pip install "fieldfit[sfm]"' in res.stderr
    assert "\n" not in res.stderr.strip()


def test_poses_help_lists_the_options():
    with pytest.raises(SystemExit) as e:
        run_main("poses", "-h")
    assert e.value.code == 0


def test_downscale_averages_blocks_and_keeps_the_originals(tmp_path):
    import imageio.v3 as iio

    from fieldfit.sfm.images import copy_photos, list_photos

    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    iio.imwrite(tmp_path / "in" / "a.PNG", img)
    iio.imwrite(tmp_path / "in" / "b.png", img[::-1])
    (tmp_path / "in" / ".hidden.png").write_bytes(b"")
    photos = list_photos(tmp_path / "in")
    assert [p.name for p in photos] == ["a.PNG", "b.png"]
    got = copy_photos(photos, tmp_path / "out", 2)
    assert got.sizes == {"a.PNG": (6, 4), "b.png": (6, 4)}
    small = iio.imread(tmp_path / "out" / "a.PNG")
    want = img[:8, :12].astype(np.float64).reshape(4, 2, 6, 2, 3).mean(axis=(1, 3))
    assert np.abs(small.astype(np.float64) - want).max() <= 0.5
    assert np.array_equal(iio.imread(tmp_path / "in" / "a.PNG"), img)


def test_sharpness_ranks_blur_lower(capture):
    from scipy.ndimage import uniform_filter

    from fieldfit.sfm.images import sharpness

    img = capture[0][0]
    blurred = uniform_filter(img.astype(np.float32), size=(3, 3, 1))
    assert sharpness(img) > 2 * sharpness(blurred) > 0


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(8, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    r = q * np.sign(np.linalg.det(q))  # a rotation, not a reflection
    dst = 2.5 * src @ r.T + np.array([1.0, -2.0, 0.5])
    s, r_fit, t = umeyama(src, dst)
    assert s == pytest.approx(2.5)
    assert np.allclose(r_fit, r)
    assert np.allclose(t, [1.0, -2.0, 0.5])
    poses_src = {str(i): np.hstack([np.eye(3), src[i:i + 1].T]) for i in range(8)}
    poses_dst = {str(i): np.hstack([r, dst[i:i + 1].T]) for i in range(8)}
    cmp = compare_poses(poses_src, poses_dst)
    assert cmp["rotation_deg"].max() < 1e-4
    assert cmp["position"].max() < 1e-9


def test_up_is_where_the_level_cameras_right_axes_are_not():
    # a 90-degree arc of level cameras looking about 35 degrees down: their mean up leans ~30 degrees toward what
    # they look at; their right axes are horizontal whatever the tilt, so the up found is the true one
    arc = np.stack(
        [look_at(3.5 * np.array([np.cos(a) * np.cos(0.6), np.sin(a) * np.cos(0.6), np.sin(0.6)]), [0, 0, 0.3],
                 [0, 0, 1]) for a in np.linspace(-np.pi / 4, np.pi / 4, 6)])
    assert np.degrees(np.arccos(mean_up(list(arc))[2])) > 20
    np.testing.assert_allclose(up_direction(arc), [0, 0, 1], atol=1e-9)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))  # an SfM-like frame: turned, shifted, scaled
    turned = transform_poses(arc, 0.3, q * np.sign(np.linalg.det(q)), np.array([5.0, -1.0, 2.0]))
    s, r, t = canonical_frame(turned)
    upright = transform_poses(turned, s, r, t)
    np.testing.assert_allclose(up_direction(upright), [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(look_at_centre(list(upright)), 0.0, atol=1e-9)
    dist = np.linalg.norm(upright[:, :, 3], axis=1)
    assert np.median(dist) == pytest.approx(CAMERA_DISTANCE)
    before = np.linalg.norm(arc[:, :, 3] - look_at_centre(list(arc)), axis=1)
    np.testing.assert_allclose(dist / np.median(dist), before / np.median(before), rtol=1e-9)  # shape kept
    for b in upright:  # each camera's axes turned alike: orthonormal, level (its right axis horizontal)
        np.testing.assert_allclose(b[:, :3].T @ b[:, :3], np.eye(3), atol=1e-9)
        assert abs(b[2, 0]) < 1e-9


def test_cameras_facing_one_way_keep_their_mean_up():
    # forward-facing: every right axis the same, so up is only known up to the viewing axis; the mean up decides
    base = look_at([0, -4.0, 1.0], [0, 0, 0], [0, 0, 1])
    poses = np.stack([base + np.hstack([np.zeros((3, 3)), [[dx], [0.0], [dz]]]) for dx in (-0.5, 0, 0.5)
                      for dz in (-0.2, 0.2)])
    np.testing.assert_allclose(up_direction(poses), mean_up(list(poses)), atol=1e-9)


def test_rotation_between_takes_one_direction_to_another():
    rng = np.random.default_rng(0)
    for a in [*rng.normal(size=(5, 3)), np.array([0, 0, -1.0]), np.array([0, 0, 1.0])]:
        a = a / np.linalg.norm(a)
        r = rotation_between(a, np.array([0.0, 0.0, 1.0]))
        np.testing.assert_allclose(r @ a, [0, 0, 1], atol=1e-12)
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_intrinsics_map_colmap_models_to_transforms_keys():
    from fieldfit.sfm.export import intrinsics

    def cam(model, params):
        return pycolmap.Camera(camera_id=1, model=model, width=64, height=48, params=params)

    simple = intrinsics(cam("SIMPLE_RADIAL", [50.0, 31.0, 23.5, -0.1]))
    assert simple == {"w": 64, "h": 48, "fl_x": 50.0, "fl_y": 50.0, "cx": 31.0, "cy": 23.5, "camera_model": "OPENCV",
                      "k1": -0.1}
    pinhole = intrinsics(cam("PINHOLE", [50.0, 51.0, 32.0, 24.0]))
    assert pinhole["camera_model"] == "PINHOLE"
    assert (pinhole["fl_x"], pinhole["fl_y"]) == (50.0, 51.0)
    opencv = intrinsics(cam("OPENCV", [50.0, 51.0, 32.0, 24.0, 0.1, -0.2, 0.001, 0.002]))
    assert {k: opencv[k] for k in ("k1", "k2", "p1", "p2")} == {"k1": 0.1, "k2": -0.2, "p1": 0.001, "p2": 0.002}


def test_exif_rotated_photo_is_written_upright(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6: the copy is turned upright, its tag reset to 1."""
    from PIL import Image

    from fieldfit.sfm.images import EXIF_ORIENTATION, copy_photos

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # the left half of the stored pixels is white
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown rotated 90 degrees clockwise: the white half on top
    (tmp_path / "in").mkdir()
    Image.fromarray(stored).save(tmp_path / "in" / "phone.jpg", quality=95, exif=exif.tobytes())
    got = copy_photos([tmp_path / "in" / "phone.jpg"], tmp_path / "out", 1)
    assert got.sizes == {"phone.jpg": (20, 40)}
    with Image.open(tmp_path / "out" / "phone.jpg") as im:
        assert im.getexif().get(EXIF_ORIENTATION) == 1
        up = np.asarray(im.convert("L"), np.float32)
    assert up[:20].mean() > 200
    assert up[20:].mean() < 50
