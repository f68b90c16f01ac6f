"""The RBF decoder's learned projection of the features (issue 29): what the units see, how it starts, how it trains,
which fits get it, and how runs written before it load."""

import pytest
import torch

from fieldfit.fields.components.rbf import RBFDecoder
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.methods.rbf.config import PROJECTION, ImageConfig, RadianceConfig, SDFConfig


def pair(project: int, dim: int = 6, units: int = 5):
    """(a decoder with the projection, one without it holding the same centres, precisions, head and tail)."""
    torch.manual_seed(0)
    dec = RBFDecoder(dim, 4, units=units, center_init=0.3, tail=True, project=project)
    plain = RBFDecoder(project, 4, units=units, tail=False)
    plain.load_state_dict({k: v for k, v in dec.state_dict().items() if k.startswith(("rbf", "head"))})
    with torch.no_grad():
        dec.tail.weight.normal_()
    return dec, plain


def test_units_start_on_the_first_features():
    dec, plain = pair(project=4)  # J = 4 < D = 6: z is the first 4 features at the start
    x = torch.randn(30, 6)
    assert dec.rbf.centers.shape == (5, 4)
    torch.testing.assert_close(dec.units_input(x), x[:, :4])
    torch.testing.assert_close(dec(x), plain(x[:, :4]) + x @ dec.tail.weight.t())
    torch.testing.assert_close(dec.outputs(x, slice(0, 1)), dec(x)[:, :1])  # the density row alone


def test_a_wider_projection_starts_as_the_features_and_zeros():
    dec, plain = pair(project=9)
    x = torch.randn(30, 6)
    z = dec.units_input(x)
    torch.testing.assert_close(z, torch.cat([x, torch.zeros(30, 3)], 1))
    torch.testing.assert_close(dec(x), plain(z) + x @ dec.tail.weight.t())


def test_the_units_measure_distances_in_the_projected_space():
    dec, _ = pair(project=3)
    with torch.no_grad():
        dec.project.weight.normal_()
        dec.tail.weight.zero_()
    x = torch.randn(30, 6)
    z = x @ dec.project.weight.t()
    beta = dec.rbf.log_prec.exp()
    r = (beta[None] * (z[:, None, :] - dec.rbf.centers[None]) ** 2).sum(-1)
    torch.testing.assert_close(dec(x), torch.exp(-0.5 * r) @ dec.head.weight.t() + dec.head.bias, rtol=1e-4, atol=1e-5)
    # features that move z nowhere do not move the units: add a vector from P's null space
    null = torch.linalg.svd(dec.project.weight).Vh[-1]
    torch.testing.assert_close(dec(x + 0.5 * null), dec(x), rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_projection_and_the_features_through_it():
    dec, _ = pair(project=4)
    x = torch.randn(30, 6, requires_grad=True)
    dec(x).square().sum().backward()
    assert dec.project.weight.grad.abs().sum() > 0
    assert dec.project.weight.grad[:, 4:].abs().sum() > 0  # the features the identity start leaves out, too


def test_no_projection_is_the_plain_decoder():
    dec = RBFDecoder(6, 4, units=5, project=0)
    assert dec.project is None
    x = torch.randn(7, 6)
    torch.testing.assert_close(dec.units_input(x), x)


def test_radiance_fits_get_the_projection_contracted_ones_other_decoders_and_tasks_do_not():
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import load_radiance_scene

    scene = load_radiance_scene(Input("radiance", None, "blocks", builtin="blocks"), 2, 8)
    rbf = RadianceConfig.for_scene(scene, "cpu")
    assert rbf.projection == PROJECTION
    assert rbf.field_config().project == PROJECTION
    assert RadianceConfig.for_scene(scene, "cpu", projection=0).field_config().project == 0
    assert RadianceConfig.for_scene(scene, "cpu", contract="on").field_config().project == 0  # the fox: foggier
    assert RadianceConfig.for_scene(scene, "cpu", contract="on", projection=8).field_config().project == 8
    assert RadianceConfig.for_scene(scene, "cpu", projection=24).field_config().project == 24
    assert RadianceConfig.for_scene(scene, "cpu", decoder="mlp").field_config().project == 0
    for cfg in (ImageConfig.for_image(64, 48), SDFConfig.for_shape()):  # measured worse on images; shapes: not
        assert cfg.projection == 0
        assert cfg.field_config().project == 0
    assert ImageConfig.for_image(64, 48, projection=8).field_config().project == 8


def test_runs_saved_before_the_projection_load_without_it():
    old = RadianceConfig.from_dict({"decoder": "rbf", "density_shift": -10.0})
    assert old.projection == 0
    assert old.field_config().project == 0
    assert FieldConfig.from_dict({"decoder": "rbf", "units": 8}).project == 0


def test_a_resume_cannot_change_the_projection():
    from fieldfit.config import shape_changes

    for cls in (RadianceConfig, ImageConfig, SDFConfig):
        assert shape_changes(cls, {"projection": 16}, {"projection": 8}) == [("projection", 16)]
        assert shape_changes(cls, {"projection": 16}, {"projection": 16}) == []


@pytest.mark.parametrize("project", [3, 6, 9])
def test_a_radiance_field_with_a_projection_saves_and_loads(project, tmp_path):
    from fieldfit.fields.components.encodings import GridConfig
    from fieldfit.fields.radiance_rbf import RadianceRBF

    grid = GridConfig(kind="triplane", levels=1, base_res=4, max_res=4, features=2, init_scale=0.5)
    cfg = FieldConfig(grid=grid, units=4, tail=True, project=project)
    f = RadianceRBF(cfg, [[-1.0] * 3, [1.0] * 3])
    torch.save(f.state_dict(), tmp_path / "f.pt")
    g = RadianceRBF(FieldConfig.from_dict(cfg.to_dict()), [[-1.0] * 3, [1.0] * 3])
    g.load_state_dict(torch.load(tmp_path / "f.pt", weights_only=True))
    x = torch.rand(9, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(9, 3), dim=-1)
    torch.testing.assert_close(g(x, d).rgb, f(x, d).rgb)
    assert g.decoder.project.weight.shape == (project, f.encoding.out_dim)
