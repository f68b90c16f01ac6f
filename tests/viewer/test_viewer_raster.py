"""The mesh views' z-buffer: render/'s rasterizer with one layer (``rasterize(k=1)``), against a per-pixel double
loop; its K = 1 path (``cuda._raster_ref``) against the K-buffer's nearest layer; and the views' conventions."""

import numpy as np
import pytest
import torch

from fieldfit.cuda._raster_ref import raster_faces_ref
from fieldfit.render.camera import Camera, look_at
from fieldfit.render.raster import project, rasterize
from fieldfit.viewer.views.mesh import Mesh, Raster


def _naive(verts, faces, cam):
    """Nearest face per pixel centre by brute force (loops over pixels and faces)."""
    screen = project(verts.double(), cam).numpy()
    px, py, z = screen[:, 0], screen[:, 1], screen[:, 2]
    h, w = cam.height, cam.width
    face = -np.ones((h, w), np.int64)
    depth = np.full((h, w), np.inf)
    for i in range(h):
        for j in range(w):
            for f, (a, b, c) in enumerate(faces.tolist()):
                if min(z[a], z[b], z[c]) <= 1e-3:
                    continue
                tri = np.array([[px[a], py[a]], [px[b], py[b]], [px[c], py[c]]])
                m = np.array([tri[1] - tri[0], tri[2] - tri[0]]).T
                if abs(np.linalg.det(m)) < 1e-12:
                    continue
                l1, l2 = np.linalg.solve(m, np.array([j + 0.5, i + 0.5]) - tri[0])
                bary = np.array([1 - l1 - l2, l1, l2])
                if (bary < -1e-9).any():
                    continue
                d = 1.0 / (bary / z[[a, b, c]]).sum()
                if d < depth[i, j]:
                    face[i, j], depth[i, j] = f, d
    return face, depth


def _soup(seed, n=25, verts=30):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.uniform(-1, 1, (verts, 3)), dtype=torch.float32),
            torch.tensor(rng.integers(0, verts, (n, 3)), dtype=torch.int64))


def test_one_layer_matches_a_double_loop():
    verts, faces = _soup(0)
    cam = Camera(look_at([0.3, 0.4, 4.0], [0, 0, 0], [0, 1, 0]), 30.0, 30.0, 12.0, 10.0, 24, 20)
    frags = rasterize(verts, faces, cam, k=1)
    assert frags.face.shape == (24 * 20, 1)
    assert frags.bary.shape == (24 * 20, 1, 3)
    face, depth = _naive(verts, faces, cam)
    got = frags.face[:, 0].reshape(20, 24).numpy()
    agree = got == face
    assert agree.mean() > 0.97, agree.mean()  # pixel centres exactly on an edge may go either way
    both = agree & (face >= 0)
    np.testing.assert_allclose(frags.depth[:, 0].reshape(20, 24).numpy()[both], depth[both], rtol=1e-4)
    assert (face >= 0).sum() > 50  # the test covers something


def _grid_tris(offset: float, z=2.0):
    """Quads of 4 x 4 pixels whose corners sit on pixel centres (offset 0.5) or edges, split both ways: every
    pixel centre on a shared edge is a tie the coverage rule must settle the same way in both paths."""
    xs = np.arange(0, 33, 4.0) + offset
    tris = []
    for i in range(len(xs) - 1):
        for j in range(len(xs) - 1):
            a, b, c, d = (xs[i], xs[j]), (xs[i + 1], xs[j]), (xs[i + 1], xs[j + 1]), (xs[i], xs[j + 1])
            tris += [[a, b, c], [a, c, d]] if (i + j) % 2 else [[a, b, d], [b, c, d]]
    return torch.tensor([[[x, y, z] for x, y in t] for t in tris])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_z_buffer_path_gives_the_k_buffers_nearest_layer(dtype):
    """raster_faces_ref(k=1) takes its own z-buffer path; its ids must be those of the K-buffer's first layer."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for _ in range(4):
        c = torch.rand(150, 1, 3, generator=g, dtype=dtype) * torch.tensor([40, 30, 3], dtype=dtype) + 0.5
        cases.append((c + torch.randn(150, 3, 3, generator=g, dtype=dtype) * torch.tensor([5, 5, 0.5], dtype=dtype),
                      40, 30))
    for offset in (0.0, 0.5):
        grid = _grid_tris(offset).to(dtype)
        tilted = grid.clone()
        tilted[..., 2] = 1.0 + 0.01 * tilted[..., 0]  # crosses the flat grid: depth ties along a line
        cases.append((torch.cat([grid, grid.flip(0), tilted]), 32, 32))  # duplicates: ties on depth, not only edges
    covered = 0
    for tri, w, h in cases:
        for chunk in (1 << 21, 1500):  # one chunk, and several
            one = raster_faces_ref(tri, w, h, 1, max_candidates=chunk)
            layers = raster_faces_ref(tri, w, h, 3, max_candidates=chunk)
            assert one.shape == (w * h, 1)
            assert torch.equal(one[:, 0], layers[:, 0])
            covered += int((one >= 0).sum())
    assert covered > 5000


def test_view_fragments_sphere_depth_and_culling():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3)
    mesh = Mesh(s.vertices, s.faces)
    cam = Camera(look_at([0, 0, 3], [0, 0, 0], [0, 1, 0]), 50.0, 50.0, 32.0, 32.0, 64, 64)
    for cull in (False, True):
        frags = Raster(mesh, cam, near=1e-3, cull_back=cull)
        assert frags.face.shape == (64, 64)
        assert frags.bary.shape == (64, 64, 3)
        assert frags.depth.shape == (64, 64)
        assert abs(float(frags.depth[32, 32]) - 2.0) < 0.01  # the front of the unit sphere, culled or not
        assert np.allclose(frags.bary[frags.mask].sum(-1).numpy(), 1.0, atol=1e-5)
        assert not frags.mask[0, 0]
        assert frags.face[0, 0] == -1
        assert torch.isinf(frags.depth[0, 0])
    # faces turned inside out, culled: the camera sees the far side's inner faces at the centre
    flipped = Mesh(s.vertices, s.faces[:, [0, 2, 1]])
    assert abs(float(Raster(flipped, cam, near=1e-3, cull_back=True).depth[32, 32]) - 4.0) < 0.01
    empty = Raster(Mesh.empty(), cam, near=1e-3, cull_back=True)
    assert not empty.mask.any()
    assert torch.isinf(empty.depth).all()
