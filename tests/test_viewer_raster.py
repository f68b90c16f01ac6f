"""The viewer's z-buffer rasterizer against a per-pixel double loop, and its conventions."""

import numpy as np
import torch

from fieldfit.viewer.camera import look_at
from fieldfit.viewer.raster import project, rasterize


def _naive(verts, faces, c2w, intr, w, h):
    """Nearest face per pixel centre by brute force (loops over pixels and faces)."""
    px, py, z = (t.double().numpy() for t in project(verts.double(), torch.as_tensor(c2w).double(), *intr))
    face = -np.ones((h, w), np.int64)
    depth = np.full((h, w), np.inf)
    for i in range(h):
        for j in range(w):
            for f, (a, b, c) in enumerate(faces.tolist()):
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


def test_matches_a_double_loop():
    rng = np.random.default_rng(0)
    verts = torch.tensor(rng.uniform(-1, 1, (30, 3)), dtype=torch.float32)
    faces = torch.tensor(rng.integers(0, 30, (25, 3)), dtype=torch.int64)
    c2w = look_at([0.3, 0.4, 4.0], [0, 0, 0], [0, 1, 0])
    intr = (30.0, 30.0, 12.0, 10.0)
    frags = rasterize(verts, faces, c2w, intr, 24, 20, max_candidates=64)  # small chunks on purpose
    face, depth = _naive(verts, faces, c2w, intr, 24, 20)
    agree = frags.face.numpy() == face
    assert agree.mean() > 0.97, agree.mean()  # pixel centres exactly on an edge may go either way
    both = agree & (face >= 0)
    np.testing.assert_allclose(frags.depth.numpy()[both], depth[both], rtol=1e-4)
    assert (face >= 0).sum() > 50  # the test covers something


def test_sphere_depth_normals_and_culling():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=3)
    verts = torch.tensor(s.vertices, dtype=torch.float32)
    faces = torch.tensor(s.faces, dtype=torch.int64)
    c2w = look_at([0, 0, 3], [0, 0, 0], [0, 1, 0])
    for cull in (False, True):
        frags = rasterize(verts, faces, c2w, (50.0, 50.0, 32.0, 32.0), 64, 64, cull_back=cull)
        assert abs(float(frags.depth[32, 32]) - 2.0) < 0.01  # the front of the unit sphere, culled or not
        assert np.allclose(frags.bary[frags.mask].sum(-1).numpy(), 1.0, atol=1e-5)
        assert not frags.mask[0, 0] and frags.face[0, 0] == -1 and torch.isinf(frags.depth[0, 0])
    # a camera inside-out (culling the front faces) sees nothing at the centre: culling is on the back
    flipped = rasterize(verts, faces[:, [0, 2, 1]], c2w, (50.0, 50.0, 32.0, 32.0), 64, 64, cull_back=True)
    assert abs(float(flipped.depth[32, 32]) - 4.0) < 0.01
