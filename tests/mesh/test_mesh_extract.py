"""mesh/extract.py: closed marching cubes, grid frame, fragments, torch SDF extraction."""

from collections import Counter

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import trimesh

from fieldfit.mesh import extract_sdf_mesh, marching_cubes_closed, remove_fragments
from fieldfit.mesh.extract import evaluate_grid
from fieldfit.mesh.topology import is_watertight


def naive_closed_and_oriented(faces) -> bool:
    """Test oracle by loops: every directed edge once, and its reverse once."""
    directed = Counter()
    for a, b, c in np.asarray(faces).tolist():
        for e in ((a, b), (b, c), (c, a)):
            directed[e] += 1
    return all(n == 1 and directed.get((e[1], e[0]), 0) == 1 for e, n in directed.items())


def test_naive_oracle_itself():
    box = trimesh.creation.box()
    assert naive_closed_and_oriented(box.faces)
    assert not naive_closed_and_oriented(box.faces[1:])                                   # hole
    assert not naive_closed_and_oriented(np.vstack([box.faces[:1, ::-1], box.faces[1:]]))  # flipped


def assert_closed(verts, faces):
    assert len(faces) > 0
    assert np.isfinite(verts).all()
    assert naive_closed_and_oriented(faces)
    assert is_watertight(verts, faces)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0  # outward orientation
    return mesh


def grid(res, lo=-1.0, hi=1.0):
    xs = [np.linspace(lo, hi, r) for r in np.broadcast_to(res, (3,))]
    return np.meshgrid(*xs, indexing="ij")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_smooth_field_is_watertight(seed):
    vol = ndi.gaussian_filter(np.random.default_rng(seed).normal(size=(28, 28, 28)), 2.0)
    assert_closed(*marching_cubes_closed(vol / np.abs(vol).max()))


def test_rough_field_with_exact_level_values():
    # Quantized values: many nodes exactly at the level, the classic source of holes.
    vol = np.round(np.random.default_rng(3).normal(size=(16, 17, 18)) * 2) / 2
    assert (vol == 0).sum() > 500
    assert_closed(*marching_cubes_closed(vol))


def test_sphere_frame_and_outward_normals():
    x, y, z = grid((40, 48, 56))  # different sizes per axis catch swapped axes
    c = np.array([0.2, -0.1, 0.05])
    vol = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - 0.5
    v, f = marching_cubes_closed(vol)
    mesh = assert_closed(v, f)
    np.testing.assert_allclose((v.min(axis=0) + v.max(axis=0)) / 2, c, atol=0.01)
    np.testing.assert_allclose(np.linalg.norm(v - c, axis=1), 0.5, atol=0.01)
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.125, rel=0.02)
    outward = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center - c)
    assert (outward > 0).all()


def test_anisotropic_bounds_and_level():
    x, y, z = grid(33)
    vol = np.sqrt(x**2 + y**2 + z**2)  # level 0.5 at world radius 0.5 * scale per axis
    lo, hi = np.array([0.0, -2.0, 10.0]), np.array([2.0, 2.0, 11.0])
    v, f = marching_cubes_closed(vol, level=0.5, bounds=(lo, hi))
    assert_closed(v, f)
    unit = (v - (lo + hi) / 2) / ((hi - lo) / 2)  # back to the [-1,1] grid frame
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 0.5, atol=0.01)


def test_sphere_cut_by_domain_boundary_gets_a_cap():
    x, y, z = grid(48)
    vol = np.sqrt((x - 0.6) ** 2 + y**2 + z**2) - 0.7
    v, f = marching_cubes_closed(vol)
    mesh = assert_closed(v, f)
    assert v[:, 0].max() == pytest.approx(1.0, abs=1e-3)  # cap on the plane x = 1
    cap = np.pi * 0.3**2 * (3 * 0.7 - 0.3) / 3           # sphere part beyond x = 1
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.7**3 - cap, rel=0.02)


def test_everything_inside_gives_the_domain_box():
    v, f = marching_cubes_closed(-np.ones((6, 7, 8)), bounds=(-1, 1))
    mesh = assert_closed(v, f)
    assert mesh.volume == pytest.approx(8.0, rel=1e-2)


def test_no_surface_or_bad_input_raises():
    with pytest.raises(ValueError, match="no value below"):
        marching_cubes_closed(np.ones((8, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        marching_cubes_closed(np.full((8, 8, 8), np.nan))
    with pytest.raises(ValueError, match="shape"):
        marching_cubes_closed(np.ones((8, 8)))


def blobs(radii_and_centres, res=48):
    x, y, z = grid(res)
    d = [np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) - r for r, c in radii_and_centres]
    return np.minimum.reduce(d)


def test_two_blobs_closed_and_fragments_removed():
    vol = blobs([(0.3, (-0.5, 0, 0)), (0.3, (0.5, 0, 0)), (0.06, (0, 0.7, 0)), (0.05, (0, -0.7, 0.5))])
    v, f = marching_cubes_closed(vol)
    assert_closed(v, f)
    v2, f2, report = remove_fragments(v, f)
    assert report == dict(components_before=4, components_after=2, measure="volume")
    mesh = assert_closed(v2, f2)
    assert len(mesh.split(only_watertight=False)) == 2
    assert mesh.volume == pytest.approx(2 * 4 / 3 * np.pi * 0.027, rel=0.05)
    assert np.abs(v2[:, 1]).max() < 0.35  # both specks gone, both big blobs kept
    assert np.ptp(v2[:, 0]) > 1.5
    _, f1, report1 = remove_fragments(v, f, keep=1)
    assert report1["components_after"] == 1
    assert len(f1) < len(f2)


def test_remove_fragments_keeps_cavity_and_open_meshes_by_area():
    x, y, z = grid(40)
    r = np.sqrt(x**2 + y**2 + z**2)
    shell = np.maximum(r - 0.8, 0.5 - r)  # hollow ball: outer and inner (cavity) surfaces
    v, f = marching_cubes_closed(shell)
    _, _, report = remove_fragments(v, f)
    assert report["components_before"] == 2
    assert report["components_after"] == 2
    sheet = trimesh.creation.box().faces[:2]  # one open square
    tiny = sheet + 8
    verts = np.vstack([trimesh.creation.box().vertices, trimesh.creation.box().vertices * 1e-3])
    _, f3, report3 = remove_fragments(verts, np.vstack([sheet, tiny]))
    assert report3 == dict(components_before=2, components_after=1, measure="area")
    assert len(f3) == 2


def test_evaluate_grid_uses_ij_indexing_and_chunks():
    calls = []

    def f(p):
        calls.append(len(p))
        assert not torch.is_grad_enabled()
        return p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2]

    vol = evaluate_grid(f, resolution=(5, 6, 7), bounds=(0.0, 1.0), chunk=50)
    x, y, z = np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 6), np.linspace(0, 1, 7), indexing="ij")
    np.testing.assert_allclose(vol, x + 10 * y + 100 * z, atol=1e-4)
    assert max(calls) <= 50
    assert sum(calls) == 5 * 6 * 7
    calls.clear()
    vol2 = evaluate_grid(f, resolution=(5, 6, 7), bounds=(0.0, 1.0), chunk=10)  # cuts inside a slab
    np.testing.assert_array_equal(vol2, vol)
    assert max(calls) == 10
    assert sum(calls) == 5 * 6 * 7


def test_extract_sdf_mesh_sphere_module():
    class Sphere(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.tensor([0.1, 0.0, -0.2]))

        def forward(self, p):
            return ((p - self.c).norm(dim=-1) - 0.5)[:, None]  # [M,1] is accepted too

    mesh = extract_sdf_mesh(Sphere(), resolution=48, chunk=10_000)
    assert isinstance(mesh, trimesh.Trimesh)
    assert_closed(mesh.vertices, mesh.faces)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), [0.1, 0.0, -0.2], atol=0.01)


def test_extract_sdf_mesh_without_zero_crossing():
    with pytest.raises(ValueError, match="no zero crossing"):
        extract_sdf_mesh(lambda p: torch.ones(len(p)), resolution=16)
    with pytest.raises(ValueError, match="no zero crossing"):
        extract_sdf_mesh(lambda p: -torch.ones(len(p)), resolution=16)
    with pytest.raises(ValueError, match="NaN"):
        extract_sdf_mesh(lambda p: torch.full((len(p),), float("nan")), resolution=16)
