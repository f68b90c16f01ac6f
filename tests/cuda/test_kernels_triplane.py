"""triplane_grid: the fused Triton lookup (all planes and volumes in two launches) vs triplane_ref.

Tolerances as tests/test_kernels_grid.py's dense grid (the same blending per grid): atol relative
to max|reference|, features f32 rtol 1e-5 atol 1e-6 / f64 1e-10, 1e-12; gradients f32 rtol 1e-4
atol 1e-5 / f64 1e-9, 1e-11. dx is compared away from cell boundaries in float32 (a GPU's fused
multiply-adds may put a point a rounding error across one, where dx jumps).
"""

import pytest
import torch

from conftest import DEVICES, DTYPES, assert_close, requires_cuda, vjp
from fieldfit.cuda import triplane_grid
from fieldfit.cuda._torch_ref import triplane_ref
from fieldfit.cuda.triplane import pack

TOL = {
    torch.float32: {"value": (1e-5, 1e-6), "grad": (1e-4, 1e-5)},
    torch.float64: {"value": (1e-10, 1e-12), "grad": (1e-9, 1e-11)},
}


def _grids(f, plane_res, volume_res, dtype, device, seed=2):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device, dtype)  # noqa: E731 - seeded tensors
    planes = [mk(f, r, r) for r in plane_res for _ in range(3)]
    return planes, [mk(f, r, r, r) for r in volume_res]


def _points(n, dtype, device, seed=0, reach=1.15):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * reach).to(device, dtype)


def _off_boundaries(x, res, band=1e-4):
    pos = (x.double().clamp(-1, 1) + 1) * 0.5
    keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for r in res:
        p = pos * (r - 1)
        keep &= ((p - p.round()).abs() >= band).all(dim=-1)
    return keep


def _compare(x, planes, volumes, dtype):
    n_p = len(planes)
    fn = lambda a, *g: triplane_grid(a, g[:n_p], g[n_p:])  # noqa: E731 - the op on flat inputs
    ref = lambda a, *g: triplane_ref(a, g[:n_p], g[n_p:])  # noqa: E731 - the reference on flat inputs
    inputs = [x, *planes, *volumes]
    out_ref = ref(*inputs)
    cot = torch.randn(out_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(x)
    (out,), grads = vjp(fn, inputs, [cot])
    (out_ref,), grads_ref = vjp(ref, inputs, [cot])
    assert_close(out, out_ref, rtol=TOL[dtype]["value"][0], atol_rel=TOL[dtype]["value"][1], name="features")
    rows = _off_boundaries(x, sorted({g.shape[-1] for g in planes + volumes})) if dtype == torch.float32 else \
        slice(None)
    assert_close(grads[0][rows], grads_ref[0][rows], rtol=TOL[dtype]["grad"][0], atol_rel=TOL[dtype]["grad"][1],
                 name="dx")
    for i, (g, gr) in enumerate(zip(grads[1:], grads_ref[1:], strict=True)):
        assert_close(g, gr, rtol=TOL[dtype]["grad"][0], atol_rel=TOL[dtype]["grad"][1], name=f"dgrid[{i}]")
    return out


CASES = [
    pytest.param(4, (5, 9), (3,), id="F4-two-levels-volume"),
    pytest.param(3, (7,), (), id="F3-planes-only"),
    pytest.param(12, (4, 6), (2, 4), id="F12-two-chunks-two-volumes"),  # F > the 8-feature chunk
]


@pytest.fixture(params=["tile", "point"])
def triplane_backward(request, monkeypatch):
    """Each test runs with each backward kernel (on a GPU ``backward`` times both and keeps one)."""
    from fieldfit.cuda import _triplane_triton

    monkeypatch.setattr(_triplane_triton, "backward", getattr(_triplane_triton, f"backward_{request.param}"))
    return request.param


@pytest.mark.usefixtures("triton_kernels", "triplane_backward")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("f", "plane_res", "volume_res"), CASES)
def test_triplane_matches_reference(device, dtype, f, plane_res, volume_res):
    planes, volumes = _grids(f, plane_res, volume_res, dtype, device)
    out = _compare(_points(37, dtype, device), planes, volumes, dtype)  # 37: not a multiple of the tile
    assert out.shape == (37, f * (3 * len(plane_res) + len(volume_res)))


@pytest.mark.usefixtures("triton_kernels", "triplane_backward")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["channels-first", "channels-last"])
def test_triplane_packed_grids_read_in_place(device, channels_last, monkeypatch):
    """Packed grids (one storage, back to back, either layout) are read without a copy; their grads come back
    with their shape and strides (what fused Adam needs)."""
    from fieldfit.cuda import triplane

    planes, volumes = _grids(4, (5, 8), (3,), torch.float32, device)
    grids = [torch.nn.Parameter(g) for g in planes + volumes]
    pack(grids, channels_last=channels_last)
    base = grids[0].untyped_storage().data_ptr()
    assert all(g.untyped_storage().data_ptr() == base for g in grids)
    assert all(g.is_contiguous() != channels_last for g in grids)
    buffers = []
    flat = triplane._flat
    monkeypatch.setattr(triplane, "_flat", lambda g: buffers.append(flat(g)) or buffers[-1])
    _compare(_points(300, torch.float32, device), grids[:6], grids[6:], torch.float32)
    assert buffers
    assert all(b.data_ptr() == base and cl == channels_last for b, cl in buffers)
    triplane_grid(_points(5, torch.float32, device), grids[:6], grids[6:]).sum().backward()
    assert all(g.grad.shape == g.shape and g.grad.stride() == g.stride() for g in grids)


@pytest.mark.parametrize("first", [False, True], ids=["from-channels-first", "from-channels-last"])
def test_pack_switches_layout_and_keeps_values(first):
    planes, volumes = _grids(3, (4, 6), (3,), torch.float64, "cpu")
    grids = [torch.nn.Parameter(g.clone()) for g in planes + volumes]
    pack(grids, channels_last=first)
    pack(grids, channels_last=not first)
    assert all(torch.equal(g, want) for g, want in zip(grids, planes + volumes, strict=True))
    assert all(g.is_contiguous() == first for g in grids)
    ptr = grids[0].data_ptr()
    pack(grids, channels_last=not first)  # already there: nothing moves
    assert grids[0].data_ptr() == ptr


@pytest.mark.usefixtures("triton_kernels", "triplane_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_triplane_empty_and_extremes(device):
    planes, volumes = _grids(2, (3,), (2,), torch.float64, device)
    x0 = torch.zeros(0, 3, device=device, dtype=torch.float64)
    cot = torch.zeros(0, 8, device=device, dtype=torch.float64)
    (out,), grads = vjp(lambda a, *g: triplane_grid(a, g[:3], g[3:]), [x0, *planes, *volumes], [cot])
    assert out.shape == (0, 8)
    assert all(g is not None and torch.all(g == 0) for g in grads[1:])
    far = torch.tensor([[1e6, -1e6, 0.0], [-1.0, 1.0, 1.0]], dtype=torch.float64, device=device)
    _compare(far, planes, volumes, torch.float64)  # far outside reads the border, x-grad 0 there


@requires_cuda
@pytest.mark.requires_cuda
@pytest.mark.usefixtures("triton_kernels")
def test_triplane_backward_on_a_gpu_takes_the_faster_kernel():
    from fieldfit.cuda import _triplane_triton

    _triplane_triton._backward_choice.chosen.clear()
    planes, volumes = _grids(4, (16, 40), (8,), torch.float32, "cuda")
    _compare(_points(1 << 15, torch.float32, "cuda"), planes, volumes, torch.float32)
    assert list(_triplane_triton._backward_choice.chosen.values()) in (["tile"], ["point"])


def test_triplane_reference_gradcheck_f64():
    planes, volumes = _grids(2, (3, 4), (3,), torch.float64, "cpu")
    x = _points(5, torch.float64, "cpu", reach=0.9)
    inputs = [t.requires_grad_() for t in [x, *planes, *volumes]]
    assert torch.autograd.gradcheck(lambda a, *g: triplane_ref(a, g[:6], g[6:]), inputs, fast_mode=True)


def test_triplane_names_bad_arguments():
    planes, _ = _grids(2, (3,), (), torch.float32, "cpu")
    with pytest.raises(ValueError, match="'x' must have shape \\[N, 3\\]"):
        triplane_grid(torch.zeros(4, 2), planes)
    with pytest.raises(ValueError, match="'planes' must hold 3 grids per level"):
        triplane_grid(torch.zeros(4, 3), planes[:2])
    with pytest.raises(ValueError, match="planes\\[1\\]"):
        triplane_grid(torch.zeros(4, 3), [planes[0], torch.zeros(3, 3, 3), planes[2]])


def test_triplane_module_uses_the_fused_path(monkeypatch):
    """TriPlane.forward with the Triton backend forced gives the per-grid result."""
    from fieldfit.cuda._dispatch import interpreter_enabled
    from fieldfit.fields.components.encodings import GridConfig, TriPlane

    if not interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is not 1")
    enc = TriPlane(GridConfig(levels=2, base_res=4, max_res=8, features=2, volume_max_res=4, init_scale=1.0))
    x = _points(20, torch.float32, "cpu")
    ref = enc(x)
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    out = enc(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_packed_grids_save_and_load(tmp_path):
    """A checkpoint of packed grids (views into one storage) is written and read back unchanged."""
    from fieldfit.runs import Run

    planes, volumes = _grids(2, (3, 5), (3,), torch.float32, "cpu")
    grids = [torch.nn.Parameter(g) for g in planes + volumes]
    pack(grids)
    run = Run.create(tmp_path / "r")
    run.save_checkpoint({f"g{i}": g for i, g in enumerate(grids)}, {"step": 1})
    loaded, meta = run.load_checkpoint()
    assert all(torch.equal(loaded[f"g{i}"], g.detach()) for i, g in enumerate(grids))
