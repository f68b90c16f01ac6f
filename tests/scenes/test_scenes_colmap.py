"""COLMAP loader on tiny models written here (.bin and .txt), one camera of every supported model; the shared
real captures at the end (``data``)."""

import math
import shutil
import struct
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from conftest import data_path, run_main
from fieldfit.errors import InputError
from fieldfit.scenes import load_colmap, load_scene
from fieldfit.scenes.inputs import classify

W, H = 40, 30
# COLMAP's own parameter order per model
CAMERAS = [
    (1, "SIMPLE_PINHOLE", [31.0, 20.3, 14.6]),
    (2, "PINHOLE", [30.0, 32.5, 19.7, 15.2]),
    (3, "SIMPLE_RADIAL", [29.0, 20.1, 15.1, -0.08]),
    (4, "RADIAL", [30.5, 19.8, 14.9, -0.06, 0.01]),
    (5, "OPENCV", [31.5, 30.8, 20.4, 15.3, -0.07, 0.012, 0.002, -0.001]),
    (6, "FULL_OPENCV", [30.2, 30.9, 19.6, 14.7, -0.05, 0.012, 0.001, -6e-4, 5e-4, 0.1, 0.004, 3e-4]),
    (7, "OPENCV_FISHEYE", [22.0, 22.5, 20.2, 15.4, 0.03, -0.006, 0.0011, -0.0002]),
]
MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4, "OPENCV_FISHEYE": 5,
             "FULL_OPENCV": 6, "FOV": 7}
N_IMAGES = 10


# -- COLMAP's projection, written out per model (independent of fieldfit's lens code) -------------
def colmap_pixels(model: str, params, qvec, tvec, xyz):
    """(pixels [M,2], depth [M]) of world points through a COLMAP camera and image pose."""
    rot = Rotation.from_quat([qvec[1], qvec[2], qvec[3], qvec[0]]).as_matrix()  # scipy: (x, y, z, w)
    pc = xyz @ rot.T + tvec
    p = list(params)
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    if model == "OPENCV_FISHEYE":
        k1, k2, k3, k4 = extra
        rho = np.hypot(pc[:, 0], pc[:, 1])
        th = np.arctan2(rho, pc[:, 2])
        thd = th * (1 + k1 * th**2 + k2 * th**4 + k3 * th**6 + k4 * th**8)
        ud, vd = thd * pc[:, 0] / rho, thd * pc[:, 1] / rho
    else:
        u, v = pc[:, 0] / pc[:, 2], pc[:, 1] / pc[:, 2]
        r2 = u * u + v * v
        k = dict(zip(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), [0.0] * 8, strict=True))
        if model == "SIMPLE_RADIAL":
            k["k1"] = extra[0]
        elif model == "RADIAL":
            k["k1"], k["k2"] = extra
        elif model in ("OPENCV", "FULL_OPENCV"):
            k.update(zip(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), extra, strict=False))
        radial = (1 + k["k1"] * r2 + k["k2"] * r2**2 + k["k3"] * r2**3) / (1 + k["k4"] * r2 + k["k5"] * r2**2
                                                                            + k["k6"] * r2**3)
        ud = u * radial + 2 * k["p1"] * u * v + k["p2"] * (r2 + 2 * u * u)
        vd = v * radial + k["p1"] * (r2 + 2 * v * v) + 2 * k["p2"] * u * v
    return np.stack([fx * ud + cx, fy * vd + cy], -1), pc[:, 2]


def ring_pose(i, n, radius=3.0):
    """COLMAP (qvec, tvec) of a camera on a ring around the origin, looking at it (OpenCV axes)."""
    a = 2 * math.pi * i / n
    eye = np.array([radius * math.cos(a), 0.4 * math.sin(3 * a), radius * math.sin(a)])
    z = -eye / np.linalg.norm(eye)  # forward
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])  # world -> camera rows
    q = Rotation.from_matrix(rot).as_quat()  # x y z w
    return np.array([q[3], q[0], q[1], q[2]]), -rot @ eye


# -- a tiny writer -----------------------------------------------------------------------------------
def write_bin(folder, cameras, images, points):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(cameras)))
        for cid, model, w, h, params in cameras:
            f.write(struct.pack("<IiQQ", cid, MODEL_IDS[model], w, h) + struct.pack(f"<{len(params)}d", *params))
    with open(folder / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(images)))
        for iid, q, t, cid, name, xys, pids in images:
            f.write(struct.pack("<I7dI", iid, *q, *t, cid) + name.encode() + b"\0" + struct.pack("<Q", len(pids)))
            for (x, y), pid in zip(xys, pids, strict=True):
                f.write(struct.pack("<2dq", x, y, pid))
    with open(folder / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(points)))
        for pid, xyz, rgb, err, track in points:
            f.write(struct.pack("<Q3d3BdQ", pid, *xyz, *rgb, err, len(track)))
            for iid, idx in track:
                f.write(struct.pack("<II", iid, idx))


def write_txt(folder, cameras, images, points):
    folder.mkdir(parents=True, exist_ok=True)

    def g(v):
        return repr(float(v))

    lines = ["# Camera list with one line of data per camera:"]
    lines += [f"{cid} {model} {w} {h} " + " ".join(map(g, params)) for cid, model, w, h, params in cameras]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:"]
    for iid, q, t, cid, name, xys, pids in images:
        lines.append(" ".join(map(str, [iid, *map(g, q), *map(g, t), cid, name])))
        lines.append(" ".join(f"{g(x)} {g(y)} {pid}" for (x, y), pid in zip(xys, pids, strict=True)))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list"]
    for pid, xyz, rgb, err, track in points:
        lines.append(" ".join(map(str, [pid, *map(g, xyz), *rgb, g(err), *[v for tr in track for v in tr]])))
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def make_model(n_images=N_IMAGES, n_points=80, seed=0):
    """(cameras, images, points) of a ring of views around a cloud, every camera model in turn."""
    rng = np.random.default_rng(seed)
    cams = [(cid, model, W, H, params) for cid, model, params in CAMERAS]
    xyz = rng.uniform(-0.8, 0.8, (n_points, 3))
    images, tracks = [], {pid: [] for pid in range(1, n_points + 1)}
    for i in range(n_images):
        iid = 100 - i  # ids against name order
        q, t = ring_pose(i, n_images)
        cid, model, params = CAMERAS[i % len(CAMERAS)]
        px, depth = colmap_pixels(model, params, q, t, xyz)
        vis = np.flatnonzero((depth > 0) & (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H))
        xys = np.concatenate([px[vis], [[1.0, 2.0]]])  # and one 2D point without a 3D point
        pids = np.concatenate([vis + 1, [-1]])
        for k, p in enumerate(vis + 1):
            tracks[int(p)].append((iid, k))
        images.append((iid, q, t, cid, f"view_{i:02d}.png", xys, pids))
    rgb = rng.integers(0, 256, (n_points, 3))
    points = [(pid, xyz[pid - 1], rgb[pid - 1], 0.5, tracks[pid]) for pid in range(1, n_points + 1)]
    return cams, images, points


def write_images(folder, names, size=(W, H), seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        iio.imwrite(folder / name, rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def capture(root, fmt="bin", sub="sparse/0", model=None):
    model = model or make_model()
    (write_bin if fmt == "bin" else write_txt)(root / sub, *model)
    write_images(root / "images", [im[4] for im in model[1]])
    return root


# -- tests -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def bin_scene(tmp_path_factory, model):
    return load_colmap(capture(tmp_path_factory.mktemp("bin"), model=model))


def test_bin_and_txt_load_identically(tmp_path, model, bin_scene):
    a, b = bin_scene, load_colmap(capture(tmp_path / "t", "txt", model=model))
    assert (a.kind, b.kind, a.metadata["model_format"], b.metadata["model_format"]) == ("colmap", "colmap", "bin",
                                                                                       "txt")
    for fa, fb in zip(a.frames, b.frames, strict=True):
        ca, cb = fa.camera, fb.camera
        assert fa.name == fb.name
        assert (ca.model, ca.width, ca.height, ca.fx, ca.fy, ca.cx, ca.cy) == (cb.model, cb.width, cb.height, cb.fx,
                                                                                 cb.fy, cb.cx, cb.cy)
        np.testing.assert_array_equal(ca.c2w, cb.c2w)
        assert (ca.distortion is None) == (cb.distortion is None)
        if ca.distortion is not None:
            np.testing.assert_array_equal(ca.distortion, cb.distortion)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.point_colors, b.point_colors)
    np.testing.assert_array_equal(a.aabb, b.aabb)
    assert (a.near, a.far, a.splits) == (b.near, b.far, b.splits)
    assert a.metadata["frame_bounds"] == b.metadata["frame_bounds"]


def test_every_model_projects_world_points_to_colmap_pixels(model, bin_scene):
    cams = {cid: (m, p) for cid, m, _, _, p in model[0]}
    images = sorted(model[1], key=lambda im: im[4])
    xyz = np.stack([p[1] for p in model[2]])
    seen_models = set()
    for frame, (_, q, t, cid, name, _, _) in zip(bin_scene.frames, images, strict=True):
        m, params = cams[cid]
        want, depth = colmap_pixels(m, params, q, t, xyz)
        got, got_depth = frame.camera.project(torch.from_numpy(xyz))
        front = depth > 0
        np.testing.assert_allclose(got.numpy()[front], want[front], atol=1e-7, rtol=0)
        np.testing.assert_allclose(got_depth.numpy(), depth, atol=1e-12)
        rot = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
        np.testing.assert_allclose(frame.camera.position, -rot.T @ t, atol=1e-12)
        assert frame.name == name
        assert frame.path.name == name
        seen_models.add(m)
    assert seen_models == {m for _, m, _ in CAMERAS}
    assert bin_scene.metadata["camera_models"] == sorted(seen_models)
    # and back: the ray through a point's pixel passes through the point (fisheye included)
    f = bin_scene.frames[6]
    assert f.camera.model == "OPENCV_FISHEYE"
    xy, _ = f.camera.project(torch.from_numpy(xyz))
    o, d = f.camera.rays(xy, dtype=torch.float64)
    rel = torch.from_numpy(xyz) - o
    np.testing.assert_allclose(torch.linalg.cross(rel, d).norm(dim=-1).numpy(), 0, atol=1e-9)


def test_splits_sorted_by_name_every_8th(bin_scene, tmp_path, model):
    assert [f.name for f in bin_scene.frames] == [f"view_{i:02d}.png" for i in range(N_IMAGES)]
    assert bin_scene.split("test") == [0, 8]
    assert bin_scene.split("train") == [1, 2, 3, 4, 5, 6, 7, 9]
    s = load_colmap(capture(tmp_path / "c", model=model), test_every=3)
    assert s.split("test") == [0, 3, 6, 9]
    img = bin_scene.image(2)
    assert img.shape == (H, W, 3)
    assert img.dtype == np.float32
    np.testing.assert_allclose(bin_scene.point_colors, np.stack([p[2] for p in model[2]]) / 255.0, atol=1e-7)


def test_bounds_hold_the_points_and_each_view_s_depths(tmp_path):
    cams, images, points = make_model()
    far_pid = len(points) + 1  # an outlier far away, tracked by one image only: not in the box
    points.append((far_pid, np.array([40.0, 0.0, 0.0]), np.array([1, 2, 3]), 2.0, [(images[0][0], 99)]))
    s = load_colmap(capture(tmp_path / "c", model=(cams, images, points)))
    xyz = np.stack([p[1] for p in points[:-1]])
    inl = np.all((xyz >= np.percentile(xyz, 0.5, axis=0)) & (xyz <= np.percentile(xyz, 99.5, axis=0)), axis=1)
    assert np.all((xyz[inl] >= s.aabb[0]) & (xyz[inl] <= s.aabb[1]))
    size = xyz[inl].max(0) - xyz[inl].min(0)
    np.testing.assert_allclose(s.aabb, [xyz[inl].min(0) - 0.1 * size, xyz[inl].max(0) + 0.1 * size])
    assert len(s.points) == len(points)  # the outlier is still one of the scene's points
    fb = np.array(s.metadata["frame_bounds"])
    assert fb.shape == (N_IMAGES, 2)
    by_name = sorted(images, key=lambda im: im[4])
    for frame, (near, far), im in zip(s.frames, fb, by_name, strict=True):
        observed = xyz[im[6][im[6] > 0] - 1]
        z = -((observed - frame.camera.position) @ frame.camera.c2w[:, :3])[:, 2]  # depth in front
        assert near == pytest.approx(0.5 * np.percentile(z, 1))
        assert far == pytest.approx(1.5 * np.percentile(z, 99))
        assert 0 < near < z.min()
        assert z.max() < far
    assert (s.near, s.far) == (fb[:, 0].min(), fb[:, 1].max())
    centre, radius = np.array(s.metadata["points_centre"]), s.metadata["points_radius"]
    np.testing.assert_allclose(centre, 0.5 * (xyz[inl].min(0) + xyz[inl].max(0)))
    frac = np.mean(np.linalg.norm(xyz[inl] - centre, axis=1) <= radius + 1e-12)
    assert 0.94 <= frac <= 0.97
    assert "tracks >= 3" in s.metadata["bounds_rule"]


def test_images_n_scaled_intrinsics_and_area_fallback(tmp_path, model):
    root = capture(tmp_path / "c", model=model)
    names = [im[4] for im in model[1]]
    write_images(root / "images_4", names, size=(10, 8))  # 40x30 / 4 = 10 x 7.5: rounded up
    s4 = load_colmap(root, downscale=4)
    full = load_colmap(root)
    assert s4.downscale == 1
    assert s4.metadata["image_folder"].endswith("images_4")
    for a, b in zip(s4.frames, full.frames, strict=True):
        ca, cb = a.camera, b.camera
        assert (ca.width, ca.height) == (10, 8)
        assert (ca.fx, ca.cx) == pytest.approx((cb.fx * 10 / 40, cb.cx * 10 / 40))
        assert (ca.fy, ca.cy) == pytest.approx((cb.fy * 8 / 30, cb.cy * 8 / 30))
        assert a.path.parent.name == "images_4"
    assert s4.image(1).shape == (8, 10, 3)
    s3 = load_colmap(root, downscale=3)  # no images_3: images/ area-downscaled
    assert s3.downscale == 3
    c3 = s3.frames[0].camera
    assert (c3.width, c3.height, c3.fx) == (13, 10, pytest.approx(full.frames[0].camera.fx / 3))
    assert s3.image(0).shape == (10, 13, 3)
    write_images(root / "images_2", names, size=(20, 14))  # a wrong aspect
    with pytest.raises(InputError, match="not a resized copy"):
        load_colmap(root, downscale=2)


def test_model_folder_variants_and_detection(tmp_path, model):
    cams, images, points = model
    a = capture(tmp_path / "a", sub="sparse", model=model)  # sparse/ without 0/
    assert load_scene(a).kind == "colmap"
    b = capture(tmp_path / "b", model=model)
    for given in (b / "sparse" / "0", b / "sparse"):
        s = load_scene(given)
        assert s.kind == "colmap"
        assert s.root == b
        assert len(s.frames) == N_IMAGES
    assert classify(str(b)).task == "radiance"
    (b / "transforms.json").write_text('{"camera_angle_x": 1.0, "frames": [{"file_path": "images/view_00.png", '
                                       '"transform_matrix": [[1,0,0,0],[0,1,0,0],[0,0,1,3],[0,0,0,1]]}]}')
    assert load_scene(b).kind == "nerfstudio"  # transforms.json keeps its place first
    write_images(b / "images", ["unregistered.png"])  # not in the model: ignored
    assert len(load_scene(b / "sparse").frames) == N_IMAGES


# -- bad input: one InputError each --------------------------------------------------------------------
def test_missing_images_named_with_the_folder(tmp_path, model):
    root = capture(tmp_path / "c", model=model)
    for i in range(7):
        (root / "images" / f"view_{i:02d}.png").unlink()
    with pytest.raises(InputError, match=r"7 of its 10 images are missing from folder .*images: view_00.png, "
                                         r"view_01.png, view_02.png, view_03.png, view_04.png and 2 more") as e:
        load_colmap(root)
    assert e.value.path.endswith("images.bin")
    shutil.rmtree(root / "images")
    with pytest.raises(InputError, match=r"images \(not there\)"):
        load_colmap(root)
    res = run_main(root, "--steps", "1", cwd=tmp_path)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "images.bin" in res.stderr
    assert "missing" in res.stderr


def test_no_registered_images_or_a_missing_model_file(tmp_path):
    cams, _, _ = make_model()
    write_bin(tmp_path / "sparse" / "0", cams, [], [])
    with pytest.raises(InputError, match="no registered images"):
        load_colmap(tmp_path)
    (tmp_path / "sparse" / "0" / "points3D.bin").unlink()
    with pytest.raises(InputError, match="points3D.bin: file not found"):
        load_scene(tmp_path)


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_unsupported_camera_model(tmp_path, fmt, model):
    cams, images, points = model
    cams = [*cams[:-1], (7, "FOV", W, H, [20.0, 20.0, 20.0, 15.0, 0.5])]
    root = capture(tmp_path, fmt, model=(cams, images, points))
    want = r"camera 7: camera model FOV \(id 7\) is not supported" if fmt == "bin" else "camera 7: camera model FOV"
    with pytest.raises(InputError, match=want) as e:
        load_colmap(root)
    assert "SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE, FULL_OPENCV" in str(e.value)
    assert e.value.path.endswith(f"cameras.{fmt}")


@pytest.mark.parametrize("name", ["cameras.bin", "images.bin", "points3D.bin"])
def test_truncated_or_garbage_bin(tmp_path, model, name):
    root = capture(tmp_path, model=model)
    f = root / "sparse" / "0" / name
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2 + 3])
    with pytest.raises(InputError, match="truncated or not a COLMAP binary model") as e:
        load_colmap(root)
    assert e.value.path == str(f)
    assert "\n" not in str(e.value)
    f.write_bytes(np.random.default_rng(0).bytes(len(data)))
    with pytest.raises(InputError) as e:
        load_colmap(root)
    assert e.value.path == str(f)


def test_malformed_txt_lines(tmp_path, model):
    root = capture(tmp_path, "txt", model=model)
    f = root / "sparse" / "0" / "images.txt"
    lines = f.read_text().splitlines()
    lines[4] = lines[4] + " 7.5"  # the points line of the 2nd image: not triples
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"images.txt: line 5: image 99: expected X Y POINT3D_ID triples"):
        load_colmap(root)
    lines[4] = lines[4][: -len(" 7.5")]
    lines[1] = lines[1].replace(" ", " x", 1)
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"images.txt: line 2: expected a number"):
        load_colmap(root)
    c = root / "sparse" / "0" / "cameras.txt"
    c.write_text(c.read_text().replace("PINHOLE 40 30 30.0", "PINHOLE 40 30 abc"))
    with pytest.raises(InputError, match=r"cameras.txt: line 3: expected a number"):
        load_colmap(root)


def test_bad_poses_and_camera_references(tmp_path, model):
    cams, images, points = model
    bad = list(images)
    bad[3] = (bad[3][0], np.array([1.0, float("nan"), 0.0, 0.0]), *bad[3][2:])
    with pytest.raises(InputError, match=r"image 97 \('view_03.png'\): its pose holds NaN"):
        load_colmap(capture(tmp_path / "nan", model=(cams, bad, points)))
    bad[3] = (bad[3][0], np.zeros(4), *bad[3][2:])
    with pytest.raises(InputError, match="rotation quaternion is zero"):
        load_colmap(capture(tmp_path / "zero", model=(cams, bad, points)))
    bad = list(images)
    bad[2] = (*bad[2][:3], 42, *bad[2][4:])
    root = capture(tmp_path / "cam", model=(cams, bad, points))
    with pytest.raises(InputError, match=r"view_02.png'\) uses camera 42, which cameras.bin does not define"):
        load_colmap(root)
    res = run_main(root, "--steps", "1", cwd=tmp_path)
    assert res.returncode == 2
    assert "camera 42" in res.stderr
    assert "Traceback" not in res.stderr


# -- the shared captures ---------------------------------------------------------------------------
@pytest.mark.data
def test_tank_bin_and_txt_give_the_same_cameras():
    root = data_path("colmap", "tank_opencv")
    a, b = load_colmap(root), load_colmap(root, model_format="txt")
    assert (a.metadata["model_format"], b.metadata["model_format"]) == ("bin", "txt")
    assert len(a.frames) == len(b.frames) == 96
    assert a.metadata["camera_models"] == ["OPENCV"]
    for fa, fb in zip(a.frames, b.frames, strict=True):
        ca, cb = fa.camera, fb.camera
        assert fa.name == fb.name
        np.testing.assert_allclose([ca.fx, ca.fy, ca.cx, ca.cy], [cb.fx, cb.fy, cb.cx, cb.cy], rtol=1e-9)
        np.testing.assert_allclose(ca.distortion, cb.distortion, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ca.c2w, cb.c2w, atol=1e-9)


@pytest.mark.data
def test_cup_downscale_4_reads_images_4():
    s = load_colmap(data_path("colmap", "cup_object"), downscale=4)
    full = load_colmap(data_path("colmap", "cup_object"))
    assert s.metadata["image_folder"].endswith("images_4")
    assert s.downscale == 1
    c, f = s.frames[0].camera, full.frames[0].camera
    assert (c.width, c.height) == (200, 150)
    assert (f.width, f.height) == (800, 600)
    assert c.fx == pytest.approx(f.fx / 4)
    assert c.cy == pytest.approx(f.cy / 4)
    assert s.image(0).shape == (150, 200, 3)


@pytest.mark.data
def test_bonsai_points_reproject_onto_their_observations():
    """Every registered image's own 2D observations (images.bin) against its 3D points through the loaded Camera:
    the pose and intrinsics conventions on real data (the model's mean reprojection error is 0.37 px)."""
    from fieldfit.scenes.colmap_io import read_model

    root = data_path("colmap", "bonsai_selfsfm")
    s = load_colmap(root)
    m = read_model(root / "sparse" / "0")
    row = {int(p): i for i, p in enumerate(m.points.ids)}
    images = sorted(m.images.values(), key=lambda im: im.name)
    assert len(images) == len(s.frames) == 146
    for frame, im in zip(s.frames, images, strict=True):
        ok = im.point_ids >= 0
        xyz = m.points.xyz[[row[int(p)] for p in im.point_ids[ok]]]
        xy, depth = frame.camera.project(torch.from_numpy(xyz))
        err = np.linalg.norm(xy.numpy() - im.xys[ok], axis=1)
        assert (depth > 0).all()
        assert np.median(err) < 1.0, (im.name, np.median(err))
        assert np.percentile(err, 95) < 4.0, (im.name, np.percentile(err, 95))
    assert np.all((s.points.min(0) < s.aabb[1]) & (s.points.max(0) > s.aabb[0]))


def test_training_rays_start_at_each_views_own_near(bin_scene):
    from fieldfit.scenes.subset import subset
    from fieldfit.tasks.radiance import PixelStore, camera_rays, view_lift

    fb = np.array(bin_scene.metadata["frame_bounds"])
    assert fb[:, 0].max() > bin_scene.near  # the views' own bounds differ: some start later than the scene
    ids = bin_scene.split("train")[:3]
    store = PixelStore(bin_scene, ids)
    start = 0
    for i in ids:
        o, d = camera_rays(bin_scene, bin_scene.frames[i].camera)
        n = len(o)
        lift = fb[i, 0] - bin_scene.near  # the march starts at the scene's near: from these origins, the view's
        assert view_lift(bin_scene, i) == pytest.approx(lift)
        np.testing.assert_allclose(store.origins[start:start + n], (o + d * lift).numpy(), atol=1e-5)
        np.testing.assert_allclose(store.dirs[start:start + n], d.numpy())
        start += n
    part = subset(bin_scene, [4, 2], 1, bin_scene.aabb, bin_scene.near, bin_scene.far)  # a block's frames
    assert [view_lift(part, k) for k in (0, 1)] == pytest.approx([fb[4, 0] - part.near, fb[2, 0] - part.near])
    plain = replace(bin_scene, metadata={})
    assert view_lift(plain, ids[0]) == 0.0
