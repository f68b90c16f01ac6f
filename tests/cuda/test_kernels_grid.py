"""dense_grid and hash_grid: Triton kernels vs dense_grid_ref / hash_grid_ref.

The reference runs in the SAME dtype as the kernel: the cell a point falls in (floor of a position
computed in that dtype) must be the same one, and the kernels use the references' float ops for
it, so corners agree; the tolerances cover blending and summation order.
Tolerances (atol is relative to max|reference|):
    features:           f32 rtol 1e-5, atol 1e-6   f64 rtol 1e-10, atol 1e-12
    dgrid / dtable, dx: f32 rtol 1e-4, atol 1e-5   f64 rtol 1e-9, atol 1e-11
Hash features in float32 get atol 8 d eps32 max(res) instead: compiled for a GPU, the kernel's
fraction pos - floor(pos) is one fused multiply-add (u (res-1) - floor, no rounding of pos),
the reference's is rounded twice, so they differ by up to ulp(pos) per axis; a value moves by
at most that times 2 max|table| (seen on an H200: 2.5e-5 at res 200, where ulp(199) = 1.5e-5).
"""

import pytest
import torch

from conftest import DEVICES, DTYPES, assert_close, requires_cuda, vjp
from fieldfit.cuda import dense_grid, hash_grid
from fieldfit.cuda._torch_ref import dense_grid_ref, hash_grid_ref

TOL = {
    torch.float32: {"value": (1e-5, 1e-6), "grad": (1e-4, 1e-5)},
    torch.float64: {"value": (1e-10, 1e-12), "grad": (1e-9, 1e-11)},
}


def _points(n, d, dtype, device, seed=0, reach=1.15):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1) * reach).to(device, dtype)


def _off_cell_boundaries(x, res, band=1e-4):
    """Rows of x at least ``band`` cells from every cell boundary of every level.

    dx jumps across a cell boundary, and float32 positions computed by fused multiply-adds on a
    GPU can land a point a rounding error across one (STYLE practice 5): such points are compared
    by value and table gradient, but their dx is not.
    """
    pos = (x.double().clamp(-1, 1) + 1) * 0.5
    keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for r in res:
        p = pos * (int(r) - 1)
        keep &= ((p - p.round()).abs() >= band).all(dim=-1)
    return keep


def _hash_value_atol(dtype, d, res):
    """See the module doc: the float32 position rounding bound of the hash features."""
    if dtype != torch.float32:
        return TOL[dtype]["value"][1]
    return max(TOL[dtype]["value"][1], 8 * d * torch.finfo(torch.float32).eps * max(int(r) for r in res))


def _compare(fn, ref, inputs, dtype, names, seed=1, dx_rows=None, value_atol=None):
    out_ref = ref(*inputs)
    cot = torch.randn(out_ref.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (out,), grads = vjp(fn, inputs, [cot.to(inputs[0])])
    (out_ref,), grads_ref = vjp(ref, inputs, [cot.to(inputs[0])])
    assert out.dtype == dtype
    assert_close(out, out_ref, rtol=TOL[dtype]["value"][0], atol_rel=value_atol or TOL[dtype]["value"][1],
                 name=names[0])
    for name, g, gr in zip(names[1:], grads, grads_ref, strict=True):
        if name == "dx" and dx_rows is not None and dtype == torch.float32:
            g, gr = g[dx_rows], gr[dx_rows]
        assert_close(g, gr, rtol=TOL[dtype]["grad"][0], atol_rel=TOL[dtype]["grad"][1], name=name)
    return out, grads


# --------------------------------------------------------------------------- dense_grid

DENSE_CASES = [
    pytest.param(2, (5, 9, 7), id="2d-F5"),
    pytest.param(3, (3, 5, 6, 7), id="3d-F3"),
    pytest.param(2, (40, 4, 3), id="2d-F40"),  # F > the 8-feature chunk: five chunks, the last partial
    pytest.param(3, (1, 1, 2, 3), id="3d-depth1"),  # a size-1 axis (grid_sample maps it to index 0)
]


@pytest.fixture(params=["tile", "point"])
def dense_backward(request, monkeypatch):
    """Each dense test runs with each backward kernel (on a GPU dense_backward times both and keeps one)."""
    from fieldfit.cuda import _grid_triton

    monkeypatch.setattr(_grid_triton, "dense_backward", getattr(_grid_triton, f"dense_backward_{request.param}"))
    return request.param


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("d", "shape"), DENSE_CASES)
def test_dense_matches_reference(device, dtype, d, shape):
    # N=37 points, 15% of the range outside [-1,1] (border padding, zero x-grad there)
    x = _points(37, d, dtype, device)
    grid = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(device, dtype)
    _compare(dense_grid, dense_grid_ref, [x, grid], dtype, ("features", "dx", "dgrid"))


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_many_points_channels_last(device):
    # N=1000 (8 point tiles) and a channels-last grid, read through its strides without a copy
    x = _points(1000, 3, torch.float32, device)
    base = torch.randn(6, 7, 5, 4, generator=torch.Generator().manual_seed(3)).to(device)  # [D,H,W,F]
    grid = base.permute(3, 0, 1, 2)
    assert not grid.is_contiguous()
    _, (_, dgrid) = _compare(dense_grid, dense_grid_ref, [x, grid], torch.float32, ("features", "dx", "dgrid"))


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_channels_last_grad_keeps_layout(device):
    grid = torch.randn(5, 6, 4, device=device).permute(2, 0, 1).requires_grad_()  # [F=4, 5, 6]
    dense_grid(_points(9, 2, torch.float32, device), grid).sum().backward()
    assert grid.grad.stride() == grid.stride()


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_vertices_and_border(device):
    # points exactly on vertices, on the border (x = +-1) and far outside: values exact,
    # x-grad zero on and beyond the border as in grid_sample
    grid = torch.randn(2, 5, 9, dtype=torch.float64, device=device)
    xs = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [0.25, 0.5], [-0.75, 1.0], [3.0, -7.0], [-1.0, 0.3]],
                      dtype=torch.float64, device=device)
    out, grads = _compare(dense_grid, dense_grid_ref, [xs, grid], torch.float64, ("features", "dx", "dgrid"))
    assert torch.equal(out[1], grid[:, -1, -1])
    assert torch.all(grads[0][[0, 1, 5], :] == 0)


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_empty(device):
    x = torch.zeros(0, 3, device=device)
    grid = torch.randn(4, 3, 3, 3, device=device)
    (out,), (dx, dgrid) = vjp(dense_grid, [x, grid], [torch.zeros(0, 4, device=device)])
    assert out.shape == (0, 4)
    assert dx.shape == (0, 3)
    assert torch.all(dgrid == 0)


@pytest.mark.usefixtures("triton_kernels", "dense_backward")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_gradcheck_kernel_f64(device):
    x = _points(4, 2, torch.float64, device, reach=0.9).requires_grad_()
    grid = torch.randn(2, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(dense_grid, [x, grid], fast_mode=True)


@requires_cuda
@pytest.mark.requires_cuda
@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("layout", ["channels-last", "channels-first"])
def test_dense_backward_on_a_gpu_takes_the_faster_kernel(layout):
    # >= 2^14 points on a GPU: the first backward times both kernels; whichever wins, the grads are right
    from fieldfit.cuda import _grid_triton

    x = _points(1 << 15, 2, torch.float32, "cuda")
    base = torch.randn(64, 48, 8, generator=torch.Generator().manual_seed(4)).cuda()
    grid = base.permute(2, 0, 1) if layout == "channels-last" else base.permute(2, 0, 1).contiguous()
    key = (x.device.index, 2, 8, tuple(grid.stride()), True, True)
    _grid_triton._dense_backward_choice.chosen.pop(key, None)
    _compare(dense_grid, dense_grid_ref, [x, grid], torch.float32, ("features", "dx", "dgrid"),
             dx_rows=_off_cell_boundaries(x, [64, 48]))
    assert _grid_triton._dense_backward_choice.chosen[key] in ("tile", "point")


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_dense_double_backward(device):
    if device == "cuda":  # the reference is grid_sample, whose backward has no derivative on CUDA
        pytest.skip("torch's grid_sample backward is not twice differentiable on CUDA")
    x = _points(5, 3, torch.float64, device, reach=0.9).requires_grad_()
    grid = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    out = []
    for fn in (dense_grid, dense_grid_ref):
        (gx,) = torch.autograd.grad(fn(x, grid).square().sum(), x, create_graph=True)
        out.append(torch.autograd.grad(gx.square().sum(), grid))
    assert_close(out[0][0], out[1][0], rtol=1e-9, atol_rel=1e-11, name="grad of grad")


@pytest.mark.parametrize("d", [2, 3])
def test_dense_reference_gradcheck(d):
    x = _points(4, d, torch.float64, "cpu", reach=0.9).requires_grad_()
    grid = torch.randn(2, *([3] * d), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dense_grid_ref, [x, grid])


def test_dense_errors_name_the_argument():
    with pytest.raises(ValueError, match="'x'"):
        dense_grid(torch.zeros(3, 4), torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="'grid'"):
        dense_grid(torch.zeros(3, 3), torch.zeros(2, 3, 3))
    with pytest.raises(TypeError, match="'grid'"):
        dense_grid(torch.zeros(3, 2), torch.zeros(2, 3, 3, dtype=torch.float64))


# --------------------------------------------------------------------------- hash_grid

HASH_CASES = [
    # d, resolutions (dense levels, hashed levels, res = 1), table rows T (power of two or not)
    pytest.param(3, [1, 2, 4, 7, 16], 64, id="3d-T64"),
    pytest.param(3, [3, 5, 11], 100, id="3d-T100"),
    pytest.param(2, [2, 8, 9, 33], 64, id="2d-T64"),
    pytest.param(1, [5, 70, 200], 67, id="1d-T67"),
]


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("d", "res", "rows"), HASH_CASES)
def test_hash_matches_reference(device, dtype, d, res, rows):
    x = _points(37, d, dtype, device, reach=1.1)
    table = torch.randn(len(res), rows, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    table = table.to(device, dtype)
    _compare(lambda a, b: hash_grid(a, b, res), lambda a, b: hash_grid_ref(a, b, res), [x, table], dtype,
             ("features", "dx", "dtable"), dx_rows=_off_cell_boundaries(x, res),
             value_atol=_hash_value_atol(dtype, d, res))


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_hash_many_points_collisions(device):
    # N=300 points into a 16-row table: many points share rows, so the atomic scatter must add up
    res = [4, 16, 64]
    x = _points(300, 2, torch.float32, device)
    table = torch.randn(3, 16, 2, generator=torch.Generator().manual_seed(5)).to(device)
    rows = _off_cell_boundaries(x, res)
    assert rows.sum() > 200  # the band excludes the clamped points (reach 1.15) and a few more
    _compare(lambda a, b: hash_grid(a, b, res), lambda a, b: hash_grid_ref(a, b, res), [x, table],
             torch.float32, ("features", "dx", "dtable"), dx_rows=rows,
             value_atol=_hash_value_atol(torch.float32, 2, res))


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_hash_empty_and_resolution_tensor(device):
    table = torch.randn(2, 32, 2, device=device)
    (out,), (dx, dtable) = vjp(lambda a, b: hash_grid(a, b, torch.tensor([4, 8])),
                               [torch.zeros(0, 3, device=device), table], [torch.zeros(0, 4, device=device)])
    assert out.shape == (0, 4)
    assert dx.shape == (0, 3)
    assert torch.all(dtable == 0)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_hash_table_only_grad(device):
    # the usual training case: x does not require grad, the table does
    table = torch.randn(2, 64, 2, device=device, requires_grad=True)
    x = _points(20, 3, torch.float32, device)
    hash_grid(x, table, [3, 9]).sum().backward()
    assert x.grad is None
    assert table.grad is not None


def _along_rays(rays, per_ray, device, step=0.01):
    """Points ray after ray, ``step`` apart: consecutive points share coarse cells (a training batch's order)."""
    g = torch.Generator().manual_seed(6)
    d = torch.nn.functional.normalize(torch.randn(rays, 3, generator=g), dim=1)
    start = torch.rand(rays, 3, generator=g) - 0.5
    x = start[:, None, :] + (torch.arange(per_ray) * step)[None, :, None] * d[:, None, :]
    return x.reshape(-1, 3).to(device)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["rays", pytest.param("uniform", marks=pytest.mark.slow)])
def test_hash_merged_runs_match_reference(device, layout, monkeypatch):
    # MERGE_RUNS: on dense levels, consecutive points that share a corner add it once (a segmented scan). Runs
    # cross tile boundaries and end in the masked tail (300 points, tiles of 128); levels 4, 8 and 16 are dense,
    # 40 is hashed (40^3 > 4096 rows) and keeps one add per point; table-only (training) and with dx
    from fieldfit.cuda import _grid_triton

    monkeypatch.setattr(_grid_triton, "MERGE_RUNS", True)
    calls = []
    add_runs = _grid_triton._add_runs

    def spy(*args, **kwargs):  # the interpreter calls the kernel's helpers through the module
        calls.append(1)
        return add_runs(*args, **kwargs)

    monkeypatch.setattr(_grid_triton, "_add_runs", spy)
    res = [4, 8, 16, 40]
    x = _along_rays(10, 30, device) if layout == "rays" else _points(300, 3, torch.float32, device, reach=1.0)
    table = torch.randn(4, 4096, 2, generator=torch.Generator().manual_seed(7)).to(device)
    if layout == "rays":  # most neighbours share a level-4 cell: the runs are long
        cells = ((x.clamp(-1, 1) + 1) * 0.5 * 3).floor()
        assert (cells[1:] == cells[:-1]).all(1).float().mean() > 0.8
    _compare(lambda a, b: hash_grid(a, b, res), lambda a, b: hash_grid_ref(a, b, res), [x, table],
             torch.float32, ("features", "dx", "dtable"), dx_rows=_off_cell_boundaries(x, res),
             value_atol=_hash_value_atol(torch.float32, 3, res))
    cot = torch.randn(300, 8, generator=torch.Generator().manual_seed(8)).to(device)
    (_,), (dtable,) = vjp(lambda b: hash_grid(x, b, res), [table], [cot])
    (_,), (dtable_ref,) = vjp(lambda b: hash_grid_ref(x, b, res), [table], [cot])
    assert_close(dtable, dtable_ref, rtol=1e-4, atol_rel=1e-5, name="dtable, table only")
    if device == "cpu":  # one run-merged add per corner, dense level and tile, in both backward passes
        tiles = sum(-(-300 // _grid_triton._hash_bn(2, need_x)) for need_x in (True, False))
        assert len(calls) == 8 * 3 * tiles


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_hash_gradcheck_kernel_f64(device):
    x = _points(3, 2, torch.float64, device, reach=0.9).requires_grad_()
    table = torch.randn(2, 8, 2, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: hash_grid(a, b, [2, 5]), [x, table], fast_mode=True)


def test_hash_reference_gradcheck():
    x = _points(4, 3, torch.float64, "cpu", reach=0.9).requires_grad_()
    table = torch.randn(2, 16, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: hash_grid_ref(a, b, [2, 5]), [x, table])


def test_hash_errors_name_the_argument():
    table = torch.zeros(2, 16, 2)
    with pytest.raises(ValueError, match="'resolutions'"):
        hash_grid(torch.zeros(3, 3), table, [4])
    with pytest.raises(ValueError, match="'resolutions'"):
        hash_grid(torch.zeros(3, 3), table, [4, 0])
    with pytest.raises(ValueError, match="'x'"):
        hash_grid(torch.zeros(3, 4), table, [4, 8])
    with pytest.raises(ValueError, match="'table'"):
        hash_grid(torch.zeros(3, 3), table[0], [4, 8])
