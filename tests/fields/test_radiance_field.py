"""fields.radiance_rbf: the RBF radiance field's contract, shapes and components."""

import pytest
import torch

from fieldfit.fields.base import FieldOutput, RadianceField
from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import RadianceRBF, default_density_scale, triplane_features_cf

AABB = [[-1.5, -1.0, -0.5], [1.5, 2.0, 1.5]]


def small_cfg(decoder="rbf", kind="triplane", volumes=8):
    grid = GridConfig(kind=kind, levels=2, base_res=4, max_res=8, features=2, init_scale=0.5,
                      volume_max_res=volumes, table_log2=10)
    return FieldConfig(grid=grid, decoder=decoder, units=8, hidden=16, layers=2)


def points(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(AABB[0]), torch.tensor(AABB[1])
    x = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    d = torch.randn(n, 3, generator=g)
    return x, d / d.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("decoder", ["rbf", "mlp"])
def test_protocol_shapes_and_ranges(decoder):
    torch.manual_seed(0)
    f = RadianceRBF(small_cfg(decoder), AABB)
    assert isinstance(f, RadianceField)
    x, d = points()
    out = f(x, d)
    assert isinstance(out, FieldOutput)
    assert out.density.shape == (50,)
    assert out.rgb.shape == (50, 3)
    assert (out.density >= 0).all()
    assert ((out.rgb > 0) & (out.rgb < 1)).all()
    torch.testing.assert_close(f.density(x), out.density)  # the density-only path agrees
    (out.density.sum() + out.rgb.sum()).backward()
    assert all(p.grad is not None for p in f.decoder.parameters())
    assert f(torch.zeros(0, 3), torch.zeros(0, 3)).rgb.shape == (0, 3)


def test_starts_almost_empty_and_scale_follows_the_box():
    f = RadianceRBF(small_cfg(), [[-1.5] * 3, [1.5] * 3])
    assert f.density_scale == pytest.approx(25.0)  # TensoRF's distance scale on Blender's box
    assert default_density_scale([[-3.0] * 3, [3.0] * 3]) == pytest.approx(12.5)
    x, _ = points()
    with torch.no_grad():
        assert float(f.density(x).max()) < 0.05  # softplus(raw - 10) * 25: transparent at the start


def test_positions_normalised_by_the_box():
    f = RadianceRBF(small_cfg(), AABB)
    corners = torch.tensor(AABB)
    torch.testing.assert_close(f.normalise(corners), torch.tensor([[-1.0] * 3, [1.0] * 3]))


def test_channel_first_triplane_equals_the_encoding():
    f = RadianceRBF(small_cfg(volumes=8), AABB)
    x = torch.rand(40, 3) * 2 - 1
    torch.testing.assert_close(triplane_features_cf(f.encoding, x).t(), f.encoding(x))
    x.requires_grad_(True)
    g1 = torch.autograd.grad(triplane_features_cf(f.encoding, x).sum(), list(f.encoding.parameters()))
    g2 = torch.autograd.grad(f.encoding(x).sum(), list(f.encoding.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b)


def test_colour_depends_on_direction_density_does_not():
    torch.manual_seed(1)
    f = RadianceRBF(small_cfg(), AABB)
    with torch.no_grad():
        f.decoder.head.weight.normal_()
    x, d = points(10)
    a, b = f(x, d), f(x, -d)
    torch.testing.assert_close(a.density, b.density)
    assert (a.rgb - b.rgb).abs().max() > 1e-3


def test_hash_grid_and_bad_arguments():
    f = RadianceRBF(small_cfg(kind="hash"), AABB)
    x, d = points(7)
    assert f(x, d).rgb.shape == (7, 3)
    with pytest.raises(ValueError, match="decoder"):
        RadianceRBF(small_cfg(decoder="siren"), AABB)
    with pytest.raises(ValueError, match="aabb"):
        RadianceRBF(small_cfg(), [[1.0] * 3, [0.0] * 3])
