"""The split RBF decoder (issue 29): density and colour from two RBF decoders, each its own units, projection and
tail; which fits get it, how runs written before it load, and that the fused frame kernel leaves it to torch."""

import torch

from fieldfit.fields.components.encodings import GridConfig
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


def test_a_split_field_renders_through_torch_not_the_fused_kernel():
    cfg = FieldConfig(GridConfig(kind="triplane", levels=2, max_res=16, features=2), units=4, tail=True, project=3)
    aabb = [[-1, -1, -1], [1, 1, 1]]
    one, two = RadianceRBF(cfg, aabb), RadianceRBF(FieldConfig(**{**cfg.__dict__, "split": True}), aabb)
    assert one.fused_parts() is not None
    assert two.fused_parts() is None  # the fused kernel reads one decoder
    x, d = torch.rand(10, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    out = two(x, d)
    assert out.density.shape == (10,)
    assert out.rgb.shape == (10, 3)
    torch.testing.assert_close(two.density(x), out.density)
