"""mesh/io.py and mesh/export.py: bad inputs, cleanup, diagnostics, normalization, round trips."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

import fieldfit.mesh as fm
from conftest import data_path
from fieldfit.errors import InputError
from fieldfit.mesh import export_mesh, from_unit, load_mesh, normalization, to_unit


def shared_mesh(name: str) -> Path:
    return data_path("meshes", name)


def test_all_names_resolve():
    for name in fm.__all__:
        assert getattr(fm, name) is not None, name


# --- bad inputs: InputError naming the file, never a traceback -------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "text", "words"), [
    ("missing.obj", None, "not found"),
    ("mesh.xyz", "v 0 0 0\n", "unsupported"),
    ("empty.obj", "", "empty"),
    ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
    ("nan.obj", "v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n", "NaN"),
    ("inf.obj", "v 0 0 0\nv 1 0 inf\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("garbage.ply", "this is not a ply file\n", "could not read"),
    ("garbage.glb", "not a glb\n", "could not read"),
    ("collapsed.obj", "v 0 0 0\nv 1 0 0\nf 1 1 2\n", "no faces"),
])
def test_bad_inputs_raise_input_error(tmp_path, name, text, words):
    path = tmp_path / name
    if text is not None:
        _write(path, text)
    with pytest.raises(InputError) as err:
        load_mesh(path)
    assert name in str(err.value)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_extension_lists_supported(tmp_path):
    with pytest.raises(InputError, match=r"\.obj .*\.glb"):
        load_mesh(_write(tmp_path / "a.dae", "x"))


# --- cleanup --------------------------------------------------------------------------

def test_cleanup_drops_degenerate_and_duplicate_faces(tmp_path):
    text = ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 1 0 0\n"
            "f 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"   # closed tetrahedron
            "f 3 4 2\n"                               # duplicate of f 2 3 4 (rotated)
            "f 1 2 5\n")                              # degenerate once 5 merges into 2
    m = load_mesh(_write(tmp_path / "tet.obj", text))
    assert m.faces.shape == (4, 3)
    assert m.vertices.shape == (4, 3)
    assert "2 degenerate/duplicate faces dropped" in m.diagnostics
    assert "1 duplicate vertices merged" in m.diagnostics
    assert m.watertight
    assert m.euler == 2
    assert m.components == 1
    assert "watertight, genus 0" in m.diagnostics


def test_inside_out_mesh_is_flipped(tmp_path):
    box = trimesh.creation.box()
    path = export_mesh(box.vertices, box.faces[:, ::-1], tmp_path / "inv.ply")
    m = load_mesh(path)
    assert trimesh.Trimesh(m.vertices, m.faces, process=False).volume > 0
    assert any("flipped" in d for d in m.diagnostics)


def test_glb_scene_applies_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    scene.add_geometry(trimesh.creation.box())
    path = tmp_path / "two.glb"
    scene.export(path)
    m = load_mesh(path)
    assert m.components == 2
    assert m.watertight
    np.testing.assert_allclose(m.vertices.min(axis=0), [-0.5, -0.5, -0.5])
    np.testing.assert_allclose(m.vertices.max(axis=0), [3.5, 0.5, 0.5])


# --- diagnostics on the shared broken meshes -------------------------------------------

def test_bunny_zipper_is_open_and_non_manifold():
    m = load_mesh(shared_mesh("bunny_zipper_res2.ply"))
    text = " | ".join(m.diagnostics)
    assert "boundary edges" in text
    assert "non-manifold edges" in text
    assert "degenerate/duplicate faces dropped" in text
    assert not m.watertight


def test_teapot_three_open_components():
    m = load_mesh(shared_mesh("teapot.obj"))
    assert m.components == 3
    assert "3 components" in m.diagnostics
    assert any(d.startswith("open:") for d in m.diagnostics)


def test_featuretype_genus_9():
    m = load_mesh(shared_mesh("featuretype.STL"))  # STL: a vertex per face corner, merged on load
    assert m.watertight
    assert m.components == 1
    assert m.euler == 2 - 2 * 9
    assert "watertight, genus 9" in m.diagnostics


def test_spot_watertight_genus_0():
    m = load_mesh(shared_mesh("spot.obj"))
    assert m.watertight
    assert m.euler == 2
    assert m.diagnostics[-1] == "watertight, genus 0"


# --- normalization ---------------------------------------------------------------------

def test_normalization_box_and_round_trip():
    v = np.random.default_rng(0).normal(size=(500, 3)) * [3.0, 1.0, 0.2] + [10.0, -4.0, 2.0]
    center, scale = normalization(v)
    u = to_unit(v, center, scale)
    lo, hi = u.min(axis=0), u.max(axis=0)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.9)
    assert np.abs(u).max() < 1.0
    np.testing.assert_allclose(from_unit(u, center, scale), v, atol=1e-12)
    t = torch.as_tensor(v, dtype=torch.float32)
    np.testing.assert_allclose(to_unit(t, center, scale).numpy(), u, atol=1e-5)
    with pytest.raises(ValueError, match="coincide|not finite"):
        normalization(np.ones((4, 3)))


# --- export ----------------------------------------------------------------------------

@pytest.mark.parametrize("ext", fm.SUPPORTED_MESH_EXTS)
def test_export_round_trip(tmp_path, ext):
    sphere = trimesh.creation.icosphere(2, 0.5)
    colors = np.tile([[0.2, 0.4, 0.6]], (len(sphere.vertices), 1))
    path = export_mesh(sphere.vertices, sphere.faces, tmp_path / "sub" / f"s{ext}", vertex_colors=colors)
    assert path == tmp_path / "sub" / f"s{ext}"
    assert os.listdir(path.parent) == [path.name]  # no temp file left behind
    m = load_mesh(path)
    assert m.watertight
    assert len(m.faces) == len(sphere.faces)
    assert len(m.vertices) == len(sphere.vertices)
    got = trimesh.Trimesh(m.vertices, m.faces, process=False)
    assert got.volume == pytest.approx(sphere.volume, rel=1e-6)
    np.testing.assert_allclose(np.sort(m.vertices, axis=0), np.sort(sphere.vertices, axis=0), atol=1e-6)


def test_export_is_atomic_on_failure(tmp_path, monkeypatch):
    box = trimesh.creation.box()
    target = export_mesh(box.vertices, box.faces, tmp_path / "box.ply")
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        export_mesh(box.vertices * 2, box.faces, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["box.ply"]


def test_export_unknown_extension(tmp_path):
    with pytest.raises(InputError, match="out.fbx"):
        export_mesh(np.eye(3), [[0, 1, 2]], tmp_path / "out.fbx")
