"""The split RBF decoder (issue 29): density and colour from two RBF decoders, each its own units, projection and
tail; which fits get it, how runs written before it load, and the one decoder it gives the fused frame kernel."""

import pytest
import torch

from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.components.mlp import MLPDecoder
from fieldfit.fields.components.rbf import RBFDecoder, SplitRBFDecoder
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import RadianceRBF
from fieldfit.methods.rbf.config import RadianceConfig


def split(dim: int = 6, out: int = 5, units: int = 4, project: int = 3) -> SplitRBFDecoder:
    torch.manual_seed(0)
    dec = SplitRBFDecoder(dim, out, units=units, center_init=0.3, tail=True, project=project)
    with torch.no_grad():
        for d in (dec.density, dec.colour):
            d.tail.weight.normal_()
            d.project.weight.normal_()
    return dec


def test_density_and_colour_come_from_their_own_decoders():
    dec = split()
    assert (dec.density.head.out_features, dec.colour.head.out_features) == (1, 4)
    assert dec.density.rbf.centers.shape == dec.colour.rbf.centers.shape == (4, 3)
    x = torch.randn(20, 6)
    y = dec(x)
    assert y.shape == (20, 5)
    torch.testing.assert_close(y[:, :1], dec.density(x))
    torch.testing.assert_close(y[:, 1:], dec.colour(x))
    torch.testing.assert_close(dec.outputs(x, slice(0, 1)), y[:, :1])  # the density alone
    torch.testing.assert_close(dec.outputs(x, slice(2, 4)), y[:, 2:4])


def test_each_output_trains_only_its_own_decoder():
    dec = split()
    x = torch.randn(20, 6)
    dec(x)[:, 1:].square().sum().backward()  # a colour loss
    assert all(p.grad is None or not p.grad.any() for p in dec.density.parameters())
    assert all(p.grad.abs().sum() > 0 for p in dec.colour.parameters())
    dec.zero_grad(set_to_none=True)
    dec.outputs(x, slice(0, 1)).sum().backward()  # a density loss
    assert all(p.grad is None for p in dec.colour.parameters())  # not even evaluated
    assert all(p.grad.abs().sum() > 0 for p in dec.density.parameters())


def test_radiance_fits_split_only_when_asked_and_old_runs_load_with_one_decoder():
    scene_aabb = [[-1, -1, -1], [1, 1, 1]]
    for given, cls in (({}, RBFDecoder), ({"split": "on"}, SplitRBFDecoder)):
        cfg = RadianceConfig(grid="triplane", levels=2, max_res=16, features=2, **given)
        fcfg = cfg.field_config()
        assert fcfg.split == (cls is SplitRBFDecoder)
        field = RadianceRBF(fcfg, scene_aabb)
        assert type(field.decoder) is cls
    assert not RadianceConfig(decoder="mlp", split="on").field_config().split  # rbf decoders only
    assert not FieldConfig.from_dict({"decoder": "rbf", "units": 8}).split  # saved before the option
    assert RadianceConfig.from_dict({"decoder": "rbf"}).split == "off"


@pytest.mark.parametrize(("project", "tail"), [(0, False), (0, True), (3, True)])
def test_as_one_decoder_gives_the_same_outputs(project, tail):
    dec = SplitRBFDecoder(6, 5, units=4, center_init=0.5, tail=tail, project=project)
    with torch.no_grad():
        for d in (dec.density, dec.colour):
            d.rbf.log_prec.normal_(0, 0.5)
            d.head.bias.normal_()
            if tail:
                d.tail.weight.normal_()
            if project:
                d.project.weight.normal_()
    state = torch.random.get_rng_state()
    one = dec.as_one()
    assert torch.equal(torch.random.get_rng_state(), state)  # a frame's copy leaves a fit's random stream alone
    assert type(one) is RBFDecoder
    assert one.rbf.centers.shape == (8, 2 * project or 6)
    assert (one.tail is None) == (not tail)
    x = torch.randn(50, 6) * 0.7
    torch.testing.assert_close(one(x), dec(x), rtol=1e-5, atol=1e-6)


def test_a_split_field_draws_through_the_fused_kernels_parts():
    cfg = FieldConfig(GridConfig(kind="triplane", levels=2, max_res=16, features=2), units=4, tail=True, project=3)
    field = RadianceRBF(FieldConfig(**{**cfg.__dict__, "split": True}), [[-1, -1, -1], [1, 1, 1]])
    parts = field.fused_parts()
    assert parts is not None
    assert parts.centers.shape == (8, 6)
    assert parts.head_w.shape == (1 + 3 * 16, 8)
    assert not parts.centers.requires_grad
    x, d = torch.rand(10, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    out = field(x, d)
    assert out.density.shape == (10,)
    assert out.rgb.shape == (10, 3)
    torch.testing.assert_close(field.density(x), out.density)


def test_split_mlp_takes_its_colour_from_an_mlp_at_the_mlps_rate():
    from types import SimpleNamespace

    from fieldfit.methods.rbf.config import LR_DECODER
    from fieldfit.methods.rbf.radiance import param_groups

    cfg = RadianceConfig(grid="triplane", levels=2, max_res=16, features=2, split="mlp", hidden=16, layers=2,
                         lr_decoder=0.04)
    fcfg = cfg.field_config()
    assert (fcfg.split, fcfg.colour) == (True, "mlp")
    field = RadianceRBF(fcfg, [[-1, -1, -1], [1, 1, 1]])
    dec = field.decoder
    assert type(dec.density) is RBFDecoder
    assert type(dec.colour) is MLPDecoder
    assert dec.colour.net[0].out_features == 16
    x = torch.randn(30, field.encoding.out_dim)
    y = dec(x)
    assert y.shape == (30, 1 + 3 * 16)
    torch.testing.assert_close(y[:, 1:], dec.colour(x))
    torch.testing.assert_close(dec.outputs(x, slice(0, 1)), dec.density(x))
    assert dec.as_one() is None
    assert field.fused_parts() is None  # the fused kernel draws RBF units only: such a field renders through torch
    groups = param_groups(SimpleNamespace(field=field, appearance=None, poses=None), cfg)
    rates = [(g["lr"], sum(p.numel() for p in g["params"])) for g in groups]
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert rates[1:] == [(0.04, n(dec.density)), (LR_DECODER["mlp"], n(dec.colour))]
    # a saved field without the colour's choice loads with an RBF colour
    assert FieldConfig.from_dict({"decoder": "rbf", "split": True}).colour == "rbf"
