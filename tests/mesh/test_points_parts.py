"""Point clouds (mesh/points.py) and convex parts (mesh/parts.py) as files other tools read."""

import numpy as np
import pytest
import trimesh

from fieldfit.errors import InputError
from fieldfit.mesh.parts import convex_part, parts_target, write_parts
from fieldfit.mesh.points import PointCloud, ply_bytes, voxel_thin, write_ply


def cloud(n: int, normals: bool, seed: int = 0) -> PointCloud:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    c = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    return PointCloud(p, c, p.copy() if normals else None)


@pytest.mark.parametrize("normals", [True, False])
def test_ply_loads_in_trimesh_with_colours_and_normals(tmp_path, normals):
    c = cloud(500, normals)
    out = write_ply(c, tmp_path / "points.ply")
    assert not [p for p in tmp_path.iterdir() if p.name != "points.ply"]  # no temporary left
    loaded = trimesh.load(out)
    assert isinstance(loaded, trimesh.PointCloud)
    np.testing.assert_allclose(loaded.vertices, c.points, atol=1e-6)
    assert np.array_equal(np.asarray(loaded.colors)[:, :3], c.colours)
    header = ply_bytes(c).split(b"end_header")[0].decode()
    assert "binary_little_endian" in header
    assert ("property float nx" in header) == normals
    assert header.index("property float z") < header.index("property uchar red")


def test_voxel_thin_keeps_at_most_the_target_and_averages():
    c = cloud(20_000, True)
    thin = voxel_thin(c, 1000, 1e-4)
    assert 250 < len(thin) <= 1000  # the smallest doubling that fits: more than a quarter of the target
    assert np.allclose(np.linalg.norm(thin.normals, axis=1), 1.0)
    assert np.abs(np.linalg.norm(thin.points, axis=1) - 1.0).max() < 0.2  # means of nearby sphere points
    twice = PointCloud.concat([c, c])  # the same points seen twice (two cameras): one point per cell again
    assert len(voxel_thin(twice, 10**6, 1e-9)) == len(c)


def test_convex_parts_are_closed_and_convex_after_a_welded_reload(tmp_path):
    rng = np.random.default_rng(1)
    parts = [convex_part(rng.normal(size=(40, 3)) * s + o) for s, o in ((1.0, 0.0), (0.3, 3.0))]
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1e-9, 0, 0]], float)  # two corners 1e-9 apart
    parts.append(convex_part(corners + 5.0))
    glb = write_parts(parts, tmp_path / "parts.glb")
    scene = trimesh.load(glb)  # trimesh's default load merges close vertices
    assert sorted(scene.geometry) == ["part_000", "part_001", "part_002"]
    folder = write_parts(parts, tmp_path / "parts")
    assert sorted(p.name for p in folder.iterdir()) == ["part_000.obj", "part_001.obj", "part_002.obj"]
    for k in range(3):
        for m in (scene.geometry[f"part_{k:03d}"], trimesh.load(folder / f"part_{k:03d}.obj")):
            assert m.is_watertight
            assert m.is_convex
            assert m.volume > 0
    assert np.isclose(trimesh.load(folder / "part_002.obj").volume, 1 / 6)


def test_parts_targets_and_folders_that_hold_other_files(tmp_path):
    assert parts_target(tmp_path / "a.glb") == "glb"
    assert parts_target(f"{tmp_path}/dir/") == "folder"
    with pytest.raises(InputError, match="cannot write parts to '.ply'"):
        parts_target(tmp_path / "a.ply")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="other files"):
        write_parts([convex_part(np.eye(3).tolist() + [[0, 0, 0]])], tmp_path / "busy")
    assert convex_part(np.zeros((5, 3)))[1].shape == (0, 3)  # no volume: empty
