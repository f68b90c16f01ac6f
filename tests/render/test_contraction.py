"""render.contraction: the map, its inverse, the step schedule and marching through a contracted grid."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fieldfit.fields.base import FieldOutput
from fieldfit.render import OccupancyGrid
from fieldfit.render.contraction import BOX, Contraction, contracted_candidates, schedule
from fieldfit.render.march import MarchConfig, candidates, render, render_rays

C = Contraction((0.5, -0.25, 1.0), 2.0)


def test_inner_cube_is_kept_and_everything_lands_in_the_box():
    g = torch.Generator().manual_seed(0)
    inner = torch.as_tensor(C.centre) + (torch.rand(500, 3, generator=g) * 2 - 1) * C.radius * 0.999
    assert torch.allclose(C.apply(inner), (inner - torch.as_tensor(C.centre)) / C.radius, atol=1e-6)
    far = torch.randn(500, 3, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(0, 5, (500, 1), generator=g)
    z = C.apply(far)
    assert bool((z.abs() < 2.0).all())
    assert torch.allclose(C.inverse(z), far, rtol=1e-6, atol=1e-6)


def test_contraction_is_continuous_and_monotone_along_rays():
    o = torch.tensor([[0.5, -0.25, 1.0]], dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 0.3, -0.2]], dtype=torch.float64), dim=-1)
    t = torch.linspace(0, 1000, 200001, dtype=torch.float64)[:, None]
    z = C.apply(o + t * d)
    n = z.abs().amax(-1)
    assert bool((n[1:] >= n[:-1] - 1e-12).all())  # outward along a ray from the centre
    # no jump at the cube's surface: no contracted step is longer than an inner one (0.005 / radius)
    assert float((z[1:] - z[:-1]).norm(dim=-1).max()) <= 0.005 / C.radius * (1 + 1e-9)


def test_schedule_is_uniform_inside_then_grows_and_stays_finite():
    t0, t_in, step = torch.tensor([0.5]), torch.tensor([3.0]), 0.1
    k_in = torch.ceil((t_in - t0) / step)
    k = torch.arange(0, int(k_in) + 30, dtype=torch.float32)[None]  # the schedule reaches infinity at k_in + 30
    t = schedule(k, t0, t_in, k_in, step)[0]
    inside = t[: int(k_in) + 1]
    assert torch.allclose(inside[1:] - inside[:-1], torch.full((int(k_in),), 0.1), atol=1e-5)
    dt = t[1:] - t[:-1]
    assert bool((dt[int(k_in):] >= 0.1 - 1e-5).all())
    assert bool((dt[int(k_in) + 1:] > dt[int(k_in):-1]).all())
    assert math.isinf(float(schedule(torch.tensor([[int(k_in) + 31.0]]), t0, t_in, k_in, step)))  # T / step steps


class Ball(nn.Module):
    """A red ball (radius 0.4) at the contraction's centre, and blue solid far away (x > 30)."""

    def density(self, x):
        ball = 200.0 * torch.sigmoid(200.0 * (0.4 - (x - torch.as_tensor(C.centre, dtype=x.dtype)).norm(dim=-1)))
        wall = 50.0 * (x[:, 0] > 30.0).to(x.dtype)
        return ball + wall

    def forward(self, x, d):
        rgb = torch.where((x[:, :1] > 20.0), torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
        return FieldOutput(self.density(x), rgb)


def contracted_grid(field, res=64):
    grid = OccupancyGrid(BOX, resolution=res, dilation=1, contraction=C)
    grid.update(lambda x: field.density(x) * 0.05, 0)
    return grid


def test_grid_holds_the_ball_and_the_far_wall():
    field = Ball()
    grid = contracted_grid(field)
    assert bool(grid.occupied(torch.tensor([list(C.centre), [42.0, 0.0, 1.0]])).all())
    assert not bool(grid.occupied(torch.tensor([[C.centre[0] + 1.5, C.centre[1], C.centre[2]]])).any())
    assert 0.0 < grid.occupied_fraction() < 0.2


def test_candidates_cover_every_occupied_stretch_of_a_dense_march():
    """Every point of a fine uniform march that lies in an occupied cell is inside some candidate interval."""
    field = Ball()
    grid = contracted_grid(field)
    o = torch.tensor([[-3.0, -0.25, 1.0], [-3.0, 0.0, 1.2], [0.5, -0.25, 1.0]])
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.01, 0.0], [1.0, 0.0, 0.0]]), dim=-1)
    s = contracted_candidates(grid, C, o, d, 0.05, float("inf"), 0.02)
    s.validate()
    for r in range(3):
        t = torch.linspace(0.05, 60.0, 60000)
        occ = grid.occupied(o[r] + t[:, None] * d[r])
        mine = s.ray_indices == r
        ts, te = s.t_starts[mine], s.t_ends[mine]
        covered = ((t[:, None] >= ts[None]) & (t[:, None] <= te[None])).any(1)
        # a point can sit in an occupied cell while its interval's midpoint does not: allow one cell's worth
        missed = occ & ~covered
        assert float(missed.float().mean()) < 0.01
        assert bool((te > ts).all())
        assert bool((ts[1:] >= te[:-1] - 1e-4).all())


def test_render_sees_the_ball_and_the_wall_behind_the_contraction():
    field = Ball()
    grid = contracted_grid(field, 96)
    cfg = MarchConfig(step=0.01, near=0.05, far=math.inf)
    o = torch.tensor([[-3.0, -0.25, 1.0], [-3.0, 5.0, 1.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    out, _ = render(field, grid, o, d, torch.zeros(3), cfg)
    assert torch.allclose(out.rgb[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-2)  # the ball first
    assert torch.allclose(out.rgb[1], torch.tensor([0.0, 0.0, 1.0]), atol=5e-2)  # past it: the wall at x = 30
    rgb, opacity, depth, _ = render_rays(field, grid, o, d, torch.zeros(3), cfg, "cpu", mode="rounds")
    assert torch.allclose(rgb, out.rgb.clamp(0, 1), atol=1e-5)  # the rounds marcher, the same picture
    assert float(depth[1] / opacity[1]) == pytest.approx(33.0, abs=1.5)  # the wall at x = 30, 33 from the camera


def test_uncontracted_grid_marches_as_before():
    field = Ball()
    grid = OccupancyGrid([-1, -1, -1, 2, 1, 2], resolution=32)
    grid.update(lambda x: field.density(x) * 0.05, 0)
    o, d = torch.tensor([[-3.0, -0.25, 1.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    s = candidates(grid, o, d, MarchConfig(step=0.01, near=0.0))
    assert float(s.t_ends.max()) <= 5.0 + 1e-4  # ends at the box: no wall
    assert np.isfinite(s.t_starts.numpy()).all()


def test_rounds_and_packed_draw_the_same_contracted_picture():
    field = Ball()
    grid = contracted_grid(field, 64)
    cfg = MarchConfig(step=0.02, near=0.05, far=math.inf, early_stop=1e-4)
    g = torch.Generator().manual_seed(1)
    o = torch.tensor([-3.0, -0.25, 1.0]).expand(500, 3).contiguous()
    d = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.0]) + 0.6 * torch.randn(500, 3, generator=g), dim=-1)
    packed = render_rays(field, grid, o, d, torch.zeros(3), cfg, "cpu", mode="packed")
    rounds = render_rays(field, grid, o, d, torch.zeros(3), cfg, "cpu", mode="rounds")
    for a, b in zip(packed[:3], rounds[:3], strict=True):
        assert torch.allclose(a, b, atol=2e-4, rtol=1e-4)
    assert float(packed[1].min()) < 0.5 < float(packed[1].max())  # some rays miss the ball and the wall
