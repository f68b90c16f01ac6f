"""render.volrend and cuda._torch_ref.composite_packed_ref: naive loops, VJP, gradcheck, properties."""

import math

import pytest
import torch

from fieldfit.cuda._torch_ref import composite_packed_ref
from fieldfit.render.samples import RaySamples
from fieldfit.render.volrend import composite, composite_alpha

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}


def ragged_samples(n_rays=9, max_per_ray=7, seed=0, dtype=torch.float64, empty=(0, 3, 8)):
    """Random packed samples, rays in ``empty`` (first and last included) without samples."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, max_per_ray + 1, (n_rays,), generator=gen)
    counts[list(empty)] = 0
    ts, te = [], []
    for c in counts.tolist():
        edges = torch.cumsum(torch.rand(c + 1, generator=gen, dtype=dtype) * 0.5 + 0.05, 0)
        ts.append(edges[:-1])
        te.append(edges[1:])
    ri = torch.arange(n_rays).repeat_interleave(counts)
    s = RaySamples(torch.cat(ts), torch.cat(te), ri, n_rays)
    s.validate()
    return s, gen


def naive_composite(sigmas, values, samples, background=None, alphas=None):
    """Per-ray Python loop: T = 1; w = T a; T *= 1 - a."""
    n_rays, c = samples.n_rays, values.shape[-1]
    rgb, opac, depth = [], [], []
    weights, trans = [None] * samples.n_samples, [None] * samples.n_samples
    for r in range(n_rays):
        t = torch.ones((), dtype=values.dtype)
        acc_c, acc_w, acc_d = torch.zeros(c, dtype=values.dtype), torch.zeros((), dtype=values.dtype), 0.0
        for i in (samples.ray_indices == r).nonzero().flatten().tolist():
            delta = samples.t_ends[i] - samples.t_starts[i]
            a = alphas[i] if alphas is not None else 1 - torch.exp(-sigmas[i] * delta)
            weights[i], trans[i] = t * a, t
            acc_c = acc_c + t * a * values[i]
            acc_w = acc_w + t * a
            acc_d = acc_d + t * a * 0.5 * (samples.t_starts[i] + samples.t_ends[i])
            t = t * (1 - a)
        if background is not None:
            bg = background if background.dim() == 1 else background[r]
            acc_c = acc_c + (1 - acc_w) * bg
        rgb.append(acc_c)
        opac.append(acc_w)
        depth.append(torch.as_tensor(acc_d, dtype=values.dtype))
    stack = lambda xs: torch.stack(xs) if xs else values.new_zeros(0)  # noqa: E731 - one-line helper, used twice below
    return torch.stack(rgb), torch.stack(opac), torch.stack(depth), stack(weights), stack(trans)


def _inputs(samples, gen, dtype, c=3):
    s = samples.n_samples
    sigmas = (torch.rand(s, generator=gen, dtype=torch.float64) * 4).to(dtype)
    rgbs = torch.rand(s, c, generator=gen, dtype=torch.float64).to(dtype)
    return sigmas, rgbs


def _cast(samples, dtype):
    return RaySamples(samples.t_starts.to(dtype), samples.t_ends.to(dtype), samples.ray_indices, samples.n_rays)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bg_kind", ["none", "shared", "per_ray"])
def test_composite_matches_naive_loop(dtype, bg_kind):
    samples, gen = ragged_samples()
    samples = _cast(samples, dtype)
    sigmas, rgbs = _inputs(samples, gen, dtype)
    bg = {"none": None, "shared": torch.rand(3, generator=gen).to(dtype),
          "per_ray": torch.rand(samples.n_rays, 3, generator=gen).to(dtype)}[bg_kind]
    out = composite(sigmas, rgbs, samples, background=bg)
    ref = naive_composite(sigmas, rgbs, samples, bg)
    for got, want in zip((out.rgb, out.opacity, out.depth, out.weights, out.transmittance), ref, strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_composite_vjp_matches_naive_loop():
    samples, gen = ragged_samples(seed=1)
    sigmas, rgbs = _inputs(samples, gen, torch.float64)
    bg = torch.rand(3, generator=gen, dtype=torch.float64)
    leaves = [x.clone().requires_grad_(True) for x in (sigmas, rgbs, samples.t_starts, samples.t_ends, bg)]
    s2 = RaySamples(leaves[2], leaves[3], samples.ray_indices, samples.n_rays)
    out = composite(leaves[0], leaves[1], s2, background=leaves[4])
    ref = naive_composite(leaves[0], leaves[1], s2, leaves[4])
    cot = [torch.randn_like(x) for x in ref]
    got = torch.autograd.grad([out.rgb, out.opacity, out.depth, out.weights, out.transmittance], leaves, cot)
    want = torch.autograd.grad(list(ref), leaves, cot)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-9)


def test_gradcheck_composite_packed_ref():
    samples, gen = ragged_samples(n_rays=5, max_per_ray=4, seed=2, empty=(0, 4))
    sig = (torch.rand(samples.n_samples, generator=gen, dtype=torch.float64) + 0.1).requires_grad_(True)
    ts = samples.t_starts.clone().requires_grad_(True)
    te = samples.t_ends.clone().requires_grad_(True)
    fn = lambda a, b, c: composite_packed_ref(a, b, c, samples.ray_indices, samples.n_rays)  # noqa: E731 - gradcheck fn
    assert torch.autograd.gradcheck(fn, (sig, ts, te))


def test_gradcheck_composite_and_modulation():
    samples, gen = ragged_samples(n_rays=5, max_per_ray=4, seed=3, empty=(2,))
    n = samples.n_samples
    sig = (torch.rand(n, generator=gen, dtype=torch.float64) + 0.5).requires_grad_(True)
    rgb = torch.rand(n, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    bg = torch.rand(2, generator=gen, dtype=torch.float64).requires_grad_(True)
    # relu kinks are kept away from the inputs: mul in [0.2, 0.9], sigma + add > 0
    mul = (torch.rand(n, generator=gen, dtype=torch.float64) * 0.7 + 0.2).requires_grad_(True)
    add = (torch.rand(n, generator=gen, dtype=torch.float64) * 0.4 - 0.2).requires_grad_(True)

    def f(sig, rgb, bg):
        o = composite(sig, rgb, samples, background=bg)
        return o.rgb, o.opacity, o.depth

    def g(sig, rgb, bg, mul, add):
        o = composite(sig, rgb, samples, background=bg, alpha_mul=mul, sigma_add=add)
        return o.rgb, o.weights

    assert torch.autograd.gradcheck(f, (sig, rgb, bg))
    assert torch.autograd.gradcheck(g, (sig, rgb, bg, mul, add))


def test_gradcheck_composite_alpha():
    samples, gen = ragged_samples(n_rays=4, max_per_ray=4, seed=4, empty=(1,))
    a = (torch.rand(samples.n_samples, generator=gen, dtype=torch.float64) * 0.9).requires_grad_(True)
    v = torch.rand(samples.n_samples, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    f = lambda a, v: composite_alpha(a, v, samples, background=torch.ones(3, dtype=torch.float64)).rgb  # noqa: E731 - gradcheck's function
    assert torch.autograd.gradcheck(f, (a, v))


def test_pronerf_modulation_matches_formula():
    samples, gen = ragged_samples(seed=5)
    sig, rgb = _inputs(samples, gen, torch.float64)
    sig = sig - 1.0  # some negative: relu matters
    mul = torch.rand(samples.n_samples, generator=gen, dtype=torch.float64) * 1.2 - 0.2
    add = torch.randn(samples.n_samples, generator=gen, dtype=torch.float64)
    alpha = torch.relu(mul) * (1 - torch.exp(-torch.relu(sig + add) * samples.deltas))
    out = composite(sig, rgb, samples, alpha_mul=mul, sigma_add=add)
    ref = naive_composite(None, rgb, samples, alphas=alpha)
    torch.testing.assert_close(out.rgb, ref[0])
    torch.testing.assert_close(out.weights, ref[3])
    # sigma_add alone is relu(sigma + add) as density
    out2 = composite(sig, rgb, samples, sigma_add=add)
    ref2 = composite(torch.relu(sig + add), rgb, samples)
    torch.testing.assert_close(out2.rgb, ref2.rgb)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_composite_alpha_matches_naive_loop(dtype):
    samples, gen = ragged_samples(seed=6)
    samples = _cast(samples, dtype)
    alphas = torch.rand(samples.n_samples, generator=gen).to(dtype)
    vals = torch.rand(samples.n_samples, 4, generator=gen).to(dtype)
    out = composite_alpha(alphas, vals, samples, background=torch.zeros(4, dtype=dtype))
    ref = naive_composite(None, vals, samples, torch.zeros(4, dtype=dtype), alphas=alphas)
    for got, want in zip((out.rgb, out.opacity, out.depth, out.weights, out.transmittance), ref, strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_composite_alpha_opaque_layer_hides_the_rest():
    # K=3 layers, the middle one fully opaque (sigmoid saturated to exactly 1 in float32)
    s = RaySamples.from_batched(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    out = composite_alpha(torch.tensor([0.5, 1.0, 0.7]), torch.eye(3), s, background=torch.ones(3))
    torch.testing.assert_close(out.weights, torch.tensor([0.5, 0.5, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.rgb[0], torch.tensor([0.5, 0.5, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.depth, torch.tensor([1.5]))


def test_properties_random():
    samples, gen = ragged_samples(n_rays=40, max_per_ray=30, seed=7, empty=(0, 17, 39))
    sigmas = torch.rand(samples.n_samples, generator=gen, dtype=torch.float64) * 10
    out = composite(sigmas, torch.rand(samples.n_samples, 3, generator=gen, dtype=torch.float64), samples)
    start, count = samples.packed_info().unbind(-1)
    t, ri = out.transmittance, samples.ray_indices
    same_ray = ri[1:] == ri[:-1]
    assert (t[1:][same_ray] <= t[:-1][same_ray]).all()  # monotone within a ray
    torch.testing.assert_close(t[start[count > 0]], torch.ones(int((count > 0).sum()), dtype=torch.float64))
    assert (out.opacity <= 1 + 1e-12).all()
    assert (out.weights >= 0).all()
    assert (out.opacity[count == 0] == 0).all()


def test_zero_density_gives_background():
    samples, gen = ragged_samples(seed=8)
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    out = composite(torch.zeros(samples.n_samples, dtype=torch.float64),
                    torch.rand(samples.n_samples, 3, generator=gen, dtype=torch.float64), samples, background=bg)
    assert (out.opacity == 0).all()
    assert (out.depth == 0).all()
    torch.testing.assert_close(out.rgb, bg.expand(samples.n_rays, 3))


def test_depth_convention():
    s = RaySamples.from_batched(torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    out = composite(torch.tensor([math.log(2.0)]), torch.ones(1, 1), s)  # alpha = 0.5
    torch.testing.assert_close(out.depth, torch.tensor([0.75]))  # not normalised
    torch.testing.assert_close(out.normalized_depth(), torch.tensor([1.5]))


def test_float32_inputs_keep_precision_over_many_rays():
    # 20000 rays, each ending opaque: the global running optical depth reaches ~1e6, where a
    # float32 scan would have ulp ~0.1; the float64 scan keeps every ray exact.
    n_rays, per = 20000, 8
    t = torch.arange(per + 1, dtype=torch.float32).expand(n_rays, per + 1)
    s = RaySamples.from_batched(t[:, :-1].contiguous(), t[:, 1:].contiguous())
    sig = torch.tensor([0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 5.0, 50.0]).repeat(n_rays)
    w, tr = composite_packed_ref(sig, s.t_starts, s.t_ends, s.ray_indices, n_rays)
    w1, tr1 = composite_packed_ref(sig[:per].double(), s.t_starts[:per].double(), s.t_ends[:per].double(),
                                   s.ray_indices[:per], 1)
    torch.testing.assert_close(tr.view(n_rays, per)[-1].double(), tr1, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(w.view(n_rays, per)[-1].double(), w1, atol=1e-7, rtol=1e-6)


def test_infinite_density_and_huge_intervals_stay_finite():
    # ProNeRF's last delta = 1e10 and sigma = inf must not spoil the rays after them
    ts = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    te = torch.tensor([1.0, 1e10, 1.0, 2.0, 1.0, 2.0])
    sig = torch.tensor([0.5, 3.0, math.inf, 1.0, 0.5, 0.5])
    ri = torch.tensor([0, 0, 1, 1, 2, 2])
    w, tr = composite_packed_ref(sig, ts, te, ri, 3)
    assert torch.isfinite(w).all()
    assert torch.isfinite(tr).all()
    a = 1 - math.exp(-0.5)
    torch.testing.assert_close(w, torch.tensor([a, 1 - a, 1.0, 0.0, a, (1 - a) * a]))


def test_no_samples_at_all():
    s = RaySamples.empty(4)
    out = composite(torch.zeros(0), torch.zeros(0, 3), s, background=torch.ones(3))
    torch.testing.assert_close(out.rgb, torch.ones(4, 3))
    assert out.weights.shape == (0,)


def test_shape_errors_name_the_tensor():
    s, gen = ragged_samples()
    with pytest.raises(ValueError, match="rgbs"):
        composite(torch.zeros(s.n_samples, dtype=torch.float64), torch.zeros(s.n_samples + 1, 3), s)
    with pytest.raises(ValueError, match="background"):
        composite(torch.zeros(s.n_samples), torch.zeros(s.n_samples, 3), s, background=torch.zeros(2))


def test_ray_samples_helpers():
    t = torch.tensor([[0.0, 1.0, 2.0], [0.5, 1.5, 2.5]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    s = RaySamples.from_batched(t, t + 1, mask)
    assert s.packed_info().tolist() == [[0, 2], [2, 0]]
    assert s.ray_indices.tolist() == [0, 0]
    torch.testing.assert_close(s.deltas, torch.ones(2))
    o, d = torch.tensor([[1.0, 0, 0], [0, 0, 0]]), torch.tensor([[0.0, 0, 1], [1, 0, 0]])
    torch.testing.assert_close(s.positions(o, d), torch.tensor([[1.0, 0, 0.5], [1.0, 0, 2.5]]))
    with pytest.raises(ValueError, match="sorted"):
        RaySamples(torch.zeros(2), torch.ones(2), torch.tensor([1, 0]), 2).validate()
    with pytest.raises(ValueError, match="int64"):
        RaySamples(torch.zeros(2), torch.ones(2), torch.tensor([0, 1], dtype=torch.int32), 2)
