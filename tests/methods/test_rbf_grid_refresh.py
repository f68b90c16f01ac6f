"""rbf radiance: in scenes without alpha the occupancy grid forgets what the field no longer holds.

A partial refresh keeps max(0.95 x old, new) in the cells it draws, so density a field had early in a fit (fog it
has since cleared) stays in the grid for thousands of steps (fern, 2000 steps: 75% of the cells occupied, 42% by
a fresh look, almost none of them in front of the surfaces; 33 of the 47 samples a training ray evaluated were in
such cells). With ``grid_refresh`` > 0 the full refreshes (``grid_full``, then every ``grid_refresh`` steps)
evaluate every cell afresh; alpha scenes keep the decaying grid (``config.GRID_REFRESH``).
"""

import math
from types import SimpleNamespace

import numpy as np
from torch import nn

from fieldfit.methods.rbf.config import GRID_REFRESH, RadianceConfig
from fieldfit.methods.rbf.radiance import Stepper, build_model, param_groups, run_config
from fieldfit.optim import make_adam, seed_everything
from fieldfit.scenes.inputs import Input
from fieldfit.tasks.radiance import PixelStore, load_radiance_scene

RADIUS = 0.3


class Ball(nn.Module):
    """A field whose density is 1e3 inside a ball at the box's centre and 0 elsewhere."""

    def __init__(self, aabb):
        super().__init__()
        self.centre = aabb.mean(0)

    def density(self, x):
        return 1e3 * ((x - self.centre.to(x.dtype)).norm(dim=-1) < RADIUS).to(x.dtype)


def stepper_on_ball(**given):
    seed_everything(0)
    inp = Input("radiance", None, "blocks", builtin="blocks")
    scene = load_radiance_scene(inp, 2, 8)
    cfg = RadianceConfig.for_scene(scene, "cpu", levels=2, max_res=32, **given)
    model, march = build_model(run_config(scene, inp, cfg, 0), "cpu")
    opt = make_adam(param_groups(model, cfg))
    model.field = Ball(model.grid.aabb)  # only the grid's refreshes are stepped here
    stepper = Stepper(model, opt, PixelStore(scene, scene.split("train")), march, cfg, "cpu", 0)
    return stepper, model.grid


def ball_fraction(grid) -> float:
    """The share of the grid's cells whose centre lies in the ball (what a fresh look finds, within a cell)."""
    extent = (grid.aabb[1] - grid.aabb[0]).prod().item()
    return 4 / 3 * math.pi * RADIUS**3 / extent


def test_fresh_refreshes_by_scene():
    for ndc, alpha, want in ((True, False, GRID_REFRESH), (False, False, GRID_REFRESH), (False, True, 0)):
        scene = SimpleNamespace(ndc=ndc, has_alpha=alpha, aabb=np.array([[-1.0] * 3, [1.0] * 3]))
        cfg = RadianceConfig(contract="off").with_device("cpu", scene).with_scene(scene)
        assert cfg.grid_refresh == want, (ndc, alpha)
    scene = SimpleNamespace(ndc=False, has_alpha=True, aabb=np.array([[-1.0] * 3, [1.0] * 3]))
    assert RadianceConfig(contract="off", grid_refresh=256).with_scene(scene).grid_refresh == 256
    assert RadianceConfig.from_dict({}).grid_refresh == 0  # runs saved before it: the decaying grid


def test_full_refreshes_forget_stale_density():
    stepper, grid = stepper_on_ball(grid_refresh=GRID_REFRESH)
    cfg = stepper.cfg
    last = max(cfg.grid_full)
    truth = ball_fraction(grid)
    assert cfg.grid_refresh > 0
    assert truth < 0.2
    due = [last, last + cfg.grid_refresh, last + 3 * cfg.grid_refresh]
    partial = [last + cfg.grid_every, last + cfg.grid_refresh + cfg.grid_every]
    assert all(i % cfg.grid_every == 0 for i in partial)
    for i in due + partial:
        grid.density.fill_(1e3)  # a grid that saw fog everywhere
        grid.binary.fill_(True)
        stepper._grid(i)
        occupied = grid.occupied_fraction()
        if i in due:  # every cell evaluated afresh: only the ball's cells (and those it cuts) stay
            assert 0.5 * truth < occupied < 2.5 * truth, (i, occupied, truth)
        else:  # a partial refresh decays the cells it draws: the fog stays
            assert occupied > 0.9, (i, occupied)


def test_without_refreshes_the_grid_decays_as_before():
    stepper, grid = stepper_on_ball()  # blocks has alpha: grid_refresh 0
    assert stepper.cfg.grid_refresh == 0
    last = max(stepper.cfg.grid_full)
    for i in (last, last + GRID_REFRESH):  # a full evaluation that keeps max(0.95 old, new); a partial one
        grid.density.fill_(1e3)
        grid.binary.fill_(True)
        stepper._grid(i)
        assert grid.occupied_fraction() > 0.9, i
        if i == last:  # every cell decayed once, none replaced
            assert math.isclose(float(grid.density.min()), 1e3 * 0.95, rel_tol=1e-6)


def test_density_is_replaced_not_kept_by_a_full_refresh():
    stepper, grid = stepper_on_ball(grid_refresh=GRID_REFRESH)
    grid.density.fill_(7.0)
    stepper._grid(max(stepper.cfg.grid_full))
    inside = 1e3 * stepper.march.step  # one step's opacity in the ball
    values = grid.density.unique()
    assert len(values) == 2, values[:5]
    assert values[0] == 0
    assert math.isclose(float(values[1]), inside, rel_tol=1e-5), (values, inside)
