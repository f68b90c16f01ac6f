"""rbf_layer: Triton kernels vs rbf_layer_ref (forward values, VJPs, gradcheck, edge cases).

Tolerances (kernel in dtype vs reference in float64; atol is relative to max|reference|):
    phi:                 f32 rtol 1e-5, atol 1e-6   f64 rtol 1e-10, atol 1e-12
    dx, dcenters, dlog_prec: f32 rtol 1e-4, atol 1e-5   f64 rtol 1e-9, atol 1e-11
"""

import pytest
import torch

from conftest import DEVICES, DTYPES, as64, assert_close, requires_cuda, vjp
from fieldfit.cuda import RBF_KERNELS, rbf_layer
from fieldfit.cuda._dispatch import interpreter_enabled
from fieldfit.cuda._torch_ref import rbf_layer_ref
from fieldfit.cuda.rbf import GAUSSIAN_R_MAX_CPU

TOL = {
    torch.float32: {"value": (1e-5, 1e-6), "grad": (1e-4, 1e-5)},
    torch.float64: {"value": (1e-10, 1e-12), "grad": (1e-9, 1e-11)},
}


def _inputs(n, k, d, dtype, device, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * spread
    c = torch.randn(k, d, generator=g, dtype=torch.float64)
    lp = torch.randn(k, d, generator=g, dtype=torch.float64) * 0.3 - 0.5
    return [t.to(device, dtype) for t in (x, c, lp)]


def _check_against_ref(inputs, kernel, dtype, seed=1):
    n, k = inputs[0].shape[0], inputs[1].shape[0]
    cot = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (phi,), grads = vjp(lambda *a: rbf_layer(*a, kernel=kernel), inputs, [cot.to(inputs[0])])
    (phi_ref,), grads_ref = vjp(lambda *a: rbf_layer_ref(*a, kernel=kernel), as64(inputs), [cot.to(inputs[0].device)])
    assert phi.dtype == dtype
    assert_close(phi, phi_ref, rtol=TOL[dtype]["value"][0], atol_rel=TOL[dtype]["value"][1], name="phi")
    for name, g, gr in zip(("dx", "dcenters", "dlog_prec"), grads, grads_ref, strict=True):
        assert_close(g, gr, rtol=TOL[dtype]["grad"][0], atol_rel=TOL[dtype]["grad"][1], name=name)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", RBF_KERNELS)
def test_rbf_matches_reference(device, dtype, kernel):
    # N=37, K=13, D=7: no size is a multiple of any block size
    _check_against_ref(_inputs(37, 13, 7, dtype, device), kernel, dtype)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1000, 13, 7), (150, 70, 3)], ids=["N1000", "K70"])
def test_rbf_multi_tile(device, shape):
    # several N tiles per backward program (partials summed by the param kernel), several K tiles
    _check_against_ref(_inputs(*shape, torch.float32, device), "gaussian", torch.float32)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_backward_paths(device):
    # float32 D <= 64 takes the fused backward kernel, D > 64 the GEMM backward: both match
    from fieldfit.cuda import _rbf_triton

    for d, fused in ((64, True), (70, False)):
        inputs = _inputs(50, 9, d, torch.float32, device)
        assert _rbf_triton.fused_backward_ok(inputs[0]) == fused
        _check_against_ref(inputs, "inverse_quadratic", torch.float32)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_backward_strided_cotangent(device):
    # a transposed (non-contiguous) dL/dphi gives the same gradients as its contiguous copy
    x, c, lp = _inputs(40, 6, 5, torch.float32, device)
    cot = torch.randn(6, 40, generator=torch.Generator().manual_seed(3)).to(device).t()
    _, grads = vjp(rbf_layer, [x, c, lp], [cot])
    _, grads_contig = vjp(rbf_layer, [x, c, lp], [cot.contiguous()])
    for g, gc in zip(grads, grads_contig, strict=True):
        assert torch.equal(g, gc)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 5, 3), (6, 0, 3), (6, 5, 0)], ids=["N0", "K0", "D0"])
def test_rbf_empty(device, shape):
    x, c, lp = _inputs(*shape, torch.float32, device)
    (phi,), (dx, dc, dlp) = vjp(rbf_layer, [x, c, lp], [torch.ones(shape[0], shape[1], device=device)])
    assert phi.shape == (shape[0], shape[1])
    assert torch.equal(phi, rbf_layer_ref(x, c, lp))
    assert dx.shape == x.shape
    assert dc.shape == c.shape
    assert dlp.shape == lp.shape
    for g in (dx, dc, dlp):
        assert torch.all(g == 0)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", RBF_KERNELS)
def test_rbf_far_points_no_nan(device, kernel):
    # distances ~1e3 (r ~ 1e6): gaussian phi underflows to exactly 0, every grad stays finite
    x, c, lp = _inputs(20, 9, 3, torch.float32, device, spread=1e3)
    (phi,), grads = vjp(lambda *a: rbf_layer(*a, kernel=kernel), [x, c, lp], [torch.ones(20, 9, device=device)])
    assert torch.isfinite(phi).all()
    for g in grads:
        assert torch.isfinite(g).all()
    if kernel == "gaussian":
        assert (phi == 0).float().mean() > 0.9
        assert all((g == 0).all() for g in grads)
    _check_against_ref([x, c, lp], kernel, torch.float32)


def test_torch_path_keeps_far_gaussians_out_of_denormal_floats(monkeypatch):
    # the torch path (CPU) ends Gaussian units at r = 92: phi and every gradient are 0 or normal floats, within
    # 1.1e-20 of the exact layer, where the exact float32 layer makes denormals on the same inputs
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    x, c, lp = _inputs(512, 9, 3, torch.float32, "cpu", spread=12.0)

    def denormal(t):
        return ((t != 0) & (t.abs() < torch.finfo(torch.float32).tiny)).any().item()

    (phi,), grads = vjp(rbf_layer, [x, c, lp], [torch.ones(512, 9)])
    assert not denormal(phi)
    assert not any(denormal(g) for g in grads)
    exact = rbf_layer_ref(x, c, lp)  # float32, without the end
    assert (phi - exact).abs().max().item() <= 1e-6 * exact.abs().max().item() + 1.1e-20
    assert denormal(exact)
    assert (exact < 1e-25).float().mean().item() > 0.1  # units past the end were there


@pytest.mark.parametrize("spread", [1.0, 12.0])
def test_torch_path_gaussian_is_the_reference_with_its_end(monkeypatch, spread):
    # values and gradients of the torch path's Gaussian layer (two addmm) against the float64 reference clamped
    # at the same end, r = 92
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    x, c, lp = _inputs(300, 11, 5, torch.float64, "cpu", spread=spread)
    g = torch.randn(300, 11, dtype=torch.float64)
    (phi,), grads = vjp(rbf_layer, [x, c, lp], [g])
    (ref,), ref_grads = vjp(lambda *a: rbf_layer_ref(*a, r_max=GAUSSIAN_R_MAX_CPU), [x, c, lp], [g])
    assert_close(phi, ref, rtol=1e-10, atol_rel=1e-12, name="phi")
    for name, a, b in zip(("dx", "dcenters", "dlog_prec"), grads, ref_grads, strict=True):
        assert_close(a, b, rtol=1e-9, atol_rel=1e-11, name=name)
    if spread == 1.0:  # no distance near the clamp's ends: finite differences hold, to the second order too
        small = [t.clone().requires_grad_() for t in (x[:7], c[:4], lp[:4])]
        assert torch.autograd.gradcheck(rbf_layer, small)
        assert torch.autograd.gradgradcheck(rbf_layer, small)
    else:  # past the end the gradient is exp's at the end: at most e^-46 of dL/dphi, where the reference has 0
        past = ref == ref.min()
        assert past.float().mean().item() > 0.1


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_point_on_center(device):
    # r = 0 exactly: phi = kernel(0), gradients exactly 0 for that pair
    x, c, lp = _inputs(4, 3, 5, torch.float32, device)
    x[1] = c[2]
    phi = rbf_layer(x, c, lp)
    assert phi[1, 2].item() == 1.0
    _check_against_ref([x, c, lp], "gaussian", torch.float32)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", [0, 1, 2])
def test_rbf_needs_input_grad(device, which):
    # only one input requires grad: the others get no gradient (and no kernel runs for them)
    inputs = _inputs(10, 4, 3, torch.float32, device)
    inputs[which].requires_grad_()
    rbf_layer(*inputs).sum().backward()
    for i, t in enumerate(inputs):
        assert (t.grad is not None) == (i == which)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_gradcheck_kernel_f64(device):
    inputs = [t.requires_grad_() for t in _inputs(5, 3, 2, torch.float64, device)]
    assert torch.autograd.gradcheck(lambda *a: rbf_layer(*a, kernel="inverse_multiquadric"), inputs, fast_mode=True)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_double_backward(device):
    # create_graph=True: the backward goes through the reference, so grad-of-grad works
    inputs = [t.requires_grad_() for t in _inputs(6, 4, 3, torch.float64, device)]
    ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = []
    for fn, args in ((rbf_layer, inputs), (rbf_layer_ref, ref_inputs)):
        (gx,) = torch.autograd.grad(fn(*args).sum(), args[0], create_graph=True)
        out.append(torch.autograd.grad(gx.square().sum(), args))
    for a, b in zip(*out, strict=True):
        assert_close(a, b, rtol=1e-9, atol_rel=1e-11, name="grad of grad")


@pytest.mark.parametrize("kernel", RBF_KERNELS)
def test_rbf_reference_gradcheck(kernel):
    inputs = [t.requires_grad_() for t in _inputs(5, 4, 3, torch.float64, "cpu")]
    assert torch.autograd.gradcheck(lambda *a: rbf_layer_ref(*a, kernel=kernel), inputs)


def test_rbf_errors_name_the_argument():
    x, c, lp = _inputs(5, 4, 3, torch.float32, "cpu")
    with pytest.raises(ValueError, match="'centers'"):
        rbf_layer(x, c[:, :2], lp)
    with pytest.raises(ValueError, match="'log_prec'"):
        rbf_layer(x, c, lp[:3])
    with pytest.raises(ValueError, match="'x'"):
        rbf_layer(x[0], c, lp)
    with pytest.raises(TypeError, match="'centers'"):
        rbf_layer(x, c.double(), lp)
    with pytest.raises(TypeError, match="'x'"):
        rbf_layer(x.half(), c, lp)
    with pytest.raises(ValueError, match="'kernel'"):
        rbf_layer(x, c, lp, kernel="cubic")
    with pytest.raises(ValueError, match="'centers'.*meta"):
        rbf_layer(x, c.to("meta"), lp)


@pytest.mark.parametrize("grid", ["hash", "triplane"])
def test_radiance_field_grads_match_reference(monkeypatch, grid):
    # the kernels inside a real field (grid kernel + rbf_layer forward and fused backward): density and
    # every parameter's gradient equal the all-torch field's
    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not 1")
    from fieldfit.fields.components.encodings import GridConfig
    from fieldfit.fields.gaussian_rbf import FieldConfig
    from fieldfit.fields.radiance_rbf import RadianceRBF

    torch.manual_seed(0)
    cfg = FieldConfig(grid=GridConfig(kind=grid, levels=4, base_res=4, max_res=32, features=2, table_log2=10), units=24)
    field = RadianceRBF(cfg, [[-1, -1, -1], [1, 1, 1]])
    with torch.no_grad():
        for p in field.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.rand(300, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(300, 3), dim=-1)
    runs = {}
    for mode in ("torch", "triton"):
        monkeypatch.setenv("FIELDFIT_KERNELS", mode)
        field.zero_grad()
        out = field(x, d)
        (out.density.square().sum() + out.rgb.sum()).backward()
        runs[mode] = out.density.detach(), {n: p.grad.clone() for n, p in field.named_parameters()}
    assert_close(runs["triton"][0], runs["torch"][0], rtol=1e-5, atol_rel=1e-6, name="density")
    for name, g in runs["torch"][1].items():
        assert_close(runs["triton"][1][name], g, rtol=1e-4, atol_rel=1e-5, name=name)


# -- the tensor-core forward (expanded form) and the measured choice between the two forwards ------------

def _forward_impls():
    from fieldfit.cuda import _rbf_triton

    return _rbf_triton


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(37, 13, 7), (150, 70, 3), (200, 64, 32), (70, 20, 64)],
                         ids=["odd", "K70", "D32", "D64"])
def test_rbf_forward_dot_matches_reference(device, shape):
    R = _forward_impls()
    x, c, lp = _inputs(*shape, torch.float32, device)
    for kernel in RBF_KERNELS if shape == (37, 13, 7) else ("gaussian",):
        want = rbf_layer_ref(*as64([x, c, lp]), kernel=kernel)
        got = R.forward_dot(x, c, lp, kernel)
        assert got.dtype == torch.float32
        assert got.shape == want.shape
        # the expanded form: float32 rounding of terms up to sum_d beta (x^2 + mu^2), not of r itself
        assert_close(got, want, rtol=1e-5, atol_rel=1e-5, name=f"phi {kernel}")
        assert_close(R.forward_loop(x, c, lp, kernel), want, rtol=1e-5, atol_rel=1e-6, name=f"loop {kernel}")
    assert R.forward_dot(x[:0], c, lp, "gaussian").shape == (0, shape[1])
    with pytest.raises(ValueError, match="float32"):
        R.forward_dot(x.double(), c.double(), lp.double(), "gaussian")


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_rbf_forward_dot_cancellation_is_the_references(device):
    # |x|, |mu| ~ 30 with |x - mu| ~ 0.3 and beta ~ e^3 (METHODS.md 1.9.4): the expanded form loses digits to
    # cancellation. The tensor-core forward may lose what the float32 reference (the CPU path) loses, not more;
    # the loop (direct form) loses nothing.
    R = _forward_impls()
    g = torch.Generator().manual_seed(3)
    c = 30.0 + torch.randn(16, 8, generator=g, dtype=torch.float64)
    x = c[torch.randint(0, 16, (300,), generator=g)] + 0.3 * torch.randn(300, 8, generator=g, dtype=torch.float64)
    lp = 3.0 + 0.1 * torch.randn(16, 8, generator=g, dtype=torch.float64)
    exact = rbf_layer_ref(x, c, lp)  # float64
    exact_direct = torch.exp(-0.5 * ((x[:, None] - c[None]) ** 2 * lp.exp()[None]).sum(-1))
    torch.testing.assert_close(exact, exact_direct, rtol=1e-9, atol=1e-12)
    x32, c32, lp32 = (t.float().to(device) for t in (x, c, lp))
    err = {name: float((fn(x32, c32, lp32, "gaussian").double().cpu() - exact).abs().max())
           for name, fn in (("dot", R.forward_dot), ("loop", R.forward_loop))}
    err["reference"] = float((rbf_layer_ref(x32, c32, lp32).double().cpu() - exact).abs().max())
    assert err["reference"] > 1e-4  # the regime is real: float32's expanded form is off in the 4th digit
    assert err["dot"] <= 4 * err["reference"], err
    assert err["loop"] < 1e-5, err


def test_kernel_choice_times_each_candidate_once_per_shape():
    calls = {"loop": 0, "dot": 0}
    cost = {"loop": 3.0, "dot": 1.0}

    def fn(name):
        def run():
            calls[name] += 1
            return name
        return run

    timer = lambda f, device: cost[f()]  # noqa: E731 - a fake clock: each run "takes" its cost
    from fieldfit.cuda._choice import Choice

    choice = Choice(timer=timer)
    cands = {m: fn(m) for m in ("loop", "dot")}
    assert choice(("cuda0", 32, 64, "gaussian"), cands) == "dot"
    assert calls == {"loop": 4, "dot": 4}  # one uncounted warm-up (compilation) + 3 timed runs each
    assert choice(("cuda0", 32, 64, "gaussian"), cands) == "dot"
    assert calls == {"loop": 4, "dot": 4}
    cost["loop"] = 0.5
    assert choice(("cuda0", 3, 64, "gaussian"), cands) == "loop"  # another shape, timed on its own
    assert choice.chosen == {("cuda0", 32, 64, "gaussian"): "dot", ("cuda0", 3, 64, "gaussian"): "loop"}
    assert choice.call(("cuda0", 32, 64, "gaussian"), {"loop": lambda a: a + 1, "dot": lambda a: a * 10}, 3) == 30
    choice.pinned = "loop"  # a benchmark's A/B: the pinned one, untimed
    assert choice(("cuda0", 16, 64, "gaussian"), cands) == "loop"
    assert calls == {"loop": 8, "dot": 8}
    assert ("cuda0", 16, 64, "gaussian") not in choice.chosen


@requires_cuda
@pytest.mark.requires_cuda
@pytest.mark.usefixtures("triton_kernels")
def test_rbf_forward_on_a_gpu_takes_the_faster_kernel():
    # N >= 2^14 on a GPU: the first call times both forwards; whichever wins, phi and its grads are right
    R = _forward_impls()
    from fieldfit.cuda._choice import MIN_POINTS

    inputs = _inputs(MIN_POINTS + 5, 64, 32, torch.float32, "cuda")
    key = (inputs[0].device.index, 32, 64, "gaussian")
    R._forward_choice.chosen.pop(key, None)
    phi = rbf_layer(*inputs)
    chosen = R._forward_choice.chosen[key]
    assert chosen in ("loop", "dot")
    assert_close(phi, rbf_layer_ref(*as64(inputs)), rtol=1e-5, atol_rel=1e-5, name=f"phi ({chosen})")
