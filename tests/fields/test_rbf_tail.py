"""The RBF decoder's linear tail and the exp density activation (issue 29), and how runs written before them load."""

import pytest
import torch
import torch.nn.functional as F

from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.components.rbf import RBFDecoder
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import EXP_CAP, RadianceRBF
from fieldfit.methods.rbf.config import RadianceConfig

AABB = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def field(tail: bool, activation: str = "softplus") -> RadianceRBF:
    torch.manual_seed(0)
    grid = GridConfig(kind="triplane", levels=2, base_res=4, max_res=8, features=2, init_scale=0.5)
    return RadianceRBF(FieldConfig(grid=grid, units=8, tail=tail), AABB, density_activation=activation)


def rays(n=40):
    g = torch.Generator().manual_seed(1)
    d = torch.randn(n, 3, generator=g)
    return torch.rand(n, 3, generator=g) * 2 - 1, d / d.norm(dim=-1, keepdim=True)


def test_the_tail_starts_at_zero_and_adds_a_linear_function_of_the_features():
    torch.manual_seed(0)
    dec = RBFDecoder(6, 4, units=5, tail=True)
    plain = RBFDecoder(6, 4, units=5)
    plain.load_state_dict({k: v for k, v in dec.state_dict().items() if not k.startswith("tail")})
    x = torch.randn(30, 6)
    torch.testing.assert_close(dec(x), plain(x))  # a fit starts from the plain RBF network
    with torch.no_grad():
        dec.tail.weight.normal_()
    torch.testing.assert_close(dec(x), plain(x) + x @ dec.tail.weight.t())
    torch.testing.assert_close(dec.outputs(x, slice(1, 3)), dec(x)[:, 1:3])  # a subset of rows


def test_gradients_reach_the_tail_from_the_start():
    dec = RBFDecoder(6, 4, units=5, tail=True)
    dec(torch.randn(30, 6)).square().sum().backward()
    assert dec.tail.weight.grad.abs().sum() > 0


def test_exp_activation_is_capped_and_matches_softplus_far_below_the_shift():
    f = field(tail=True, activation="exp")
    x, d = rays()
    feats = f.features(x)
    raw0 = f.decoder(feats)[:, 0]
    z = raw0 + f.density_shift
    torch.testing.assert_close(f(x, d).density, f.density_scale * torch.exp(z.clamp(max=EXP_CAP)))
    torch.testing.assert_close(f.density(x), f(x, d).density)
    # at the start (raw ~ 0, shift -10) both activations give the same transparent field
    soft = f.density_scale * F.softplus(z)
    torch.testing.assert_close(f(x, d).density, soft, rtol=1e-3, atol=0)
    big = f._density(torch.full((3,), 100.0))
    assert torch.isfinite(big).all()
    assert bool((big == f.density_scale * torch.exp(torch.tensor(EXP_CAP))).all())


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="density_activation"):
        field(tail=False, activation="relu")


def test_rbf_fits_get_the_tail_and_exp_mlp_fits_neither():
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import load_radiance_scene

    scene = load_radiance_scene(Input("radiance", None, "blocks", builtin="blocks"), 2, 8)
    rbf = RadianceConfig.for_scene(scene, "cpu")
    assert rbf.field_config().tail
    assert rbf.density_activation == "exp"
    mlp = RadianceConfig.for_scene(scene, "cpu", decoder="mlp")
    assert not mlp.field_config().tail
    assert mlp.density_activation == "softplus"
    off = RadianceConfig.for_scene(scene, "cpu", tail="off")
    assert not off.field_config().tail


def test_runs_saved_before_the_tail_load_without_it():
    old = RadianceConfig.from_dict({"decoder": "rbf", "density_shift": -10.0})
    assert old.tail == "off"
    assert old.density_activation == "softplus"
    assert not old.field_config().tail
    assert FieldConfig.from_dict({"decoder": "rbf", "units": 8}).tail is False
