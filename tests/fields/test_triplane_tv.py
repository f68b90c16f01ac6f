"""The tri-plane's total-variation prior (``TriPlane.tv``) and where radiance fits turn it on (issue 29, fern)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import GridConfig, TriPlane
from fieldfit.fields.components.smooth import add_plane_tv_grad, plane_tv
from fieldfit.methods.rbf.config import NDC_TV, RadianceConfig


def _reference_tv(planes) -> float:
    """Mean squared difference of cell neighbours along each plane axis, summed over planes, by loops."""
    total = 0.0
    for g in planes:
        g = g.detach().double().numpy()
        f, h, w = g.shape
        down = [(g[c, i + 1, j] - g[c, i, j]) ** 2 for c in range(f) for i in range(h - 1) for j in range(w)]
        right = [(g[c, i, j + 1] - g[c, i, j]) ** 2 for c in range(f) for i in range(h) for j in range(w - 1)]
        total += np.mean(down) + np.mean(right)
    return total


def _triplane(seed=0, **kw) -> TriPlane:
    torch.manual_seed(seed)
    return TriPlane(GridConfig(levels=2, base_res=4, max_res=8, features=2, init_scale=0.5, volume_max_res=4, **kw))


def test_tv_equals_the_neighbour_loops():
    enc = _triplane()
    assert len(enc.planes) == 6
    assert len(enc.volumes) == 1  # volumes are not smoothed
    assert float(enc.tv().detach()) == pytest.approx(_reference_tv(enc.planes), rel=1e-6)


def test_tv_of_constant_planes_is_zero_and_a_ramp_costs_its_slope_squared():
    enc = _triplane()
    with torch.no_grad():
        for g in enc.planes:
            g.fill_(0.3)
    assert float(enc.tv().detach()) == 0.0
    with torch.no_grad():
        for g in enc.planes:  # a ramp of slope 0.25 along the first plane axis: only "down" differences
            g.copy_(0.25 * torch.arange(g.shape[1], dtype=g.dtype)[None, :, None].expand_as(g))
    assert float(enc.tv().detach()) == pytest.approx(len(enc.planes) * 0.25**2, rel=1e-6)


def test_added_gradient_is_the_priors_gradient_in_any_layout():
    """``add_tv_grad`` adds what autograd gives for weight * tv() to gradients already there (or makes them)."""
    for channels_last in (False, True):
        enc = _triplane().double()
        enc.lay_out(channels_last)
        assert enc.planes[-1].is_contiguous() != channels_last
        want = torch.autograd.grad(0.3 * enc.tv(), list(enc.planes))
        torch.manual_seed(1)
        before = [torch.randn_like(g) for g in enc.planes]
        for g, b in zip(enc.planes, before, strict=True):
            g.grad = b.clone()
        enc.planes[0].grad = None  # a plane no sample reached
        before[0] = torch.zeros_like(before[0])
        enc.add_tv_grad(0.3)
        for g, b, w in zip(enc.planes, before, want, strict=True):
            torch.testing.assert_close(g.grad, b + w)


def test_tv_does_not_depend_on_the_layout():
    enc = _triplane()
    before = float(enc.tv().detach())
    enc.lay_out(True)  # channels-last memory, as the kernels read it
    assert not enc.planes[-1].is_contiguous()
    assert float(enc.tv().detach()) == pytest.approx(before, rel=1e-6)


def test_plane_tv_refuses_what_is_not_a_plane():
    for shape in ((4, 4), (2, 1, 5), (2, 5, 1)):
        with pytest.raises(ValueError, match="plane_tv: expected a plane"):
            plane_tv(torch.zeros(shape))
        with pytest.raises(ValueError, match="plane_tv: expected a plane"):
            add_plane_tv_grad(torch.zeros(shape), 1.0)


def _scene(ndc: bool):
    return SimpleNamespace(ndc=ndc, has_alpha=not ndc, aabb=np.array([[-1.0] * 3, [1.0] * 3]))


def test_tv_is_on_for_forward_facing_scenes_only():
    ndc, blender = _scene(True), _scene(False)
    assert RadianceConfig(contract="off").with_device("cpu", ndc).with_scene(ndc).tv == NDC_TV > 0
    assert RadianceConfig(contract="off").with_device("cpu", blender).with_scene(blender).tv == 0.0
    assert RadianceConfig(contract="off", tv=0.0).with_device("cpu", ndc).with_scene(ndc).tv == 0.0
    assert RadianceConfig(contract="off", tv=0.5).with_device("cpu", blender).with_scene(blender).tv == 0.5
    dense = RadianceConfig(contract="off", grid="dense").with_device("cpu", ndc).with_scene(ndc)
    assert dense.tv == 0.0  # the default follows the grid; only tri-planes have planes to smooth


def test_tv_on_a_grid_without_planes_is_one_line():
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import load_radiance_scene

    scene = load_radiance_scene(Input("radiance", None, "blocks", builtin="blocks"), 2, 8)
    with pytest.raises(InputError, match=r"--tv 0.1: .*--grid hash.*drop --tv or use --grid triplane"):
        RadianceConfig.for_scene(scene, "cpu", grid="hash", tv=0.1, levels=2, max_res=32)
    assert RadianceConfig.for_scene(scene, "cpu", grid="triplane", tv=0.1, levels=2, max_res=32).tv == 0.1


def test_a_fit_with_tv_has_smoother_planes():
    """The prior reaches the planes through the fit's step (its gradient added after the backward): the same short
    fit with and without it."""
    from fieldfit.methods.rbf.radiance import Stepper, build_model, param_groups, run_config
    from fieldfit.optim import make_adam, seed_everything
    from fieldfit.scenes.inputs import Input
    from fieldfit.tasks.radiance import PixelStore, load_radiance_scene

    inp = Input("radiance", None, "blocks", builtin="blocks")
    scene = load_radiance_scene(inp, 2, 8)
    out = {}
    for tv in (0.0, 1.0):
        seed_everything(0)
        cfg = RadianceConfig.for_scene(scene, "cpu", levels=2, max_res=32, tv=tv)
        model, march = build_model(run_config(scene, inp, cfg, 0), "cpu")
        stepper = Stepper(model, make_adam(param_groups(model, cfg)), PixelStore(scene, scene.split("train")), march,
                          cfg, "cpu", 0)
        for i in range(20):
            stepper(i, i / 20)
        out[tv] = float(model.field.encoding.tv())
    assert out[1.0] < 0.5 * out[0.0], out
