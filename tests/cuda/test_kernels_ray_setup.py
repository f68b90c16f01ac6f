"""ray_setup (each ray's span: occupied box, [near, far], grid box; its SH bases), sh_bases and sample_positions:
kernels vs reference.

t_min and t_max place every marching interval, so the kernel must give the reference's values to the
bit (float32; its divisions are IEEE, its min / max propagate NaN); the SH bases too (the same products
in the same order). The reference is the renderer's own path: render.ray_aabb and fields' sh_bases.
"""

import math

import pytest
import torch

from conftest import DEVICES
from fieldfit.cuda import ray_setup, sample_positions
from fieldfit.cuda import sh_bases as sh_kernel
from fieldfit.cuda._torch_ref import ray_setup_ref, sample_positions_ref, sh_bases_ref
from fieldfit.fields.components.sh import sh_bases
from fieldfit.render import ray_aabb

BOX = torch.tensor([[-0.5, -0.4, -0.3], [0.4, 0.5, 0.6]])
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _rays(n=517, seed=0):
    """Rays from a shell around the box, some inside it, some parallel to axes, some pointing away,
    one NaN; n is not a multiple of the kernel's block."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = o / o.norm(dim=-1, keepdim=True) * (0.5 + 2.5 * torch.rand(n, 1, generator=g))
    d = torch.rand(n, 3, generator=g) - 0.5 - 0.6 * o
    d[::7, 0] = 0.0  # parallel to the yz plane
    d[::11, 1:] = 0.0  # along x
    d[5] = -o[5]  # straight at the centre
    d[6] = o[6]  # away from it
    o[8] = 0.4  # on a corner of the box
    o[9, 0] = float("nan")
    return o, d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _same(a, b, name):
    assert a.shape == b.shape, name
    same = (a == b) | (a.isnan() & b.isnan())
    assert bool(same.all()), f"{name}: {int((~same).sum())} values differ, e.g. {a[~same][:4]} vs {b[~same][:4]}"


def test_reference_is_the_renderers_path():
    # what the renderer computed before ray_setup (the occupied box and [near, far], then OccupancyGrid.span), and
    # sh_bases
    o, d = _rays()
    near, far = 0.2, 3.5
    t0, t1, hit = ray_aabb(o, d, BOX)
    lo = torch.clamp(t0, min=near)
    hi = torch.where(hit, torch.clamp(t1, max=far), lo)
    tn, tf, hit2 = ray_aabb(o, d, AABB)
    t_min, t_max = torch.maximum(tn, lo), torch.minimum(tf, hi)
    t_max = torch.where(hit2 & (t_max > t_min), t_max, t_min)
    got = ray_setup_ref(o, d, BOX, AABB, near, far, 3)
    _same(got[0], t_min, "t_min")
    _same(got[1], t_max, "t_max")
    _same(got[2], sh_bases(d, 3), "sh")
    assert 0 < int((got[1] > got[0]).sum()) < len(o)  # some rays march, some miss


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("degree", [None, 0, 1, 2, 3])
@pytest.mark.parametrize(("near", "far"), [(0.0, math.inf), (0.7, 2.0)])
def test_kernel_matches_reference_to_the_bit(device, degree, near, far, monkeypatch):
    o, d = (t.to(device) for t in _rays())
    box, aabb = BOX.to(device), AABB.to(device)
    got = ray_setup(o, d, box, aabb, near, far, degree)
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    want = ray_setup(o, d, box, aabb, near, far, degree)
    _same(got[0], want[0], "t_min")
    _same(got[1], want[1], "t_max")
    if degree is None:
        assert got[2] is None
        assert want[2] is None
    else:
        _same(got[2], want[2], "sh")
    assert bool(got[0][9].isnan() | (got[0][9] == got[1][9]))  # the NaN ray marches nothing


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_empty_input(device):
    z = torch.zeros(0, 3, device=device)
    t_min, t_max, sh = ray_setup(z, z, BOX.to(device), AABB.to(device), 0.0, 1.0, 3)
    assert t_min.shape == t_max.shape == (0,)
    assert sh.shape == (0, 16)


def test_arguments_are_checked_by_name():
    o, d = _rays()
    with pytest.raises(ValueError, match="'dirs'"):
        ray_setup(o, d[:-1], BOX, AABB, 0.0, 1.0)
    with pytest.raises(ValueError, match="'box'"):
        ray_setup(o, d, BOX[0], AABB, 0.0, 1.0)
    with pytest.raises(TypeError, match="'aabb'"):
        ray_setup(o, d, BOX, AABB.double(), 0.0, 1.0)
    with pytest.raises(ValueError, match="sh_degree"):
        ray_setup(o, d, BOX, AABB, 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="near <= far"):
        ray_setup(o, d, BOX, AABB, 2.0, 1.0)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_kernel_matches_reference_to_the_bit(device, degree):
    # the fields' per-sample SH bases (fields.components.sh.sh_bases dispatches here); a NaN direction stays NaN
    _, d = _rays(1029)
    d[3] = float("nan")
    d = d.to(device)
    got = sh_kernel(d, degree)
    _same(got, sh_bases_ref(d, degree), f"sh degree {degree}")
    _same(sh_bases(d, degree), got, "fields' sh_bases")
    assert sh_kernel(d[:0], degree).shape == (0, (degree + 1) ** 2)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_sh_bases_keep_the_gradient_and_float64_through_the_reference(device):
    _, d = _rays(40)
    d = d.to(device).double().requires_grad_()
    sh_kernel(d, 3).sum().backward()  # float64 with a gradient: the reference, differentiable
    want = d.grad.clone()
    d.grad = None
    sh_bases_ref(d, 3).sum().backward()
    _same(want, d.grad, "dL/dd")
    f = d.detach().float().requires_grad_()
    sh_kernel(f, 2).sum().backward()  # float32 needing a gradient: the reference too
    assert f.grad is not None
    assert f.grad.shape == (40, 3)
    with torch.no_grad():  # no graph: the kernel, the same values
        _same(sh_kernel(f, 2), sh_bases_ref(f.detach(), 2), "no_grad")


def test_sh_arguments_are_checked_by_name():
    with pytest.raises(ValueError, match="'dirs'"):
        sh_kernel(torch.zeros(4, 2), 3)
    with pytest.raises(ValueError, match="degree"):
        sh_kernel(torch.zeros(4, 3), 4)
    with pytest.raises(TypeError, match="'dirs'"):
        sh_kernel(torch.zeros(4, 3, dtype=torch.int64), 1)


def _packed(n_rays=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    o, d = _rays(n_rays, seed)
    o[9] = 0.3  # no NaN origin here: the positions of ray 9 would be NaN in both
    counts = torch.randint(0, 30, (n_rays,), generator=g)
    ri = torch.repeat_interleave(torch.arange(n_rays), counts)
    ts = torch.rand(ri.numel(), generator=g) * 3
    return o, d, ri, ts, ts + torch.rand(ri.numel(), generator=g) * 0.1


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_sample_positions_match_reference_to_the_bit(device):
    from fieldfit.render import RaySamples

    o, d, ri, ts, te = (t.to(device) for t in _packed())
    assert ri.numel() % 256 != 0
    got = sample_positions(o, d, ri, ts, te)
    _same(got, sample_positions_ref(o, d, ri, ts, te), "positions")
    _same(RaySamples(ts, te, ri, o.shape[0]).positions(o, d), got, "RaySamples.positions")
    assert sample_positions(o, d, ri[:0], ts[:0], te[:0]).shape == (0, 3)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_sample_positions_keep_gradients_and_mixed_dtypes_through_the_reference(device):
    o, d, ri, ts, te = (t.to(device) for t in _packed(13))
    d = d.clone().requires_grad_()
    sample_positions(o, d, ri, ts, te).sum().backward()  # a gradient: the reference, differentiable
    want = torch.zeros_like(d).index_add_(0, ri, (0.5 * (ts + te))[:, None].expand(-1, 3))
    torch.testing.assert_close(d.grad, want)
    x = sample_positions(o, d.detach(), ri, ts.double(), te.double())  # mixed: the reference's promotion
    assert x.dtype == torch.float64


def test_sample_positions_arguments_are_checked_by_name():
    o, d, ri, ts, te = _packed(13)
    with pytest.raises(ValueError, match="'dirs'"):
        sample_positions(o, d[:-1], ri, ts, te)
    with pytest.raises(TypeError, match="'ray_indices'"):
        sample_positions(o, d, ri.int(), ts, te)
    with pytest.raises(ValueError, match="'t_ends'"):
        sample_positions(o, d, ri, ts, te[:-1])
