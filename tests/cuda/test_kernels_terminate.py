"""terminate_round: one round of early termination, kernel vs reference (in place on tau_before and keep).

The kernel scans each ray's samples of the round on their own; the reference scans the whole round
and subtracts each ray's start, in float64 both. The two sums differ by rounding (about 1e-16
relative), so a sample whose transmittance lies within 1e-9 (relative) of early_stop may be decided
either way; none of the others may differ. tau_before: rtol 1e-12.
"""

import pytest
import torch

from conftest import DEVICES
from fieldfit.cuda import terminate_round
from fieldfit.cuda._torch_ref import terminate_round_ref


class Marched(torch.nn.Module):
    """A field and its occupancy grid, moved and saved together (what render.march's functions take)."""

    def __init__(self, field, grid):
        super().__init__()
        self.field, self.grid = field, grid


def _round(n_rays=41, n_cand=900, seed=0, dtype=torch.float64, scale=0.3):
    """A round of a march: candidates of n_rays rays (some without any in this round), a subset of them
    evaluated now (sorted places idx), their tau, and the rays' optical depth so far."""
    g = torch.Generator().manual_seed(seed)
    ri_all = torch.sort(torch.randint(0, n_rays, (n_cand,), generator=g))[0]
    idx = torch.nonzero(torch.rand(n_cand, generator=g) < 0.6).squeeze(-1)
    tau = (torch.rand(idx.numel(), generator=g, dtype=torch.float64) ** 3 * scale).to(dtype)
    tau[::17] = 0.0
    tau[5] = 80.0  # a wall
    before = (torch.rand(n_rays, generator=g, dtype=torch.float64) * 2).to(dtype)
    before[3] = 0.0
    return tau, ri_all[idx], idx, before, torch.zeros(n_cand, dtype=torch.bool)


def _run(fn, case, device, early_stop, alpha_thre):
    tau, ri, idx, before, keep = (t.clone().to(device) for t in case)
    fn(tau, ri, idx, before, keep, early_stop, alpha_thre)
    return before, keep


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("early_stop", "alpha_thre"), [(1e-2, 1e-3), (1e-3, 0.0), (0.0, 0.0), (0.5, 0.05)])
def test_kernel_matches_reference(device, dtype, early_stop, alpha_thre):
    case = _round(dtype=dtype)
    before_k, keep_k = _run(terminate_round, case, device, early_stop, alpha_thre)
    before_r, keep_r = _run(terminate_round_ref, case, device, early_stop, alpha_thre)
    rtol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(before_k, before_r, rtol=rtol, atol=0)
    # decisions: equal except within the rounding band of early_stop (transmittance from the reference's sums)
    tau, ri, idx, before, _ = (t.to(device) for t in case)
    ahead = (torch.cumsum(tau.double(), 0) - tau.double())
    counts = torch.bincount(ri, minlength=before.shape[0])
    ahead = ahead - ahead[(torch.cumsum(counts, 0) - counts)[ri]]
    trans = torch.exp(-(before.double()[ri] + ahead))
    band = torch.zeros_like(keep_r)
    band[idx] = (trans - early_stop).abs() <= 1e-9 * max(early_stop, 1e-30) + (1e-6 if dtype == torch.float32 else 0)
    differ = keep_k != keep_r
    assert not bool((differ & ~band).any()), f"{int((differ & ~band).sum())} decisions differ outside the band"
    assert 0 < int(keep_r.sum()) < idx.numel() or early_stop == 0.0  # the case drops some samples
    assert not bool(keep_k[~torch.isin(torch.arange(keep_k.numel(), device=device), idx)].any())  # others untouched


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_keeps_what_earlier_rounds_kept_and_handles_an_empty_round(device):
    tau, ri, idx, before, keep = (t.to(device) for t in _round())
    keep[0] = True  # kept in an earlier round (not among this round's samples)
    assert 0 not in idx.tolist()
    terminate_round(tau[:0], ri[:0], idx[:0], before, keep, 1e-3, 1e-3)
    assert int(keep.sum()) == 1
    assert torch.equal(before, _round()[3].to(device))
    terminate_round(tau, ri, idx, before, keep, 1e-3, 1e-3)
    assert bool(keep[0])
    assert int(keep.sum()) > 1


def test_arguments_are_checked_by_name():
    tau, ri, idx, before, keep = _round()
    with pytest.raises(ValueError, match="'idx'"):
        terminate_round(tau, ri, idx[:-1], before, keep, 1e-3, 0.0)
    with pytest.raises(TypeError, match="'tau_before'"):
        terminate_round(tau, ri, idx, before.float(), keep, 1e-3, 0.0)
    with pytest.raises(TypeError, match="'keep'"):
        terminate_round(tau, ri, idx, before, keep.float(), 1e-3, 0.0)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("shift", [0.0, 4.0])
def test_the_march_keeps_the_same_samples(monkeypatch, shift):
    # render.termination.terminate (training march and packed frames) with the kernel in every round against the
    # reference: the same kept samples (the random field gives no transmittance at early_stop's rounding band)
    from fieldfit.cuda import _terminate_triton
    from fieldfit.fields.components.encodings import GridConfig
    from fieldfit.fields.gaussian_rbf import FieldConfig
    from fieldfit.fields.radiance_rbf import RadianceRBF
    from fieldfit.render import OccupancyGrid, termination
    from fieldfit.render.march import MarchConfig, candidates
    from fieldfit.render.termination import terminate

    torch.manual_seed(0)
    grid = GridConfig(kind="hash", levels=3, base_res=4, max_res=40, features=2, table_log2=8, init_scale=1.0)
    field = RadianceRBF(FieldConfig(grid=grid, units=6), [[-1.0] * 3, [1.0] * 3], density_shift=shift,
                        density_scale=3.0)
    occ = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=8, dilation=0)
    occ.binary.copy_(torch.rand(8, 8, 8) < 0.6)
    model = Marched(field, occ).eval()
    g = torch.Generator().manual_seed(1)
    o = torch.randn(300, 3, generator=g)
    o = 2.5 * o / o.norm(dim=-1, keepdim=True)
    d = torch.nn.functional.normalize(torch.rand(300, 3, generator=g) * 1.6 - 0.8 - o, dim=-1)
    cfg = MarchConfig(step=0.05, early_stop=1e-2, alpha_thre=1e-3)
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")  # candidates and densities by the reference in both runs
    cand = candidates(model.grid, o, d, cfg, False)
    # several rounds
    want = terminate(model.field.density, o, d, cand, cfg.early_stop, cfg.alpha_thre, per_round=4, grow=2)
    calls = []

    def kernel(tau, ri, idx, before, keep, early_stop, alpha_thre):
        calls.append(tau.numel())
        _terminate_triton.terminate_round(tau, ri, idx, before, keep.view(torch.uint8), early_stop, alpha_thre)

    monkeypatch.setattr(termination, "terminate_round", kernel)
    got = terminate(model.field.density, o, d, cand, cfg.early_stop, cfg.alpha_thre, per_round=4, grow=2)
    assert len(calls) >= 2  # rounds
    assert 0 < want.n_samples < cand.n_samples  # termination dropped samples
    assert got.n_samples == want.n_samples, (got.n_samples, want.n_samples)
    assert torch.equal(got.ray_indices, want.ray_indices)
    assert torch.equal(got.t_starts, want.t_starts)
