"""render.estimators: occupancy grid around an analytic sphere, traversal vs a naive loop, uniform sampler."""

import math

import pytest
import torch

from fieldfit.cuda._torch_ref import traverse_occupancy_ref
from fieldfit.render.estimators import OccupancyGrid, UniformSampler
from fieldfit.render.rays import image_rays, ray_aabb

CENTER = torch.tensor([0.1, -0.05, 0.02])
RADIUS = 0.3
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
G = 32
STEP = 0.02


def sphere_density(x, value=50.0):
    return ((x - CENTER).norm(dim=-1) < RADIUS).float() * value


def camera_rays(n_side=24):
    # a camera at distance 2.5 on a tilted axis looking at the sphere centre
    eye = CENTER + torch.tensor([0.8, 1.0, 2.2])
    fwd = (CENTER - eye) / (CENTER - eye).norm()
    right = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, fwd)
    c2w = torch.stack([right, up, -fwd, eye], dim=1)
    return image_rays(n_side, n_side, 80.0, 80.0, n_side / 2, n_side / 2, c2w)


def sphere_entry(o, d):
    oc = o - CENTER
    b = (oc * d).sum(-1)
    disc = b * b - (oc * oc).sum(-1) + RADIUS**2
    hit = disc > 0
    return -b - disc.clamp_min(0).sqrt(), -b + disc.clamp_min(0).sqrt(), hit


@pytest.fixture(scope="module")
def grid():
    torch.manual_seed(0)
    g = OccupancyGrid(AABB, resolution=G)
    for step in range(3):
        g.update(sphere_density, step=step)
    return g


def _cell_of(x):
    return ((x - AABB[0]) / (AABB[1] - AABB[0]) * G).floor().long().clamp(0, G - 1)


def test_grid_is_all_on_before_update():
    g = OccupancyGrid(AABB, resolution=8)
    assert g.binary.all()
    assert g.occupied_fraction() == 1.0
    o, d = camera_rays(6)
    s = g.sample(o, d, 0.0, 1e9, STEP)
    tn, tf, hit = ray_aabb(o, d, AABB)
    expected = torch.ceil((tf - tn) / STEP).long()
    assert torch.equal(s.counts(), expected)  # the full march of every ray


def test_update_marks_only_the_sphere(grid):
    frac = grid.occupied_fraction()
    sphere_frac = 4 / 3 * math.pi * RADIUS**3 / 8
    assert sphere_frac < frac < 5 * sphere_frac
    # occupied cells lie within the sphere grown by the dilation and a cell diagonal
    cell = 2.0 / G
    centers = AABB[0] + (grid.cell_indices(grid.binary.reshape(-1).nonzero().squeeze(-1)) + 0.5) * cell
    assert ((centers - CENTER).norm(dim=-1) < RADIUS + 2 * math.sqrt(3) * cell).all()


def test_update_without_dilation_is_exact_for_inner_and_outer_cells():
    torch.manual_seed(1)
    g = OccupancyGrid(AABB, resolution=G, dilation=0)
    g.update(sphere_density, step=0)
    cell = 2.0 / G
    ijk = g.cell_indices(torch.arange(G**3))
    centers = AABB[0] + (ijk + 0.5) * cell
    dist = (centers - CENTER).norm(dim=-1)
    half_diag = math.sqrt(3) / 2 * cell
    b = g.binary.reshape(-1)
    assert b[dist < RADIUS - half_diag].all()  # cells wholly inside: always found
    assert not b[dist > RADIUS + half_diag].any()  # cells wholly outside: never marked


def test_samples_only_in_occupied_cells_and_near_sphere(grid):
    o, d = camera_rays()
    s = grid.sample(o, d, 0.0, 1e9, STEP)
    s.validate()
    x = s.positions(o, d)
    i, j, k = _cell_of(x).unbind(-1)
    assert grid.binary[i, j, k].all()
    assert ((x - CENTER).norm(dim=-1) < RADIUS + 2 * math.sqrt(3) * 2.0 / G + STEP).all()
    # far fewer samples than marching the whole box
    full = OccupancyGrid(AABB, resolution=G).sample(o, d, 0.0, 1e9, STEP)
    assert s.n_samples < 0.5 * full.n_samples


def test_never_skips_the_sphere(grid):
    o, d = camera_rays()
    t_in, t_out, hit = sphere_entry(o, d)
    assert hit.sum() > 50
    s = grid.sample(o, d, 0.0, 1e9, STEP)
    ri = s.ray_indices
    # every ray that hits the sphere has a sample containing its entry point
    covers = (s.t_starts <= t_in[ri]) & (t_in[ri] <= s.t_ends)
    got = torch.zeros(s.n_rays, dtype=torch.bool).index_put_((ri,), covers, accumulate=True)
    assert got[hit].all()
    # stronger: every interval of the full march whose midpoint is inside the sphere is kept
    full = OccupancyGrid(AABB, resolution=G).sample(o, d, 0.0, 1e9, STEP)
    inside = (full.positions(o, d) - CENTER).norm(dim=-1) < RADIUS
    want = set(zip(full.ray_indices[inside].tolist(), full.t_starts[inside].tolist(), strict=True))
    have = set(zip(ri.tolist(), s.t_starts.tolist(), strict=True))
    assert want <= have


def test_early_termination_drops_samples_behind_surface(grid):
    o, d = camera_rays()
    t_in, _, hit = sphere_entry(o, d)
    opaque = lambda x: sphere_density(x, value=1e4)  # noqa: E731 - a one-line density for grid.sample
    s = grid.sample(o, d, 0.0, 1e9, STEP, density_fn=opaque, early_stop_eps=1e-4)
    plain = grid.sample(o, d, 0.0, 1e9, STEP)
    ri = s.ray_indices
    assert s.n_samples < plain.n_samples
    # nothing survives more than one step behind the entry point of a ray that hits
    behind = hit[ri] & (s.t_starts > t_in[ri] + STEP)
    assert not behind.any()
    # rays hitting the sphere keep their surface sample
    assert (s.counts()[hit] > 0).all()


def test_alpha_threshold_drops_empty_samples(grid):
    o, d = camera_rays()
    s = grid.sample(o, d, 0.0, 1e9, STEP, density_fn=sphere_density, early_stop_eps=0.0, alpha_thre=1e-3)
    assert s.n_samples > 0
    assert ((s.positions(o, d) - CENTER).norm(dim=-1) < RADIUS).all()


def test_near_far_and_stratified(grid):
    o, d = camera_rays(10)
    torch.manual_seed(2)
    s = grid.sample(o, d, 2.4, 2.6, STEP, stratified=True)
    s.validate()
    assert (s.t_starts >= 2.4).all()
    assert (s.t_ends <= 2.6 + 1e-6).all()
    x = s.positions(o, d)
    i, j, k = _cell_of(x).unbind(-1)
    assert grid.binary[i, j, k].all()
    # the jitter differs between rays
    first = s.t_starts[s.packed_info()[:, 0][s.counts() > 0]]
    assert first.unique().numel() > 1


def test_subset_update_after_warmup():
    torch.manual_seed(3)
    g = OccupancyGrid(AABB, resolution=16, warmup_steps=1, dilation=0)
    g.update(sphere_density, step=0)
    before = g.density.clone()
    g.update(lambda x: torch.zeros(x.shape[0]), step=5, decay=0.5, n_cells=100)
    changed = (g.density != before).sum()
    assert 0 < changed <= 100
    assert (g.density <= before).all()


def test_state_dict_round_trip(grid):
    g2 = OccupancyGrid(AABB, resolution=G)
    g2.load_state_dict(grid.state_dict())
    assert torch.equal(g2.binary, grid.binary)
    assert torch.equal(g2.density, grid.density)
    assert set(grid.state_dict()) == {"aabb", "density", "binary"}


def naive_traverse(o, d, t_min, t_max, binary, aabb, step, jitter):
    res = binary.shape[0]
    out = []
    for r in range(o.shape[0]):
        j = float(jitter[r]) if jitter is not None else 0.0
        for k in range(10_000):
            t = float(t_min[r] + (k + j) * step)
            if t >= float(t_max[r]):
                break
            te = min(t + step, float(t_max[r]))
            x = o[r] + d[r] * (t + te) / 2
            c = ((x - aabb[0]) / (aabb[1] - aabb[0]) * res).floor().long()
            if ((c >= 0) & (c < res)).all() and binary[c[0], c[1], c[2]]:
                out.append((r, t, te))
    return out


@pytest.mark.parametrize("with_jitter", [False, True])
def test_traverse_matches_naive_loop(with_jitter):
    gen = torch.Generator().manual_seed(4)
    binary = torch.rand(6, 6, 6, generator=gen) < 0.3
    aabb = torch.tensor([[-1.0, -0.5, 0.0], [1.0, 1.0, 2.0]], dtype=torch.float64)
    o = torch.randn(25, 3, generator=gen, dtype=torch.float64) * 3
    target = aabb[0] + torch.rand(25, 3, generator=gen, dtype=torch.float64) * (aabb[1] - aabb[0])
    d = target - o  # most rays cross the box; t in units of |d|
    tn, tf, hit = ray_aabb(o, d, aabb)
    jitter = torch.rand(25, generator=gen, dtype=torch.float64) if with_jitter else None
    step = 0.013
    ts, te, ri = traverse_occupancy_ref(o, d, tn, tf, binary, aabb, step, 200, jitter)
    ref = naive_traverse(o, d, tn, tf, binary, aabb, step, jitter)
    assert len(ref) > 20
    assert ri.tolist() == [r for r, _, _ in ref]
    torch.testing.assert_close(ts, torch.tensor([t for _, t, _ in ref], dtype=torch.float64))
    torch.testing.assert_close(te, torch.tensor([t for _, _, t in ref], dtype=torch.float64))


def test_uniform_sampler():
    o, d = torch.zeros(5, 3), torch.ones(5, 3)
    near, far = torch.tensor([0.0, 1.0, 2.0, 0.5, 0.1]), 4.0
    s = UniformSampler(8).sample(o, d, near, far)
    assert s.n_samples == 40
    assert torch.equal(s.counts(), torch.full((5,), 8))
    torch.testing.assert_close(s.deltas.view(5, 8), ((far - near) / 8)[:, None].expand(5, 8))
    torch.manual_seed(5)
    st = UniformSampler(8, stratified=True).sample(o, d, near, far)
    ts, te = st.t_starts.view(5, 8), st.t_ends.view(5, 8)
    torch.testing.assert_close(ts[:, 0], near)
    torch.testing.assert_close(te[:, -1], torch.full((5,), far))
    assert torch.equal(ts[:, 1:], te[:, :-1])
    assert (te > ts).all()
    assert not torch.allclose(st.t_starts, s.t_starts)
