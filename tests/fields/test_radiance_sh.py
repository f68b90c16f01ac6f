"""fields.components.sh: degree-3 real spherical harmonics against known values and scipy."""

import math

import numpy as np
import pytest
import torch

from fieldfit.fields.components.sh import sh_bases, sh_colour, sh_count


def _directions(n=64, seed=0):
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True)


def test_known_values_on_the_axes():
    y = sh_bases(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))[0]
    expect = torch.zeros(16, dtype=torch.float64)
    expect[0] = 0.5 / math.sqrt(math.pi)  # Y00
    expect[2] = math.sqrt(3 / (4 * math.pi))  # Y10 = sqrt(3/4pi) z
    expect[6] = math.sqrt(5 / (16 * math.pi)) * 2  # Y20 = sqrt(5/16pi) (3z^2 - 1)
    expect[12] = math.sqrt(7 / (16 * math.pi)) * 2  # Y30 = sqrt(7/16pi) (5z^3 - 3z)
    torch.testing.assert_close(y, expect, rtol=0, atol=1e-12)
    # x axis: Y_{1,1} = -sqrt(3/4pi) x (Condon-Shortley sign), Y_{2,2} = sqrt(15/16pi) (x^2 - y^2)
    y = sh_bases(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))[0]
    assert y[3].item() == pytest.approx(-math.sqrt(3 / (4 * math.pi)), abs=1e-12)
    assert y[8].item() == pytest.approx(math.sqrt(15 / (16 * math.pi)), abs=1e-12)


def _real_sh_scipy(deg, m, d):
    from scipy.special import sph_harm_y

    theta = np.arccos(np.clip(d[:, 2], -1, 1))  # polar angle
    phi = np.arctan2(d[:, 1], d[:, 0])
    y = sph_harm_y(deg, abs(m), theta, phi)  # complex, with the Condon-Shortley phase
    if m > 0:
        return math.sqrt(2) * y.real
    if m < 0:
        return math.sqrt(2) * y.imag
    return y.real


def test_matches_scipy_real_harmonics():
    pytest.importorskip("scipy.special", reason="scipy provides the reference harmonics")
    d = _directions()
    ours = sh_bases(d).numpy()
    for deg in range(4):
        for m in range(-deg, deg + 1):
            np.testing.assert_allclose(ours[:, deg * deg + deg + m], _real_sh_scipy(deg, m, d.numpy()), atol=1e-10,
                                       err_msg=f"l={deg} m={m}")


def test_orthonormal_on_the_sphere():
    # Fibonacci sphere quadrature: integral of Y_i Y_j = 4 pi mean(Y_i Y_j) ~ identity
    n = 20000
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (3 - math.sqrt(5)) * k
    r = (1 - z * z).sqrt()
    d = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)
    y = sh_bases(d)
    gram = 4 * math.pi * (y.t() @ y) / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), rtol=0, atol=2e-3)


def test_lower_degrees_are_prefixes_and_colour_shapes():
    d = _directions(8)
    full = sh_bases(d, 3)
    for deg in range(3):
        torch.testing.assert_close(sh_bases(d, deg), full[:, : sh_count(deg)])
    assert sh_count(3) == 16
    rgb = sh_colour(torch.zeros(8, 48, dtype=torch.float64), d)
    assert rgb.shape == (8, 3)
    assert torch.allclose(rgb, torch.full_like(rgb, 0.5))
    # only the DC term: colour independent of the direction
    c = torch.zeros(8, 3, 16, dtype=torch.float64)
    c[:, :, 0] = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    rgb = sh_colour(c.reshape(8, 48), d)
    torch.testing.assert_close(rgb, torch.sigmoid(c[:, :, 0] * 0.5 / math.sqrt(math.pi)))
    assert sh_colour(torch.zeros(0, 48), torch.zeros(0, 3)).shape == (0, 3)
    with pytest.raises(ValueError, match="degree"):
        sh_bases(d, 4)
