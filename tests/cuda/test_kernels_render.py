"""composite_packed and traverse_occupancy: Triton kernels vs their references.

composite_packed (kernel in dtype vs reference in float64; atol relative to max|reference|):
    weights, transmittance:        f32 rtol 1e-4, atol 1e-5   f64 rtol 1e-9, atol 1e-10
    dsigmas, dt_starts, dt_ends:   f32 rtol 1e-4, atol 1e-5   f64 rtol 1e-9, atol 1e-10
(f64 is limited by the reference's global float64 scan, ~1e-13 absolute.)
traverse_occupancy: the same samples as the reference (same dtype). A sample may differ only in
the boundary band (midpoint within 1e-4 cell of a cell face or the aabb, or t within 1e-5 of
t_max), at most 1% of them; matched samples agree to rtol 1e-6.
"""

import pytest
import torch

from conftest import DEVICES, DTYPES, as64, assert_close, vjp
from fieldfit.cuda import composite_packed, traverse_occupancy, traverse_occupancy_next
from fieldfit.cuda._torch_ref import (
    COMPOSITE_MAX_OPTICAL_DEPTH,
    composite_packed_ref,
    traverse_next_ref,
    traverse_occupancy_ref,
)

TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-10)}


def _packed(counts, dtype, device, seed=0, sigma_scale=3.0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.as_tensor(counts)
    ray_indices = torch.repeat_interleave(torch.arange(len(counts)), counts)
    s = ray_indices.numel()
    sigmas = torch.rand(s, generator=g, dtype=torch.float64) * sigma_scale
    t_starts = torch.rand(s, generator=g, dtype=torch.float64)
    t_ends = t_starts + torch.rand(s, generator=g, dtype=torch.float64) * 0.2
    return [t.to(device, dtype) for t in (sigmas, t_starts, t_ends)] + [ray_indices.to(device)]


def _check_composite(inputs, n_rays, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    cots = [torch.randn(inputs[0].shape, generator=g, dtype=torch.float64).to(inputs[0]) for _ in range(2)]
    floats, ri = inputs[:3], inputs[3]
    outs, grads = vjp(lambda *a: composite_packed(*a, ri, n_rays), floats, cots)
    outs_ref, grads_ref = vjp(lambda *a: composite_packed_ref(*a, ri, n_rays), as64(floats), [c.double() for c in cots])
    rtol, atol = TOL[dtype]
    for name, a, b in zip(("weights", "transmittance", "dsigmas", "dt_starts", "dt_ends"), outs + grads,
                          outs_ref + grads_ref, strict=True):
        assert a.dtype == dtype, name
        assert_close(a, b, rtol=rtol, atol_rel=atol, name=name)
    return outs


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_composite_matches_reference(device, dtype):
    # 23 rays, 0..150 samples each (several 64-sample chunks; empty rays at the start, middle, end)
    counts = torch.randint(0, 150, (23,), generator=torch.Generator().manual_seed(7))
    counts[[0, 11, 22]] = 0
    inputs = _packed(counts, dtype, device)
    w, trans = _check_composite(inputs, 23, dtype)
    # properties: T starts at 1 and never increases within a ray; per-ray weight sums <= 1
    ri = inputs[3]
    first = torch.ones_like(ri, dtype=torch.bool)
    first[1:] = ri[1:] != ri[:-1]
    assert torch.all(trans[first] == 1)
    same_ray = ~first[1:]
    assert torch.all(trans[1:][same_ray] <= trans[:-1][same_ray])
    assert torch.all(torch.zeros(23, dtype=dtype, device=device).index_add_(0, ri, w) <= 1 + 1e-6)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_composite_zero_and_huge_density(device):
    # zero density: w = 0, T = 1 exactly. Optical depth above the clamp (64): no NaN, zero grads
    sig, ts, te, ri = _packed([5, 70, 3], torch.float32, device)
    sig[:5] = 0
    sig[10] = 1e6
    sig[20] = 5e3
    w, trans = _check_composite([sig, ts, te, ri], 3, torch.float32)
    assert torch.all(w[:5] == 0)
    assert torch.all(trans[:5] == 1)
    assert (sig[10] * (te[10] - ts[10])).item() > COMPOSITE_MAX_OPTICAL_DEPTH
    sig = sig.clone()
    sig[30] = float("inf")
    w, trans = composite_packed(sig, ts, te, ri, 3)
    assert torch.isfinite(w).all()
    assert torch.isfinite(trans).all()


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("counts", "n_rays"), [([], 0), ([], 4), ([0, 0], 2)], ids=["S0R0", "S0R4", "empty-rays"])
def test_composite_empty(device, counts, n_rays):
    sig, ts, te, ri = _packed(torch.tensor(counts, dtype=torch.long), torch.float32, device)
    sig.requires_grad_()
    w, trans = composite_packed(sig, ts, te, ri, n_rays)
    assert w.shape == (0,)
    assert trans.shape == (0,)
    (w.sum() + trans.sum()).backward()
    assert sig.grad.shape == (0,)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_composite_samples_of_no_ray_get_zeros(device):
    # ray indices out of [0, n_rays) before the first and after the last ray (not checked, no sync): the kernels
    # write zeros there (outputs and gradients start uninitialised), and the rays in range are unaffected
    sig, ts, te, ri = _packed([2, 5, 3, 4], torch.float32, device)
    ri = ri - 1  # rays -1 (2 samples), 0, 1, 2 (4 samples); n_rays = 2 leaves ray 2 out too
    inside = (ri >= 0) & (ri < 2)
    for _ in range(2):  # twice: the second call's fresh buffers may reuse the first's memory
        leaves = [t.clone().requires_grad_() for t in (sig, ts, te)]
        w, trans = composite_packed(*leaves, ri, 2)
        (w * 2 + trans * 3).sum().backward()
        for name, v in zip(("weights", "transmittance", "dsigmas", "dt_starts", "dt_ends"),
                           (w, trans, *(t.grad for t in leaves)), strict=True):
            assert torch.all(v[~inside] == 0), name
        ref = composite_packed_ref(sig[inside], ts[inside], te[inside], ri[inside], 2)
        assert_close(w[inside], ref[0], rtol=1e-4, atol_rel=1e-5, name="weights in range")
        sig = sig + 1.0  # different values on the second pass


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("used", ["weights", "transmittance"])
def test_composite_one_output_and_sigma_only(device, used):
    # one output unused (its cotangent is None) and t_starts/t_ends without grad
    sig, ts, te, ri = _packed([4, 9], torch.float64, device)
    sig_k = sig.clone().requires_grad_()
    sig_r = sig.clone().requires_grad_()
    i = 0 if used == "weights" else 1
    composite_packed(sig_k, ts, te, ri, 2)[i].square().sum().backward()
    composite_packed_ref(sig_r, ts, te, ri, 2)[i].square().sum().backward()
    assert ts.grad is None
    assert_close(sig_k.grad, sig_r.grad, rtol=1e-9, atol_rel=1e-10, name="dsigmas")


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_composite_gradcheck_kernel_f64(device):
    sig, ts, te, ri = _packed([3, 0, 4], torch.float64, device)
    inputs = [t.requires_grad_() for t in (sig, ts, te)]
    assert torch.autograd.gradcheck(lambda *a: composite_packed(*a, ri, 3), inputs, fast_mode=True)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_composite_double_backward(device):
    sig, ts, te, ri = _packed([3, 5], torch.float64, device)
    out = []
    for fn in (composite_packed, composite_packed_ref):
        s = sig.clone().requires_grad_()
        (g,) = torch.autograd.grad(fn(s, ts, te, ri, 2)[0].sum(), s, create_graph=True)
        out.append(torch.autograd.grad(g.square().sum(), s)[0])
    assert_close(out[0], out[1], rtol=1e-9, atol_rel=1e-10, name="grad of grad")


def test_composite_reference_gradcheck():
    sig, ts, te, ri = _packed([3, 0, 4], torch.float64, "cpu")
    inputs = [t.requires_grad_() for t in (sig, ts, te)]
    assert torch.autograd.gradcheck(lambda *a: composite_packed_ref(*a, ri, 3), inputs)


def test_composite_errors_name_the_argument():
    sig, ts, te, ri = _packed([3, 2], torch.float32, "cpu")
    with pytest.raises(ValueError, match="'t_ends'"):
        composite_packed(sig, ts, te[:-1], ri, 2)
    with pytest.raises(TypeError, match="'ray_indices'"):
        composite_packed(sig, ts, te, ri.int(), 2)
    with pytest.raises(TypeError, match="'t_starts'"):
        composite_packed(sig, ts.double(), te, ri, 2)
    with pytest.raises(ValueError, match="'n_rays'"):
        composite_packed(sig, ts, te, ri, -1)


# --------------------------------------------------------------------------- traverse_occupancy


def _rays(n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.4 + torch.tensor([-2.0, 0.1, 0.0])
    dirs = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([1.0, 0.0, 0.0])
    dirs = dirs * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))  # any length
    t_min = torch.rand(n, generator=g, dtype=torch.float64) * 0.5
    t_max = t_min + 1 + torch.rand(n, generator=g, dtype=torch.float64) * 4
    if n > 2:
        t_max[1] = t_min[1] - 0.1  # empty interval
        origins[2] = torch.tensor([5.0, 5.0, 5.0])  # misses the box
    jitter = torch.rand(n, generator=g, dtype=torch.float64)
    return [t.to(device, dtype) for t in (origins, dirs, t_min, t_max, jitter)]


def _grid(shape, device, seed=1, p=0.5):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).to(device)


def _boundary(origins, dirs, t_min, t_max, aabb, res, step, ts, te, ri):
    """True for samples whose midpoint is within 1e-4 cell of a cell face/aabb, or ts near t_max."""
    o, d, lo, hi = origins.double()[ri], dirs.double()[ri], aabb[0].double(), aabb[1].double()
    mid = 0.5 * (ts.double() + te.double())
    cells = (o + d * mid[:, None] - lo) / (hi - lo) * torch.tensor(res, dtype=torch.float64, device=o.device)
    near_face = ((cells - cells.round()).abs() < 1e-4).any(-1)
    near_end = (ts.double() - t_max.double()[ri]).abs() < 1e-5 * (1 + t_max.double()[ri].abs())
    return near_face | near_end


def _check_traverse(args, step, m, jitter, out=None):
    """``out`` (default: traverse_occupancy's) against the reference, up to samples on a cell boundary."""
    origins, dirs, t_min, t_max, binary, aabb = args
    if out is None:
        out = traverse_occupancy(origins, dirs, t_min, t_max, binary, aabb, step, m, jitter)
    ref = traverse_occupancy_ref(origins, dirs, t_min, t_max, binary, aabb, step, m, jitter)
    ts, te, ri = out
    assert ts.dtype == origins.dtype
    assert ri.dtype == torch.int64
    assert torch.all(ri[1:] >= ri[:-1])
    assert torch.all(ts < te)
    if ri.numel():
        assert torch.bincount(ri).max() <= m
    j = torch.zeros_like(t_min) if jitter is None else jitter

    def keys(s, r):  # (ray, step index) of each sample
        k = torch.round((s.double() - t_min.double()[r]) / step - j.double()[r]).long()
        return r * (m + 1) + k

    kk, kr = keys(ts, ri), keys(ref[0], ref[2])
    only_k, only_r = ~torch.isin(kk, kr), ~torch.isin(kr, kk)
    res = tuple(binary.shape)
    band_k = _boundary(origins, dirs, t_min, t_max, aabb, res, step, ts, te, ri)
    band_r = _boundary(origins, dirs, t_min, t_max, aabb, res, step, ref[0], ref[1], ref[2])
    assert torch.all(band_k[only_k]), "samples differ away from any boundary"
    assert torch.all(band_r[only_r]), "samples differ away from any boundary"
    assert int(only_k.sum() + only_r.sum()) <= max(1, kr.numel() // 100)
    common_k, common_r = ~only_k, ~only_r
    torch.testing.assert_close(ts[common_k], ref[0][common_r], rtol=1e-6, atol=0)
    torch.testing.assert_close(te[common_k], ref[1][common_r], rtol=1e-6, atol=0)
    assert torch.equal(ri[common_k], ref[2][common_r])
    return out


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_jitter", [False, True], ids=["fixed", "jitter"])
def test_traverse_matches_reference(device, dtype, use_jitter):
    # 37 rays (one empty interval, one missing the box), non-cubic grid, steps > one 64-step chunk
    origins, dirs, t_min, t_max, jitter = _rays(37, dtype, device)
    aabb = torch.tensor([[-1.0, -1.0, -0.8], [1.0, 0.9, 0.8]], device=device)
    args = (origins, dirs, t_min, t_max, _grid((8, 6, 5), device), aabb)
    ts, _, ri = _check_traverse(args, 0.03, 150, jitter if use_jitter else None)
    assert ts.numel() > 100
    assert not torch.any(ri == 1)
    assert not torch.any(ri == 2)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_traverse_cap_and_full_grid(device):
    # every cell occupied and a cap of 10 steps: each ray inside the box keeps <= 10 intervals
    origins, dirs, t_min, t_max, _ = _rays(9, torch.float32, device)
    origins[0] = torch.tensor([-0.5, 0.0, 0.0], device=device)  # starts inside the box
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    args = (origins, dirs, t_min, t_max, torch.ones(4, 4, 4, dtype=torch.bool, device=device), aabb)
    _, _, ri = _check_traverse(args, 0.05, 10, None)
    assert torch.bincount(ri)[0] == 10


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["R0", "m0", "empty-grid"])
def test_traverse_empty(device, case):
    origins, dirs, t_min, t_max, _ = _rays(0 if case == "R0" else 5, torch.float32, device)
    binary = torch.zeros(3, 3, 3, dtype=torch.bool, device=device) if case == "empty-grid" else \
        torch.ones(3, 3, 3, dtype=torch.bool, device=device)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    ts, te, ri = traverse_occupancy(origins, dirs, t_min, t_max, binary, aabb, 0.1, 0 if case == "m0" else 50)
    assert ts.shape == te.shape == ri.shape == (0,)
    assert ri.dtype == torch.int64


def test_traverse_errors_name_the_argument():
    origins, dirs, t_min, t_max, _ = _rays(4, torch.float32, "cpu")
    binary, aabb = torch.ones(2, 2, 2, dtype=torch.bool), torch.tensor([[-1.0] * 3, [1.0] * 3])
    with pytest.raises(ValueError, match="'dirs'"):
        traverse_occupancy(origins, dirs[:, :2], t_min, t_max, binary, aabb, 0.1, 8)
    with pytest.raises(TypeError, match="'binary'"):
        traverse_occupancy(origins, dirs, t_min, t_max, binary.float(), aabb, 0.1, 8)
    with pytest.raises(ValueError, match="'step_size'"):
        traverse_occupancy(origins, dirs, t_min, t_max, binary, aabb, 0.0, 8)
    with pytest.raises(TypeError, match="'max_samples_per_ray'"):
        traverse_occupancy(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8.5)
    with pytest.raises(ValueError, match="'jitter'"):
        traverse_occupancy(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8, torch.zeros(3))


# -- traverse_occupancy_next: the march resumed at a step, K kept intervals per ray ---------------------------


def _chain(fn, args, step, m, k, jitter=None):
    """Call ``fn`` (traverse_occupancy_next's signature) with k_start = k_next until every ray is done;
    returns the intervals packed as traverse_occupancy's (t_starts, t_ends, ray_indices) and the rounds."""
    origins = args[0]
    k_start = torch.zeros(origins.shape[0], dtype=torch.int32, device=origins.device)
    parts, rounds = [], 0
    while True:
        ts, te, counts, k_next = fn(*args, step, m, k_start, k, jitter)
        assert ts.shape == te.shape == (origins.shape[0], k)
        assert ts.dtype == origins.dtype
        assert counts.dtype == k_next.dtype == torch.int32
        assert bool((counts <= k).all())
        assert bool((k_next >= k_start).all())
        assert bool((k_next <= m).all())
        lane = torch.arange(k, device=origins.device)
        assert not bool(ts[lane >= counts[:, None]].any()), "slots past a ray's count must stay zero"
        slot_rank = (lane < counts[:, None]).long()
        parts.append((ts, te, slot_rank))
        rounds += 1
        if bool((k_next >= m).all()) or rounds > m + 1:
            break
        k_start = k_next
    # pack: each ray's rounds in order
    ts = torch.cat([p[0] for p in parts], 1)
    te = torch.cat([p[1] for p in parts], 1)
    used = torch.cat([p[2] for p in parts], 1).bool()
    rows, cols = used.nonzero(as_tuple=True)
    return (ts[rows, cols], te[rows, cols], rows), rounds


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5, 64, 200])
@pytest.mark.parametrize("use_jitter", [False, True], ids=["fixed", "jitter"])
def test_traverse_next_reference_chains_to_traverse_reference(dtype, k, use_jitter):
    # exact: same arithmetic as traverse_occupancy_ref, whatever K (1, a block, more than a ray holds)
    origins, dirs, t_min, t_max, jitter = _rays(37, dtype, "cpu")
    jitter = jitter if use_jitter else None
    aabb = torch.tensor([[-1.0, -1.0, -0.8], [1.0, 0.9, 0.8]])
    args = (origins, dirs, t_min, t_max, _grid((8, 6, 5), "cpu"), aabb)
    (ts, te, ri), rounds = _chain(traverse_next_ref, args, 0.03, 150, k, jitter)
    ref = traverse_occupancy_ref(*args, 0.03, 150, jitter)
    assert ref[0].numel() > 100
    assert torch.equal(ts, ref[0])
    assert torch.equal(te, ref[1])
    assert torch.equal(ri, ref[2])
    assert rounds >= (2 if k < 64 else 1)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [pytest.param(7, marks=pytest.mark.slow), 64, 100])  # k=7: 22 chained launches
@pytest.mark.parametrize("use_jitter", [False, True], ids=["fixed", "jitter"])
def test_traverse_next_matches_reference(device, dtype, k, use_jitter):
    # the kernel, chained, against traverse_occupancy_ref (cell-boundary samples may differ on a GPU)
    origins, dirs, t_min, t_max, jitter = _rays(37, dtype, device)
    jitter = jitter if use_jitter else None
    aabb = torch.tensor([[-1.0, -1.0, -0.8], [1.0, 0.9, 0.8]], device=device)
    args = (origins, dirs, t_min, t_max, _grid((8, 6, 5), device), aabb)
    out, _ = _chain(traverse_occupancy_next, args, 0.03, 150, k, jitter)
    _check_traverse(args, 0.03, 150, jitter, out=out)
    k0 = torch.zeros(37, dtype=torch.int32, device=device)
    one = traverse_occupancy_next(*args, 0.03, 150, k0, k, jitter)
    ref = traverse_next_ref(*args, 0.03, 150, k0, k, jitter)
    assert torch.equal(one[2], ref[2]) or device == "cuda"  # counts: exact under the interpreter
    assert torch.equal(one[3], ref[3]) or device == "cuda"


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_traverse_next_step_cap_and_done_rays(device):
    # a full grid: ray 0 starts inside and keeps every step; k_start >= max_steps means done
    origins, dirs, t_min, t_max, _ = _rays(6, torch.float32, device)
    origins[0] = torch.tensor([-0.5, 0.0, 0.0], device=device)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    binary = torch.ones(4, 4, 4, dtype=torch.bool, device=device)
    k_start = torch.tensor([3, 0, 0, 0, 10, 99], dtype=torch.int32, device=device)
    ts, te, counts, k_next = traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.05, 10, k_start, 4)
    assert counts.tolist()[0] == 4
    assert k_next.tolist()[0] == 7
    torch.testing.assert_close(ts[0], t_min[0] + torch.arange(3, 7, device=device).float() * 0.05)
    assert counts.tolist()[1] == 0
    assert counts.tolist()[2] == 0
    assert counts.tolist()[4:] == [0, 0]
    assert k_next.tolist()[4:] == [10, 10]
    assert k_next.tolist()[1] == 10


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_traverse_next_empty(device):
    origins, dirs, t_min, t_max, _ = _rays(0, torch.float32, device)
    binary = torch.ones(3, 3, 3, dtype=torch.bool, device=device)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    ts, te, counts, k_next = traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 50,
                                                     torch.zeros(0, dtype=torch.int32, device=device), 8)
    assert ts.shape == (0, 8)
    assert counts.shape == k_next.shape == (0,)
    origins, dirs, t_min, t_max, _ = _rays(5, torch.float32, device)
    ts, _, counts, k_next = traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 50,
                                                    torch.zeros(5, dtype=torch.int32, device=device), 0)
    assert ts.shape == (5, 0)
    assert counts.tolist() == [0] * 5


def test_traverse_next_errors_name_the_argument():
    origins, dirs, t_min, t_max, _ = _rays(4, torch.float32, "cpu")
    binary, aabb = torch.ones(2, 2, 2, dtype=torch.bool), torch.tensor([[-1.0] * 3, [1.0] * 3])
    k0 = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(TypeError, match="'k_start'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8, k0.long(), 4)
    with pytest.raises(ValueError, match="'k_start'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8, k0[:3], 4)
    with pytest.raises(ValueError, match="'n_keep'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8, k0, -1)
    with pytest.raises(TypeError, match="'max_steps'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8.0, k0, 4)
    with pytest.raises(ValueError, match="'t_max'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max[:2], binary, aabb, 0.1, 8, k0, 4)
    with pytest.raises(ValueError, match="'jitter'"):
        traverse_occupancy_next(origins, dirs, t_min, t_max, binary, aabb, 0.1, 8, k0, 4, torch.zeros(3))
