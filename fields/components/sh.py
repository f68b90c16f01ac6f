"""Real spherical-harmonic bases up to degree 3 (16 functions), for view-dependent colour.

Basis k = l^2 + l + m (l = 0..3, m = -l..l), the order and signs of svox2 / plenoxels /
GNF's ``eval_sh_bases``: the real harmonics built from the complex ones *with* the
Condon-Shortley phase, Y_lm = sqrt(2) Re Y_l^m (m > 0), sqrt(2) Im Y_l^|m| (m < 0),
Y_l^0 (m = 0). They are orthonormal on the unit sphere; Y_00 = 1 / (2 sqrt(pi)).
"""

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)


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
        >>> sh_bases(torch.tensor([[0.0, 0.0, 1.0]]), 1).tolist()
        [[0.28209479177387814, -0.0, 0.4886025119029199, -0.0]]
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_bases: degree must be 0..3, got {degree}")
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2.0 * zz - xx - yy), C2[3] * x * z, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            C3[0] * y * (3.0 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4.0 * zz - xx - yy),
            C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            C3[4] * x * (4.0 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


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
