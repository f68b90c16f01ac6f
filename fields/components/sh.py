"""Real spherical-harmonic bases up to degree 3 (16 functions), for view-dependent colour.

Basis k = l^2 + l + m (l = 0..3, m = -l..l), the order and signs of svox2 / plenoxels /
GNF's ``eval_sh_bases``: the real harmonics built from the complex ones *with* the
Condon-Shortley phase, Y_lm = sqrt(2) Re Y_l^m (m > 0), sqrt(2) Im Y_l^|m| (m < 0),
Y_l^0 (m = 0). They are orthonormal on the unit sphere; Y_00 = 1 / (2 sqrt(pi)).
"""

import torch

from fieldfit import cuda as kernels


def sh_count(degree: int) -> int:
    """Number of bases of degree <= ``degree``: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_bases(d: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """Real SH bases at unit directions.

    Args:
        d: [N,3] unit directions (x, y, z); not normalised here.
        degree: 0..3.

    Returns:
        [N, (degree+1)^2] bases, differentiable in d.

    Examples:
        >>> sh_bases(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64), 1).tolist()
        [[0.28209479177387814, -0.0, 0.4886025119029199, -0.0]]
    """
    return kernels.sh_bases(d, degree)  # one kernel on a GPU (when d needs no gradient), else the reference


def sh_colour(coeffs: torch.Tensor, d: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """sigmoid(sum_k Y_k(d) c_k) per channel.

    Args:
        coeffs: [N, C * (degree+1)^2], channel-major (the bases of channel 0 first).
        d: [N,3] unit directions.

    Returns:
        [N,C] in (0, 1).
    """
    n_b = sh_count(degree)
    c = coeffs.reshape(coeffs.shape[0], coeffs.shape[1] // n_b, n_b)
    return torch.sigmoid(torch.einsum("ncb,nb->nc", c, sh_bases(d, degree)))


__all__ = ["sh_bases", "sh_colour", "sh_count"]
