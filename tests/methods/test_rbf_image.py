"""rbf on images: the grid-ratio cap and the config presets."""

from dataclasses import replace

import pytest

from fieldfit.errors import InputError
from fieldfit.fields.gaussian_rbf import ImageRBF
from fieldfit.methods.rbf.config import LEVEL_LR, ImageConfig
from fieldfit.methods.rbf.image import dense_grid_params, field_config, param_groups


def test_grid_ratio_sizes_the_image_grid_under_the_cap():
    h, w = 512, 768
    cap = int(0.25 * h * w * 3)
    cfg = ImageConfig.for_image(h, w, 3, grid_ratio=0.25, features=2)
    fcfg = field_config(cfg, h, w)
    built = sum(p.numel() for p in ImageRBF(fcfg, 3).encoding.parameters())
    assert built == dense_grid_params(h, w, fcfg.grid) <= cap
    # the largest such grid: one more finest-level vertex row goes over the cap
    assert dense_grid_params(h, w, replace(fcfg.grid, max_res=fcfg.grid.max_res + 1)) > cap
    with pytest.raises(InputError, match="too small"):
        ImageConfig.for_image(h, w, 3, grid_ratio=1e-5)


def test_presets_fill_what_was_not_given():
    plain = ImageConfig.for_image(100, 200, 3)
    assert (plain.max_res, plain.features, plain.lr, plain.batch, plain.lr_final, plain.average) == \
        (200, 4, 1e-2, 8192, 0.005, 0.0)
    compact = ImageConfig.for_image(100, 200, 3, grid_ratio=0.25)
    assert (compact.features, compact.lr, compact.batch, compact.lr_final, compact.average) == \
        (2, 2e-2, 4096, 0.5, 0.999)
    assert compact.max_res < 200
    assert (plain.level_lr, compact.level_lr) == (0.0, LEVEL_LR)
    given = ImageConfig.for_image(100, 200, 3, grid_ratio=0.25, features=3, lr=0.05, max_res=64, batch=1000,
                                  average=0.0)
    assert (given.features, given.lr, given.max_res, given.batch, given.average) == (3, 0.05, 64, 1000, 0.0)
    # runs saved before the average and the tail: neither
    old = ImageConfig.from_dict({"grid_ratio": 0.25, "lr_final": 0.2})
    assert (old.average, old.tail, old.level_lr) == (0.0, "off", 0.0)


def test_compact_grids_coarse_levels_learn_slower():
    cfg = ImageConfig.for_image(512, 768, 3, grid_ratio=0.25)
    model = ImageRBF(field_config(cfg, 512, 768), 3)
    groups = param_groups(model, cfg)
    res = model.encoding.res
    assert [g["params"] for g in groups[1:]] == [[g] for g in model.encoding.grids]
    assert groups[0]["params"] == list(model.decoder.parameters())
    assert groups[0]["lr"] == groups[-1]["lr"] == cfg.lr  # the decoder and the finest level at the rate
    for g, r in zip(groups[1:], res, strict=True):
        assert g["lr"] == pytest.approx(cfg.lr * (r / res[-1]) ** LEVEL_LR)
    assert groups[1]["lr"] < 0.5 * cfg.lr  # 24 of 385: (1/16)^0.3
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    one = param_groups(model, replace(cfg, level_lr=0.0))  # full-size fits: one group
    assert len(one) == 1
    assert one[0]["lr"] == cfg.lr


@pytest.mark.parametrize("ratio", [None, 0.25])
def test_image_decoder_has_a_linear_tail_unless_turned_off(ratio):
    # the RBF decoder adds a linear function of the features (starting at zero); --tail off builds the plain one
    for tail, has in (("on", True), ("off", False)):
        cfg = ImageConfig.for_image(200, 300, 3, grid_ratio=ratio, **({} if tail == "on" else {"tail": "off"}))
        model = ImageRBF(field_config(cfg, 200, 300), 3)
        assert (model.decoder.tail is not None) == has
        if has:
            assert model.decoder.tail.weight.shape == (3, model.encoding.out_dim)
            assert not model.decoder.tail.weight.any()

