"""ProNeRF's projection-aware sampler: ray encoding, bins and sample placement (render/samplers/projection.py)."""

import torch

from fieldfit.fields.components.encodings import frequency_encoding
from fieldfit.render.samplers.projection import (
    RefineNet,
    SamplerNet,
    bin_edges,
    densify,
    jitter_sorted,
    plucker,
    refine_in_bins,
    weight_quantiles,
)


def _rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    return o, d, g


def test_plucker_is_invariant_along_the_ray():
    o, d, g = _rays(64)
    s = torch.randn(64, 1, generator=g, dtype=torch.float64) * 5.0
    p = plucker(o, d)
    assert torch.allclose(plucker(o + s * d, d), p, atol=1e-12)
    assert torch.allclose(plucker(o, 3.7 * d), p, atol=1e-12)  # direction length does not matter
    assert torch.allclose(frequency_encoding(plucker(o + s * d, d), 4), frequency_encoding(p, 4), atol=1e-9)
    # ... but it tells different rays apart: a parallel ray moved sideways, or the reversed ray
    side = torch.nn.functional.normalize(torch.cross(d, torch.randn(64, 3, generator=g, dtype=torch.float64), dim=-1))
    assert (plucker(o + 0.1 * side, d) - p).abs().amax(-1).min() > 1e-3
    assert (plucker(o, -d) - p).abs().amax(-1).min() > 1e-3


def _sorted_depths(r, n, g, near, far):
    u = torch.sort(torch.rand(r, n, generator=g, dtype=torch.float64), dim=-1).values
    return near[:, None] + u * (far - near)[:, None]


def test_bin_refinement_keeps_samples_sorted_and_inside_their_bins():
    g = torch.Generator().manual_seed(1)
    r, n = 500, 12
    near = torch.rand(r, generator=g, dtype=torch.float64)
    far = near + 0.1 + 3 * torch.rand(r, generator=g, dtype=torch.float64)
    t = _sorted_depths(r, n, g, near, far)
    t[:7, 3] = t[:7, 4]  # ties between candidates
    e = bin_edges(t, near, far)
    assert e.shape == (r, n + 1)
    assert (e[:, 1:] >= e[:, :-1]).all()
    assert (e[:, 0] >= near).all()
    assert (e[:, -1] <= far).all()
    u = torch.rand(r, n, generator=g, dtype=torch.float64)
    u[:50] = 0.0
    u[50:100] = 1.0
    for uu in (u, torch.sigmoid(20 * torch.randn(r, n, generator=g, dtype=torch.float64))):
        tr = refine_in_bins(t, uu, near, far)
        assert (tr[:, 1:] >= tr[:, :-1]).all()
        assert (tr >= e[:, :-1]).all()
        assert (tr <= e[:, 1:]).all()
    # and with the refiner network's outputs (random weights, random features)
    net = RefineNet(5, n, 4)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=1.0)
    u_net, off, c1 = net(torch.randn(r, 5), torch.rand(r, n), torch.rand(r, n, 4, 3))
    tr = refine_in_bins(t.float(), u_net, near.float(), far.float())
    assert (tr[:, 1:] >= tr[:, :-1]).all()
    assert (tr >= e.float()[:, :-1] - 1e-6).all()
    assert (tr <= e.float()[:, 1:] + 1e-6).all()
    assert off.abs().max() <= 1.0
    assert ((c1 >= 0) & (c1 <= 1)).all()


def test_untrained_sampler_marches_like_a_uniform_sampler():
    net = SamplerNet(6, 8)
    u, add, mul, c0 = net(torch.randn(100, 6))
    q = (torch.arange(8) + 0.5) / 8
    assert torch.allclose(torch.sort(u, -1).values, q.expand(100, 8), atol=0.02)
    assert (add == 0).all()
    assert (mul == 1).all()
    assert c0.shape == (100, 3)


def test_densify_and_jitter_stay_sorted_within_near_far():
    g = torch.Generator().manual_seed(2)
    r, n = 300, 8
    near = torch.zeros(r, dtype=torch.float64)
    far = 1 + torch.rand(r, generator=g, dtype=torch.float64)
    t = _sorted_depths(r, n, g, near, far)
    torch.manual_seed(0)
    dense = densify(t, near, far, 3, 5, 0.2)
    assert dense.shape == (r, 3 * n + 5)
    assert (dense[:, 1:] >= dense[:, :-1]).all()
    assert (dense >= near[:, None]).all()
    assert (dense <= far[:, None]).all()
    j = jitter_sorted(t, near, far, 10.0)  # huge jitter: capped at 0.99 of a gap
    assert (j[:, 1:] >= j[:, :-1]).all()
    assert (j >= near[:, None]).all()
    assert (j <= far[:, None]).all()
    assert not torch.allclose(j, t)


def test_weight_quantiles_follow_the_weights():
    r, k = 4, 10
    near, far = torch.zeros(r), torch.full((r,), 10.0)
    t = torch.arange(k, dtype=torch.float32).expand(r, k).contiguous()  # intervals [i, i+1)
    w = torch.zeros(r, k)
    w[torch.arange(r), torch.tensor([2, 5, 7, 9])] = 0.8  # one opaque interval per ray
    q = weight_quantiles(t, w, near, far, 6, floor=0.0)
    lo = torch.tensor([2.0, 5.0, 7.0, 9.0])[:, None]
    assert ((q >= lo) & (q <= lo + 1)).all()
    assert (q[:, 1:] > q[:, :-1]).all()
    qu = weight_quantiles(t, w, near, far, 5, floor=1.0)  # only the uniform part: evenly spread
    assert torch.allclose(qu, torch.tensor([1.0, 3, 5, 7, 9]).expand(r, 5), atol=1e-5)


def test_nerf_mlp_field_answers_the_field_contract():
    from fieldfit.fields.base import RadianceField
    from fieldfit.fields.nerf import NerfMLP

    f = NerfMLP([[-1.0] * 3, [1.0] * 3], freqs=4, hidden=32, layers=4)
    assert isinstance(f, RadianceField)
    x = (torch.rand(50, 3) * 2 - 1).requires_grad_(True)
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    out = f(x, d)
    assert out.density.shape == (50,)
    assert (out.density >= 0).all()
    assert ((out.rgb >= 0) & (out.rgb <= 1)).all()
    assert torch.allclose(f.density(x), out.density)
    (out.density.sum() + out.rgb.sum()).backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
