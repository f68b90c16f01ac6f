"""RBF layer and grid lookups: against naive loops, hand-computed values and gradcheck."""

import pytest
import torch

from fieldfit import cuda as kernels
from fieldfit.cuda._torch_ref import RBF_KERNELS, dense_grid_ref, hash_grid_ref, hash_grid_vectorized, rbf_layer_ref
from fieldfit.fields.components.encodings import DenseGrid, DenseHashGrid, GridConfig, make_encoding
from fieldfit.fields.components.rbf import RBFDecoder
from fieldfit.fields.gaussian_rbf import SDFRBF, FieldConfig, ImageRBF


def naive_rbf(x, mu, b, kernel):
    out = torch.empty(x.shape[0], mu.shape[0], dtype=x.dtype)
    for k in range(mu.shape[0]):
        r = (b[k].exp() * (x - mu[k]) ** 2).sum(-1)
        out[:, k] = {"gaussian": torch.exp(-0.5 * r), "inverse_quadratic": 1 / (1 + r),
                     "inverse_multiquadric": 1 / torch.sqrt(1 + r), "multiquadric": torch.sqrt(1 + r)}[kernel]
    return out


@pytest.mark.parametrize("kernel", RBF_KERNELS)
def test_rbf_layer_matches_loop_over_units(kernel):
    g = torch.Generator().manual_seed(0)
    x, mu = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randn(13, 7, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(13, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(rbf_layer_ref(x, mu, b, kernel), naive_rbf(x, mu, b, kernel), rtol=1e-9, atol=1e-9)


def test_rbf_distance_never_negative_under_cancellation():
    # Large features with a unit sitting on a point: the expanded form cancels to ~0 (METHODS 1.9.4).
    x = torch.full((4, 32), 30.0)
    mu = x[:1].clone()
    b = torch.full((1, 32), 3.0)
    phi = rbf_layer_ref(x, mu, b)
    assert (phi <= 1.0).all()
    assert torch.isfinite(phi).all()


def test_rbf_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    mu = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = (0.2 * torch.randn(5, 4, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: rbf_layer_ref(*a, "gaussian"), (x, mu, b))


def test_rbf_decoder_starts_flat():
    dec = RBFDecoder(8, 3, units=16)
    y = dec(1e-4 * torch.randn(10, 8))
    assert torch.allclose(y, y[:1].expand_as(y), atol=1e-4)  # all phi ~ 1 at initialisation


def test_log_prec_init_defaults_to_the_old_start():
    """config.json of runs saved before ``log_prec_init`` builds units of log-precision 0; a new value is written."""
    from fieldfit.methods.rbf.config import ImageConfig, RadianceConfig, SDFConfig

    old = FieldConfig().to_dict()
    del old["log_prec_init"]
    assert FieldConfig.from_dict(old).log_prec_init == 0.0
    cfg = FieldConfig(units=4, log_prec_init=2.0)
    assert FieldConfig.from_dict(cfg.to_dict()) == cfg
    dec = RBFDecoder(3, 1, units=4, log_prec_init=2.0)
    assert torch.equal(dec.rbf.log_prec, torch.full((4, 3), 2.0))
    assert RadianceConfig().field_config().log_prec_init > 0  # radiance: sharper units (issue 29)
    assert ImageConfig().field_config().log_prec_init == 0.0  # image and SDF fits start as before
    assert SDFConfig().field_config().log_prec_init == 0.0


def test_dense_grid_bilinear_hand_values():
    grid = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])  # F=1, H=2, W=2: value = x_idx + 2*y_idx
    x = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [0.5, -0.5]])
    out = dense_grid_ref(x, grid)[:, 0]
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 2.0, 1.5, 0.75 + 2 * 0.25]))


def test_dense_grid_trilinear_and_cell_boundaries():
    r = 5
    i, j, k = torch.meshgrid(*(torch.arange(r, dtype=torch.float64),) * 3, indexing="ij")
    lin = (1.0 * k + 10.0 * j + 100.0 * i).unsqueeze(0)  # [1, D, H, W]: linear, so trilinear is exact
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 3, generator=g, dtype=torch.float64) * 2 - 1
    x[:20] = torch.round((x[:20] + 1) / 2 * (r - 1)) / (r - 1) * 2 - 1  # exactly on vertices / cell faces
    pos = (x + 1) / 2 * (r - 1)
    want = pos[:, 0] + 10 * pos[:, 1] + 100 * pos[:, 2]
    torch.testing.assert_close(dense_grid_ref(x, lin)[:, 0], want)


def test_hash_grid_dense_levels_match_dense_grid():
    # A level whose vertices fit the table is stored densely: it must equal the dense lookup.
    res = 6
    table = torch.randn(1, res**2, 3, dtype=torch.float64)
    dense = table[0].t().reshape(3, res, res)  # index = x + res*y -> [F, H(y), W(x)]
    x = torch.rand(100, 2, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(hash_grid_ref(x, table, [res]), dense_grid_ref(x, dense))


def test_hash_grid_gradcheck():
    table = torch.randn(2, 64, 2, dtype=torch.float64, requires_grad=True)
    x = torch.rand(9, 3, dtype=torch.float64) * 2 - 1
    assert torch.autograd.gradcheck(lambda t: hash_grid_ref(x, t, [3, 16]), (table,))


@pytest.mark.parametrize(("d", "res", "tsize"), [(3, [4, 16, 64, 512], 2**12), (2, [1, 3, 40], 256), (1, [2, 7], 16)])
def test_hash_grid_vectorized_matches_reference(d, res, tsize):
    # dense and hashed levels, res 1, points outside [-1,1] (clamped): values and both gradients
    g = torch.Generator().manual_seed(d)
    x = (torch.rand(300, d, generator=g, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    table = torch.randn(len(res), tsize, 2, generator=g, dtype=torch.float64, requires_grad=True)
    want, got = hash_grid_ref(x, table, res), hash_grid_vectorized(x, table, res)
    torch.testing.assert_close(got, want)
    up = torch.randn(want.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(got, (x, table), up), torch.autograd.grad(want, (x, table), up), strict=True):
        torch.testing.assert_close(a, b)


def test_dense_hash_grid_is_dense_levels_then_hashed_fine_levels():
    cfg = GridConfig(kind="densehash", levels=2, base_res=4, max_res=8, features=2, table_log2=10,
                     fine_levels=2, fine_max_res=32, init_scale=1.0)
    assert cfg.fine_resolutions() == [16, 32]
    enc = make_encoding(3, cfg)
    assert isinstance(enc, DenseHashGrid)
    assert enc.res == [4, 8, 16, 32]
    assert enc.out_dim == 8
    x = torch.rand(50, 3) * 2 - 1
    out = enc(x)
    torch.testing.assert_close(out[:, :4], enc.dense(x))
    torch.testing.assert_close(out[:, 4:], hash_grid_ref(x, enc.table, [16, 32]))
    out.sum().backward()
    assert enc.table.grad.abs().sum() > 0
    assert all(gr.grad.abs().sum() > 0 for gr in enc.dense.grids)
    with pytest.raises(ValueError, match="fine_max_res"):
        GridConfig(kind="densehash", max_res=64, fine_levels=1, fine_max_res=64).fine_resolutions()
    with pytest.raises(ValueError, match="densehash needs"):
        make_encoding(3, GridConfig(kind="densehash", levels=2, base_res=4, max_res=8))


@pytest.mark.parametrize("kind", ["dense", "triplane", "hash", "densehash"])
def test_encodings_shapes(kind):
    cfg = GridConfig(kind=kind, levels=3, base_res=4, max_res=16, features=2, table_log2=8, volume_max_res=4,
                     fine_levels=1, fine_max_res=32)
    enc = make_encoding(3, cfg)
    out = enc(torch.rand(17, 3) * 2 - 1)
    assert out.shape == (17, enc.out_dim)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_dense_grid_axis_scale_shapes():
    enc = DenseGrid(2, GridConfig(levels=2, base_res=8, max_res=16, features=3, axis_scale=(1.0, 0.5)))
    assert [tuple(g.shape) for g in enc.grids] == [(3, 4, 8), (3, 8, 16)]


def test_fields_protocols():
    from fieldfit.fields.base import GeometryField, ImageField

    small = GridConfig(levels=2, base_res=4, max_res=8)
    assert isinstance(SDFRBF(FieldConfig(grid=GridConfig(kind="triplane", levels=2, base_res=4, max_res=8))),
                      GeometryField)
    assert isinstance(ImageRBF(FieldConfig(grid=small)), ImageField)
    for dec in ("rbf", "mlp", "siren"):
        f = ImageRBF(FieldConfig(grid=small, decoder=dec), channels=4)
        assert f.rgb(torch.zeros(3, 2)).shape == (3, 4)


def test_dispatch_exports_resolve():
    for name in kernels.__all__:
        assert getattr(kernels, name) is not None
    for op in ("rbf_layer", "dense_grid", "hash_grid"):
        assert callable(getattr(kernels, op))
