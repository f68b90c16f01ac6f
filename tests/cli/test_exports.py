"""``fieldfit export`` (--faces, --points, --parts) and ``fieldfit render`` (--camera-path, --pass, --size, --fps) on
tiny fits: a bsp run of the built-in csg part and an rbf run of the built-in blocks scene (known geometry)."""

import json
import re

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh

from conftest import fit_one_thread, run_main
from fieldfit.mesh.weld import reload_report

BSP = ["csg", "--method", "bsp", "--steps", "40", "--train-points", "20000", "--convexes", "4", "--batch", "1024",
       "--iou-points", "20000"]
RADIANCE = ["blocks", "--steps", "120", "--lr", "0.05", "--downscale", "2", "--levels", "2", "--max-res", "32",
            "--resolution", "32"]  # a higher rate than the default: the rbf shift of -10 turns opaque later

pytestmark = pytest.mark.usefixtures("one_thread")


fit = fit_one_thread


@pytest.fixture(scope="module")
def bsp_run(tmp_path_factory):
    return fit(tmp_path_factory, "bsp", BSP)


@pytest.fixture(scope="module")
def radiance_run(tmp_path_factory):
    return fit(tmp_path_factory, "radiance", RADIANCE)


def ok(res):
    assert res.returncode == 0, res.stderr
    return res.stdout


def one_line_error(res, *needles):
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("fieldfit: error:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def blocks_distance(p: np.ndarray) -> np.ndarray:
    """Distance of points [N,3] to the surface of the built-in blocks scene (its spheres and slab)."""
    from fieldfit.scenes import procedural

    d = [np.abs(np.linalg.norm(p - np.asarray(c), axis=1) - r) for c, r, _ in procedural._SPHERES]
    lo, hi = (np.asarray(b) for b in procedural._BOX)
    q = np.abs(p - (lo + hi) / 2) - (hi - lo) / 2
    d.append(np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)))
    return np.min(d, 0)


# -- export --faces -------------------------------------------------------------------------------------------------
def test_faces_decimates_keeping_topology(bsp_run, tmp_path):
    metrics = json.loads((bsp_run / "metrics.json").read_text())
    target = metrics["faces"] * 3 // 4
    out = tmp_path / "low.ply"
    output = ok(run_main("export", bsp_run, "--mesh", out, "--faces", target))
    line = next(ln for ln in output.splitlines() if ln.startswith("wrote "))
    figures = dict(re.findall(r"(\w+) (\S+?)(?:,| \(|$)", line.split(": ", 1)[1]))
    assert int(figures["faces"]) <= target
    assert figures["watertight"] == "True"
    assert f"(before {metrics['faces']})" in line
    assert f"euler {metrics['euler']} (before {metrics['euler']})" in line
    assert float(figures["chamfer_l2"]) < 0.05
    for how, report in reload_report(out).items():
        assert report["ok"], (how, report)
        assert report["euler"] == metrics["euler"], (how, report)
        assert report["shells"] == metrics["components"]
        assert report["faces"] == int(figures["faces"])


# -- export --points ------------------------------------------------------------------------------------------------
@pytest.mark.slow  # the radiance fit: ~6 s
def test_points_of_a_radiance_run_lie_on_the_scene(radiance_run, tmp_path):
    out = tmp_path / "points.ply"
    assert "points" in ok(run_main("export", radiance_run, "--points", out, "--max-points", "3000"))
    cloud = trimesh.load(out)
    assert isinstance(cloud, trimesh.PointCloud)
    assert 200 < len(cloud.vertices) <= 3000
    colours = np.asarray(cloud.colors)[:, :3]
    assert colours.std(axis=0).min() > 10  # coloured (red, green, blue spheres on a yellow slab), not one grey
    d = blocks_distance(np.asarray(cloud.vertices))
    assert np.median(d) < 0.12, np.median(d)  # the scene is 2 wide: a coarse 120-step fit, near its surfaces
    shifted = blocks_distance(np.asarray(cloud.vertices) + [0.0, 0.0, 0.4])
    assert np.median(shifted) > 2 * np.median(d)  # the check can fail


def test_points_of_a_shape_run_are_on_its_mesh_with_normals(bsp_run, tmp_path):
    from fieldfit.mesh.inside import signed_distance

    out = tmp_path / "points.ply"
    assert "with normals" in ok(run_main("export", bsp_run, "--points", out, "--max-points", "2000"))
    header = out.read_bytes().split(b"end_header")[0].decode()
    assert "property float nx" in header
    assert "property uchar red" in header
    cloud = trimesh.load(out)
    assert len(cloud.vertices) == 2000
    mesh = trimesh.load(bsp_run / "mesh.ply", process=False)
    d = signed_distance(np.asarray(cloud.vertices), mesh.vertices, mesh.faces)
    assert np.abs(d).max() < 1e-4
    assert len(np.unique(np.asarray(cloud.colors)[:, :3], axis=0)) > 1  # coloured by convex


# -- export --parts -------------------------------------------------------------------------------------------------
def test_parts_are_convex_closed_and_fill_the_bsp_mesh(bsp_run, tmp_path):
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.topology import signed_volume

    glb, folder = tmp_path / "parts.glb", tmp_path / "parts"
    assert "convex parts" in ok(run_main("export", bsp_run, "--parts", glb))
    ok(run_main("export", bsp_run, "--parts", f"{folder}/"))
    scene = trimesh.load(glb)
    names = sorted(scene.geometry)
    assert names
    assert names == [f"part_{k:03d}" for k in range(len(names))]
    assert sorted(p.stem for p in folder.iterdir()) == names
    parts = [scene.geometry[n] for n in names]
    for part in parts + [trimesh.load(folder / f"{n}.obj") for n in names]:
        assert part.is_watertight
        assert part.is_convex
        assert part.volume > 0
    mesh = trimesh.load(bsp_run / "mesh.ply", process=False)
    lo, hi = mesh.bounds
    pts = np.random.default_rng(0).uniform(lo, hi, (200_000, 3))
    in_parts = np.zeros(len(pts), bool)
    for part in parts:  # inside a convex: behind every face plane
        eq = trimesh.Trimesh(part.vertices, part.faces).convex_hull
        in_parts |= (pts @ eq.face_normals.T - np.einsum("ij,ij->i", eq.face_normals, eq.triangles[:, 0])
                     <= 1e-9).all(1)
    box = float(np.prod(hi - lo))
    volume = signed_volume(mesh.vertices, mesh.faces)
    assert abs(in_parts.mean() * box - volume) < 0.03 * volume
    assert np.mean(in_parts == inside(pts, mesh.vertices, mesh.faces)) > 0.99


# -- render ---------------------------------------------------------------------------------------------------------
def path_json(tmp_path, cameras, **top):
    from fieldfit.render.camera_path import camera_path_json

    p = tmp_path / "path.json"
    p.write_text(json.dumps({**camera_path_json(cameras), **top}))
    return p


def frames_of(folder):
    return [iio.imread(p) for p in sorted(folder.glob("frame_*.png"))]


@pytest.mark.slow  # the radiance fit: ~6 s
def test_camera_path_renders_its_frames_at_its_size(radiance_run, tmp_path):
    import fieldfit
    from fieldfit.render.camera import look_at

    lens = fieldfit.load(radiance_run, "cpu").cameras("test")[0].resized(24, 16)
    cams = [lens.with_pose(look_at([4 * np.cos(a), 4 * np.sin(a), 2.0], [0, 0, 0], [0, 0, 1])) for a in (0, 1, 2)]
    path = path_json(tmp_path, cams)
    ok(run_main("render", radiance_run, "--camera-path", path, "--out", tmp_path / "frames"))
    frames = frames_of(tmp_path / "frames")
    assert len(frames) == 3
    assert all(f.shape == (16, 24, 3) for f in frames)
    assert np.abs(frames[0].astype(int) - frames[2]).mean() > 1  # the camera moved
    ok(run_main("render", radiance_run, "--camera-path", path, "--size", "20x12", "--out", tmp_path / "small"))
    assert [f.shape for f in frames_of(tmp_path / "small")] == [(12, 20, 3)] * 3


@pytest.mark.slow  # the radiance fit: ~6 s
def test_a_path_at_a_test_camera_renders_what_the_model_renders(radiance_run, tmp_path):
    import fieldfit
    from fieldfit.tasks.views import to_uint8

    model = fieldfit.load(radiance_run, "cpu")
    cam = model.cameras("test")[1]
    ok(run_main("render", radiance_run, "--camera-path", path_json(tmp_path, [cam]), "--out", tmp_path / "f"))
    (frame,) = frames_of(tmp_path / "f")
    expected = to_uint8(model.render(cam).rgb.numpy())
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected).max() <= 1


@pytest.mark.slow  # the radiance fit: ~6 s
def test_depth_and_normal_passes(radiance_run, tmp_path):
    import fieldfit

    model = fieldfit.load(radiance_run, "cpu")
    out = ok(run_main("render", radiance_run, "--path", "test", "--pass", "depth", "--out", tmp_path / "depth"))
    assert "depth colours: turbo from" in out
    depth = frames_of(tmp_path / "depth")
    cams = model.cameras("test")
    assert len(depth) == len(cams)
    for frame, cam in zip(depth, cams, strict=True):
        points, _ = model.surface(cam)
        assert np.array_equal(frame.any(-1), np.isfinite(points[..., 0]))  # black exactly where nothing is hit
    out = ok(run_main("render", radiance_run, "--path", "test", "--pass", "normal", "--out", tmp_path / "normal"))
    assert "normals from the density gradient" in out
    frame = frames_of(tmp_path / "normal")[0]
    points, _ = model.surface(cams[0])
    hit = frame.any(-1)
    assert np.array_equal(hit, np.isfinite(points[..., 0]))
    normal = frame[hit].astype(float) / 255 * 2 - 1
    assert np.allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=0.03)  # unit normals, as n/2 + 1/2


def test_a_shape_run_follows_a_camera_path_and_shows_depth(bsp_run, tmp_path):
    import fieldfit
    from fieldfit.render.camera import Camera, look_at

    model = fieldfit.load(bsp_run, "cpu")
    v, _, _ = model.mesh()
    centre = (v.min(0) + v.max(0)) / 2
    cams = [Camera(look_at(centre + [3.0 * np.cos(a), 1.0, 3.0 * np.sin(a)], centre, [0, 1, 0]), 30, 30, 16, 12, 32, 24)
            for a in (0.0, 2.0)]
    out = ok(run_main("render", bsp_run, "--camera-path", path_json(tmp_path, cams), "--pass", "depth", "--fps", "5",
                      "--out", tmp_path / "shape"))
    assert "depth colours" in out
    frames = frames_of(tmp_path / "shape")
    assert [f.shape for f in frames] == [(24, 32, 3)] * 2
    assert all(f.any() for f in frames)


def test_errors_are_one_line(bsp_run, tmp_path):
    bad = tmp_path / "bad.json"
    frame = {"camera_to_world": np.eye(4).reshape(-1).tolist()}  # no fov
    bad.write_text(json.dumps({"render_width": 8, "render_height": 8, "camera_path": [frame]}))
    one_line_error(run_main("render", bsp_run, "--camera-path", bad, "--out", tmp_path / "x"),
                   "bad.json", "'camera_path[0].fov'")
    one_line_error(run_main("render", bsp_run, "--size", "0x3", "--out", tmp_path / "x"), "--size 0x3")
    one_line_error(run_main("render", bsp_run, "--fps", "0", "--out", tmp_path / "x"), "--fps 0")
    one_line_error(run_main("export", bsp_run, "--points", tmp_path / "p.xyz"), "p.xyz", ".ply")
    one_line_error(run_main("export", bsp_run, "--points", tmp_path / "p.ply", "--faces", "10"), "--faces 10")
    one_line_error(run_main("export", bsp_run, "--parts", tmp_path / "p.stl"), "p.stl", ".glb")
    one_line_error(run_main("export", bsp_run), "exactly one of --mesh, --points, --parts")


@pytest.mark.slow
def test_parts_of_a_radiance_run_via_bsp(radiance_run, tmp_path):
    one_line_error(run_main("export", radiance_run, "--parts", tmp_path / "p.glb"), "no convex parts", "--via bsp")
    out = ok(run_main("export", radiance_run, "--parts", tmp_path / "proxy.glb", "--via", "bsp", "--convexes", "4",
                      "--steps", "30"))
    n = int(re.search(r"(\d+) convex parts", out).group(1))
    scene = trimesh.load(tmp_path / "proxy.glb")
    assert len(scene.geometry) == n >= 1
    assert all(g.is_watertight and g.is_convex for g in scene.geometry.values())
