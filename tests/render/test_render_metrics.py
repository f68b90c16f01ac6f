"""render.metrics against skimage and closed forms; the package's public names."""

import math
import sys

import numpy as np
import pytest
import torch

from fieldfit.render.metrics import lpips_fn, psnr, ssim


def _pair(shape, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    # smooth-ish image so SSIM is far from 0 and 1
    base = rng.random(shape)
    from scipy.ndimage import uniform_filter

    base = uniform_filter(base, size=5)
    noisy = np.clip(base + noise * rng.standard_normal(shape), 0, 1)
    return base, noisy


@pytest.mark.parametrize("shape", [(32, 41, 3), (24, 30), (11, 11, 1)])
def test_ssim_matches_skimage(shape):
    from skimage.metrics import structural_similarity

    a, b = _pair(shape)
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    if len(shape) == 3:
        kw["channel_axis"] = -1
    want = structural_similarity(a, b, **kw)
    got = ssim(torch.from_numpy(b).float(), torch.from_numpy(a).float())
    assert abs(got - want) < 1e-4
    assert abs(ssim(b, a) - want) < 1e-10  # float64 arrays: same numbers as skimage
    assert 0.0 < want < 0.99


def test_ssim_identical_is_one_and_small_images_use_a_smaller_window():
    a, _ = _pair((16, 16, 3))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    small, other = _pair((10, 12, 3))  # window cut from 11 to 9
    assert ssim(small, small) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < ssim(small, other) < 0.99
    # 2 x 2: the window is one pixel, so SSIM is the mean of the per-pixel luminance term
    x, y = np.array([[0.1, 0.5], [0.9, 0.3]]), np.array([[0.2, 0.5], [0.4, 0.0]])
    c1 = 0.01**2
    want = np.mean((2 * x * y + c1) / (x * x + y * y + c1))
    assert ssim(x, y) == pytest.approx(want, abs=1e-12)


def test_psnr_closed_form_and_identical():
    t = torch.zeros(8, 8, 3)
    assert psnr(t + 0.1, t) == pytest.approx(20.0, abs=1e-5)
    assert psnr(t + 25.5, t, max_val=255.0) == pytest.approx(20.0, abs=1e-5)
    assert psnr(t, t) == math.inf  # documented: identical images give inf, no cap


def test_lpips_fn_is_optional(monkeypatch):
    import fieldfit.render.metrics as metrics

    monkeypatch.setattr(metrics, "_LPIPS_CACHE", {})  # a metric loaded earlier in this process is not reused
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    assert lpips_fn() is None


def test_render_all_names_resolve():
    import fieldfit.render as render

    ns = {}
    exec("from fieldfit.render import *", ns)  # noqa: S102 - star import needs exec; the string is a constant
    assert set(render.__all__) <= set(ns)
    for name in ("composite", "composite_alpha", "RaySamples", "OccupancyGrid", "UniformSampler",
                 "pixel_rays", "image_rays", "ndc_rays", "ray_aabb", "distort", "undistort",
                 "psnr", "ssim", "lpips_fn", "RenderOutput"):
        assert name in render.__all__
