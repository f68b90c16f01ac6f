"""rbf_layer: Triton kernels vs rbf_layer_ref (forward values, VJPs, gradcheck, edge cases).

Tolerances (kernel in dtype vs reference in float64; atol is relative to max|reference|):
    phi:                 f32 rtol 1e-5, atol 1e-6   f64 rtol 1e-10, atol 1e-12
    dx, dcenters, dlog_prec: f32 rtol 1e-4, atol 1e-5   f64 rtol 1e-9, atol 1e-11
"""

import pytest
import torch
from _kernel_utils import DEVICES, DTYPES, as64, assert_close, triton_kernels, vjp  # noqa: F401

from fieldfit.cuda import RBF_KERNELS, rbf_layer
from fieldfit.cuda._dispatch import interpreter_enabled
from fieldfit.cuda._torch_ref import rbf_layer_ref

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
    for name, g, gr in zip(("dx", "dcenters", "dlog_prec"), grads, grads_ref):
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
    for g, gc in zip(grads, grads_contig):
        assert torch.equal(g, gc)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 5, 3), (6, 0, 3), (6, 5, 0)], ids=["N0", "K0", "D0"])
def test_rbf_empty(device, shape):
    x, c, lp = _inputs(*shape, torch.float32, device)
    (phi,), (dx, dc, dlp) = vjp(rbf_layer, [x, c, lp], [torch.ones(shape[0], shape[1], device=device)])
    assert phi.shape == (shape[0], shape[1])
    assert torch.equal(phi, rbf_layer_ref(x, c, lp))
    assert dx.shape == x.shape and dc.shape == c.shape and dlp.shape == lp.shape
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
    for a, b in zip(*out):
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
