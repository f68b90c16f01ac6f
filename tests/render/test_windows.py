"""render.windows: the packed march a window at a time gives terminate(candidates)'s samples, bit for bit."""

import pytest
import torch
from torch import nn

import fieldfit.render.march as march_module
from fieldfit.render import OccupancyGrid, RaySamples
from fieldfit.render.contraction import BOX, Contraction, contracted_candidates
from fieldfit.render.contraction import spans as contracted_spans
from fieldfit.render.march import MarchConfig, candidates, march, windowed
from fieldfit.render.termination import terminate
from fieldfit.render.windows import ContractedWindows, march_windows

CENTRE = torch.tensor([0.1, -0.1, 0.05])
C = Contraction((0.5, -0.25, 1.0), 2.0)


class Fog(nn.Module):
    """A ball of radius 0.4 in thin fog that fills the box, so that most cells are occupied and rays stop early."""

    def density(self, x):
        c = CENTRE.to(x.dtype)
        return 200.0 * torch.sigmoid(200.0 * (0.4 - (x - c).norm(dim=-1))) + 20.0 + 5.0 * torch.sin(7.0 * x[:, 0])


class FarWall(nn.Module):
    """Contracted scenes: a ball at the contraction's centre in fog, and a wall far away (x > 30)."""

    def density(self, x):
        c = torch.as_tensor(C.centre, dtype=x.dtype)
        ball = 200.0 * torch.sigmoid(200.0 * (0.4 - (x - c).norm(dim=-1)))
        return ball + 5.0 + 50.0 * (x[:, 0] > 30.0).to(x.dtype)


def box_case(dense: bool):
    field = Fog()
    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=32, dilation=0)
    grid.update(lambda x: field.density(x) * (0.02 if dense else 0.0002), 0)
    g = torch.Generator().manual_seed(1)
    o = torch.tensor([0.0, 0.0, 3.0]).expand(400, 3).contiguous()
    target = (torch.rand(400, 3, generator=g) - 0.5) * 2.4  # some rays miss the box
    d = torch.nn.functional.normalize(target - o, dim=-1)
    return field, grid, o, d


def contracted_case():
    field = FarWall()
    grid = OccupancyGrid(BOX, resolution=48, dilation=1, contraction=C)
    grid.update(lambda x: field.density(x) * 0.05, 0)
    g = torch.Generator().manual_seed(2)
    o = torch.as_tensor(C.centre) + torch.tensor([0.0, 0.0, 3.0]) + 0.2 * torch.randn(300, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1)
    return field, grid, o, d


def reference(field, grid, o, d, cfg, stratified, seed=7):
    torch.manual_seed(seed)
    cand = candidates(grid, o, d, cfg, stratified)
    return cand, terminate(field.density, o, d, cand, cfg.early_stop, cfg.alpha_thre)


def windows(field, grid, o, d, cfg, stratified, seed=7, per_round=16):
    torch.manual_seed(seed)
    return march_windows(field.density, grid, o, d, cfg, stratified, per_round)


def same(a: RaySamples, b: RaySamples) -> bool:
    return (a.n_rays == b.n_rays and torch.equal(a.t_starts, b.t_starts) and torch.equal(a.t_ends, b.t_ends)
            and torch.equal(a.ray_indices, b.ray_indices))


@pytest.mark.parametrize("case", ["box_dense", "box_sparse", "contracted"])
@pytest.mark.parametrize(("early_stop", "alpha_thre"), [(1e-3, 1e-3), (1e-2, 0.0), (0.0, 1e-2)])
@pytest.mark.parametrize("stratified", [False, True])
def test_windows_keep_what_terminate_keeps_of_every_candidate(case, early_stop, alpha_thre, stratified):
    field, grid, o, d = contracted_case() if case == "contracted" else box_case(case == "box_dense")
    step = 0.05 if case == "contracted" else 0.02
    cfg = MarchConfig(step=step, near=0.05, far=float("inf") if case == "contracted" else 10.0, early_stop=early_stop,
                      alpha_thre=alpha_thre)
    cand, ref = reference(field, grid, o, d, cfg, stratified)
    got = windows(field, grid, o, d, cfg, stratified)
    assert ref.n_samples > 0
    if early_stop > 0:
        assert ref.n_samples < 0.5 * cand.n_samples  # the rule drops most candidates: the case tests the windows
    got.validate()
    assert same(got, ref)


@pytest.mark.parametrize("per_round", [1, 5, 64])
def test_any_round_size_keeps_the_same_samples(per_round):
    field, grid, o, d = contracted_case()
    cfg = MarchConfig(step=0.02, near=0.05, early_stop=1e-3, alpha_thre=1e-3)
    _, ref = reference(field, grid, o, d, cfg, True)
    got = windows(field, grid, o, d, cfg, True, per_round=per_round)
    # other rounds add the optical depth in another order: equal up to float64 rounding at the thresholds
    assert got.n_samples == ref.n_samples
    assert torch.equal(got.ray_indices, ref.ray_indices)
    assert torch.equal(got.t_starts, ref.t_starts)


@pytest.mark.parametrize("k", [1, 7, 200])
def test_contracted_windows_chained_are_the_candidates(k):
    """Called again and again from where it stopped, the next-k function finds every candidate once, in order."""
    _, grid, o, d = contracted_case()
    o, d = o[:25], d[:25]
    torch.manual_seed(3)
    ref = contracted_candidates(grid, C, o, d, 0.05, float("inf"), 0.02, stratified=True)
    torch.manual_seed(3)
    sp = contracted_spans(C, o, d, 0.05, float("inf"), 0.02)
    nxt = ContractedWindows(grid, sp, o, d, torch.rand(o.shape[0], 1))
    rows, k_next = torch.arange(o.shape[0]), torch.zeros(o.shape[0], dtype=torch.long)
    got = [[] for _ in range(o.shape[0])]
    while rows.numel() > 0:
        ts, te, counts, kn = nxt(rows, k_next[rows], k)
        assert bool((counts <= k).all())
        assert bool((kn >= k_next[rows]).all())
        for i, r in enumerate(rows.tolist()):
            got[r] += list(zip(ts[i, :counts[i]].tolist(), te[i, :counts[i]].tolist(), strict=True))
        k_next[rows] = kn
        rows = rows[(counts == k) & (kn < nxt.end)]
    flat = [(r, s, e) for r in range(o.shape[0]) for s, e in got[r]]
    assert [r for r, _, _ in flat] == ref.ray_indices.tolist()
    assert [s for _, s, _ in flat] == ref.t_starts.tolist()
    assert [e for _, _, e in flat] == ref.t_ends.tolist()


def test_no_rays_and_rays_that_miss():
    field, grid, o, d = box_case(True)
    cfg = MarchConfig(step=0.01, early_stop=1e-3, alpha_thre=1e-3)
    assert march_windows(field.density, grid, o[:0], d[:0], cfg).n_samples == 0
    away = -d  # every ray points away from the box
    s = march_windows(field.density, grid, o, away, cfg)
    assert s.n_samples == 0
    assert s.n_rays == o.shape[0]


class Field(nn.Module):
    def __init__(self, density):
        super().__init__()
        self.density = density


def test_march_takes_windows_on_a_cpu_where_the_grid_is_contracted(monkeypatch):
    fog, warped, o, d = contracted_case()
    _, dense, _, _ = box_case(True)
    assert dense.occupied_fraction() > 0.9
    assert windowed(warped, "cpu")
    assert not windowed(dense, "cpu")
    assert not windowed(warped, "cuda")
    cfg = MarchConfig(step=0.05, near=0.05, early_stop=1e-3, alpha_thre=1e-3)
    cand, ref = reference(fog, warped, o, d, cfg, True, seed=0)

    def every_candidate(*args, **kwargs):
        raise AssertionError("march drew every candidate of a contracted grid on a CPU")

    monkeypatch.setattr(march_module, "candidates", every_candidate)
    torch.manual_seed(0)
    assert same(march(Field(fog.density), warped, o, d, cfg, stratified=True), ref)
