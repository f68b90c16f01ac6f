"""render.march and render.termination: the marchers, the one early-termination rule, the distortion loss."""

import pytest
import torch
from torch import nn

from fieldfit.cuda import composite_packed
from fieldfit.fields.base import FieldOutput
from fieldfit.render import OccupancyGrid, RaySamples
from fieldfit.render.losses import distortion_loss
from fieldfit.render.march import MarchConfig, candidates, march, march_mode, render, render_rays, render_rounds
from fieldfit.render.termination import keep_batched, terminate

CENTRE = torch.tensor([0.1, -0.1, 0.05])


class Sphere(nn.Module):
    """Analytic radiance field: a dense red ball of radius 0.4 (a soft shell of density)."""

    def density(self, x):
        return 200.0 * torch.sigmoid(200.0 * (0.4 - (x - CENTRE).norm(dim=-1)))

    def forward(self, x, d):
        return FieldOutput(self.density(x), torch.tensor([1.0, 0.0, 0.0]).expand(x.shape[0], 3))


class Model(nn.Module):
    """A field and its occupancy grid (what the marchers take)."""

    def __init__(self, field, res=32, dilation=1):
        super().__init__()
        self.field = field
        self.grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=res, dilation=dilation)
        self.grid.update(lambda x: self.field.density(x) * 0.02, 0)


def sphere_model(res=32):
    return Model(Sphere(), res)


def rays(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 3.0]).expand(n, 3).contiguous()
    target = (torch.rand(n, 3, generator=g) - 0.5) * 1.4
    d = target - o
    return o, d / d.norm(dim=-1, keepdim=True)


def naive_keep(model, o, d, cand: RaySamples, early_stop, alpha_thre):
    """The rule from first principles: every candidate's density, the transmittance before it from a full
    compositing scan, then the two thresholds."""
    sigma = model.field.density(cand.positions(o, d)).double()
    t_s, t_e = cand.t_starts.double(), cand.t_ends.double()
    _, trans = composite_packed(sigma, t_s, t_e, cand.ray_indices, cand.n_rays)
    keep = trans >= early_stop if early_stop > 0 else torch.ones_like(trans, dtype=torch.bool)
    if alpha_thre > 0:
        keep &= (1.0 - torch.exp(-sigma * (t_e - t_s))) >= alpha_thre
    return keep


@pytest.mark.parametrize("grow", [1, 2])  # rounds of a fixed size (CPU) or doubling (GPU)
@pytest.mark.parametrize(("early_stop", "alpha_thre"), [(1e-4, 0.0), (1e-3, 1e-3), (0.0, 1e-2)])
def test_termination_keeps_what_the_rule_keeps(early_stop, alpha_thre, grow):
    model = sphere_model()
    o, d = rays()
    cfg = MarchConfig(step=0.01, early_stop=early_stop, alpha_thre=alpha_thre)
    cand = candidates(model.grid, o, d, cfg)
    ours = terminate(model.field.density, o, d, cand, early_stop, alpha_thre, per_round=4, grow=grow)
    keep = naive_keep(model, o, d, cand, early_stop, alpha_thre)
    torch.testing.assert_close(ours.t_starts, cand.t_starts[keep])
    torch.testing.assert_close(ours.ray_indices, cand.ray_indices[keep])
    assert ours.n_samples < (0.5 if early_stop > 0 else 1.0) * cand.n_samples
    # the estimator's own sample() goes through the same termination
    near, far = torch.zeros(len(o)), torch.full((len(o),), 10.0)
    full = model.grid.sample(o, d, near, far, cfg.step)
    ref = model.grid.sample(o, d, near, far, cfg.step, density_fn=model.field.density,
                            early_stop_eps=early_stop, alpha_thre=alpha_thre)
    torch.testing.assert_close(ref.t_starts, full.t_starts[naive_keep(model, o, d, full, early_stop, alpha_thre)])
    # march = the same, on the box of the occupied cells
    assert march(model.field, model.grid, o, d, cfg).n_samples == pytest.approx(ours.n_samples, rel=0.05)


def test_keep_batched_is_the_rule_on_a_round():
    g = torch.Generator().manual_seed(3)
    tau = torch.rand(5, 6, generator=g, dtype=torch.float64) * 2
    valid = torch.arange(6)[None] < torch.tensor([6, 3, 0, 1, 5])[:, None]
    tau = torch.where(valid, tau, 0.0)
    before = torch.tensor([0.0, 1.0, 0.5, 8.0, 0.2], dtype=torch.float64)
    for early_stop, alpha_thre in ((1e-2, 0.0), (0.05, 0.3), (0.0, 0.5)):
        got = keep_batched(tau, valid, before, early_stop, alpha_thre)
        for r in range(5):
            acc = float(before[r])
            for k in range(6):
                want = bool(valid[r, k]) and (early_stop <= 0 or torch.exp(torch.tensor(-acc)) >= early_stop)
                if alpha_thre > 0:
                    want = want and (1 - torch.exp(-tau[r, k])) >= alpha_thre
                assert bool(got[r, k]) == bool(want), (r, k, early_stop, alpha_thre)
                acc += float(tau[r, k])
        torch.testing.assert_close(before, torch.tensor([0.0, 1.0, 0.5, 8.0, 0.2], dtype=torch.float64))


def test_render_sees_the_ball_and_skips_empty_space():
    model = sphere_model()
    o, d = rays()
    rgb, opacity, depth, n = render_rays(model.field, model.grid, o, d, torch.ones(3), MarchConfig(step=0.01), "cpu")
    oc = o - CENTRE
    b = (oc * d).sum(-1)
    hit = (b * b - (oc * oc).sum(-1) + 0.36**2) > 0  # well inside the radius 0.4
    miss = (b * b - (oc * oc).sum(-1) + 0.45**2) < 0  # well outside
    assert bool((opacity[hit] > 0.99).all())
    assert bool((opacity[miss] < 0.01).all())
    torch.testing.assert_close(rgb[hit], torch.tensor([1.0, 0.0, 0.0]).expand(int(hit.sum()), 3), atol=0.02, rtol=0)
    assert n / len(o) < 40  # a ray crossing the box would take 200 steps of 0.01
    t = depth[hit] / opacity[hit]  # the expected distance: about where the rays enter the ball
    assert bool(((t > 2.3) & (t < 3.0)).all())


class Cloud(Sphere):
    """A translucent ball with structure: density and colour vary along every ray."""

    def density(self, x):
        r = (x - CENTRE).norm(dim=-1)
        return 8.0 * (1.5 + torch.sin(9.0 * x).sum(-1)).clamp_min(0) * (r < 0.5)

    def forward(self, x, d):
        return FieldOutput(self.density(x), torch.sigmoid(4.0 * x + d))


@pytest.mark.parametrize("first", [1, 8])  # one sample a round (many rounds) or 8, 16, 16, ...
@pytest.mark.parametrize(("early_stop", "alpha_thre"), [(1e-4, 0.0), (1e-2, 2e-2), (0.0, 0.0)])
def test_render_rounds_matches_render(early_stop, alpha_thre, first):
    model = Model(Cloud(), 24, dilation=0)
    assert 0.02 < model.grid.occupied_fraction() < 0.5  # carved: rounds skip empty cells
    o, d = rays(400)
    cfg = MarchConfig(step=0.01, early_stop=early_stop, alpha_thre=alpha_thre)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref, samples = render(model.field, model.grid, o, d, bg, cfg)
    most = 16 if first > 1 else 1  # 8, 16, 16, ... or one sample every round
    rgb, opacity, depth, evals = render_rounds(model.field, model.grid, o, d, bg, cfg, first=first, most=most)
    assert 0.05 < float(ref.opacity.mean()) < 0.95
    assert float(ref.opacity.max()) > 0.99
    torch.testing.assert_close(rgb, ref.rgb, atol=2e-5, rtol=0)
    torch.testing.assert_close(opacity, ref.opacity, atol=2e-5, rtol=0)
    torch.testing.assert_close(depth, ref.depth, atol=1e-4, rtol=0)
    every = march(model.field, model.grid, o, d, MarchConfig(step=cfg.step, early_stop=0.0)).n_samples
    assert samples.n_samples <= evals <= every
    if first == 1 and alpha_thre == 0:  # one sample a round: none evaluated past an opaque point
        assert evals == samples.n_samples


def test_render_modes_give_one_image(monkeypatch):
    model = sphere_model()
    o, d = rays()
    cfg = MarchConfig(step=0.01, early_stop=1e-3, alpha_thre=1e-3)
    a = render_rays(model.field, model.grid, o, d, torch.ones(3), cfg, "cpu", chunk=128, mode="packed")
    b = render_rays(model.field, model.grid, o, d, torch.ones(3), cfg, "cpu", chunk=128, mode="rounds")
    for x, y in zip(a[:3], b[:3], strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    assert march_mode("cpu") == "rounds"
    assert march_mode("cpu", model.field) == "rounds"
    # a CPU marches packed where the traversal skips empty blocks: a small object's grid, not a full one
    small = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=32)
    small.binary.zero_()
    small.binary[14:18, 14:18, 14:18] = True
    assert march_mode("cpu", model.field, small) == "packed"
    assert march_mode("cpu", model.field, OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=32)) == "rounds"
    monkeypatch.setenv("FIELDFIT_MARCH", "rounds")
    assert march_mode("cpu", model.field, small) == "rounds"
    assert march_mode("cuda") == "rounds"
    monkeypatch.setenv("FIELDFIT_MARCH", "fast")
    with pytest.raises(ValueError, match="FIELDFIT_MARCH"):
        march_mode("cpu")


def test_distortion_loss_matches_a_naive_double_loop():
    g = torch.Generator().manual_seed(0)
    ts = torch.sort(torch.rand(3, 5, generator=g) * 4, dim=-1).values
    te = ts + 0.1 + torch.rand(3, 5, generator=g) * 0.2
    keep = torch.rand(3, 5, generator=g) > 0.3
    s = RaySamples.from_batched(ts, te, keep)
    w = torch.rand(s.n_samples, generator=g, dtype=torch.float64).requires_grad_(True)
    total = 0.0
    for r in range(3):
        sel = s.ray_indices == r
        ww, m, dd = w[sel], s.t_mids[sel].double(), s.deltas[sel].double()
        total = total + (ww[:, None] * ww[None] * (m[:, None] - m[None]).abs()).sum() + (ww * ww * dd).sum() / 3
    torch.testing.assert_close(distortion_loss(w, s), total / 3)
    distortion_loss(w, s).backward()
    assert torch.isfinite(w.grad).all()
    assert float(distortion_loss(torch.zeros(0), RaySamples.empty(2))) == 0.0
