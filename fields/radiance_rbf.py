"""The RBF radiance field (METHODS.md 1.3, "GNF-SH"): one decoder pass gives density and colour.

    x [N,3] world -> normalised by the aabb to [-1,1]^3 -> feature grid -> decoder -> raw [N, 1+48]
    density = scale * softplus(raw[:, 0] + shift)        (world units: per unit of t)
         or = scale * exp(min(raw[:, 0] + shift, 12))   (activation "exp")
    rgb     = sigmoid(SH3(d) . raw[:, 1:])  per channel   (16 real SH bases x 3 channels)

``shift`` (-10 in GNF) starts the field almost empty; ``scale`` plays the part of TensoRF's
``distance_scale`` = 25 on Blender's [-1.5, 1.5]^3 box and is made relative to the box
(25 * 1.5 / mean half-extent), so a field in a bigger box starts equally transparent per box.
For NDC scenes the box is the NDC cube and x, d are NDC points and directions.
There is no view MLP: colour is the SH expansion of the single pass. The "exp" activation (instant-ngp's,
with the argument capped at 12: beyond it a sample is opaque at any step) turns a linear rise of the raw
value into a steep rise of density, so surfaces need fewer samples to become opaque; below the shift it is
softplus's own tail (softplus(z) ~ exp(z) for z << 0), so a field starts equally transparent either way.
"""

import torch
import torch.nn.functional as F
from torch import nn

from fieldfit.cuda.fused import DENSITY_ACTIVATIONS, EXP_CAP  # the fused kernel's: density "exp" is exp(min(z, 12))

from .base import FieldOutput
from .components.encodings import HashGrid, TriPlane, make_encoding
from .components.rbf import RBFDecoder, SplitRBFDecoder
from .components.sh import sh_colour, sh_count
from .gaussian_rbf import FieldConfig, make_decoder

SH_DEGREE = 3
GNF_DENSITY_SHIFT = -10.0


def default_density_scale(aabb) -> float:
    """TensoRF's distance scale 25 on a box of half-extent 1.5, relative to ``aabb`` [2,3]."""
    aabb = torch.as_tensor(aabb, dtype=torch.float64).reshape(2, 3)
    return float(25.0 * 1.5 / (0.5 * (aabb[1] - aabb[0]).mean()))


_PAIRS = (0, 1, 0, 2, 1, 2)  # TriPlane.PLANES flattened: xy, xz, yz


def triplane_features_cf(enc: TriPlane, x: torch.Tensor) -> torch.Tensor:
    """``enc(x)`` computed channel-first: x [N,3] in [-1,1] -> [D,N] (same values, same order).

    CPU fast path: the three planes of a level go through one grid_sample call, and the
    features are concatenated along the channel axis, where every block is contiguous
    (``enc(x)`` concatenates [N,F] transposed views, which costs more than the lookups).
    """
    n = x.shape[0]
    idx = torch.tensor(_PAIRS, device=x.device)
    coords = x.index_select(1, idx).view(n, 3, 2).transpose(0, 1).contiguous().view(3, n, 1, 2)
    out = []
    for lvl in range(len(enc.planes) // 3):
        planes = torch.stack([enc.planes[3 * lvl + p] for p in range(3)])  # [3,F,R,R]
        o = F.grid_sample(planes, coords, mode="bilinear", padding_mode="border", align_corners=True)
        out.append(o.reshape(3 * o.shape[1], n))  # [3F,N]: plane-major, as TriPlane concatenates
    pts = x.view(1, n, 1, 1, 3)
    for vol in enc.volumes:
        o = F.grid_sample(vol[None], pts, mode="bilinear", padding_mode="border", align_corners=True)
        out.append(o.reshape(o.shape[1], n))
    return torch.cat(out, dim=0)


class RadianceRBF(nn.Module):
    """Radiance field: ``density(x) -> [N]`` and ``forward(x, d) -> FieldOutput``.

    Args:
        cfg: grid and decoder (``cfg.decoder`` "rbf" with ``cfg.units`` units, or "mlp").
        aabb: [2,3] box whose inside the grid covers (points outside read the border).
        density_shift: added to the raw density before the activation.
        density_scale: multiplies the activation; None -> ``default_density_scale(aabb)``.
        density_activation: softplus (GNF's) | exp (see the module doc).
        device: where to build the grid (only matters for the tcnn encoding).
        contraction: a ``render.contraction.Contraction`` for unbounded captures: the grid then covers the
            contracted cube [-2,2]^3 (world points are contracted, then halved), ``aabb`` only sets the density
            unit (the inner box).

    Examples:
        >>> from fieldfit.fields.components.encodings import GridConfig
        >>> f = RadianceRBF(FieldConfig(GridConfig(levels=2, max_res=16), units=8), [[-1, -1, -1], [1, 1, 1]])
        >>> f(torch.zeros(5, 3), torch.tensor([[0.0, 0, 1]]).expand(5, 3)).rgb.shape
        torch.Size([5, 3])
    """

    def __init__(self, cfg: FieldConfig, aabb, density_shift: float = GNF_DENSITY_SHIFT,
                 density_scale: float | None = None, device="cpu", contraction=None,
                 density_activation: str = "softplus"):
        super().__init__()
        if cfg.decoder not in ("rbf", "mlp"):
            raise ValueError(f"RadianceRBF: decoder must be 'rbf' or 'mlp', got {cfg.decoder!r}")
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f"RadianceRBF: density_activation must be one of {DENSITY_ACTIVATIONS}, "
                             f"got {density_activation!r}")
        self.density_activation = density_activation
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"RadianceRBF: aabb max corner must exceed min corner, got {aabb.tolist()}")
        self.cfg = cfg
        self.density_shift = float(density_shift)
        self.density_scale = float(default_density_scale(aabb) if density_scale is None else density_scale)
        self.register_buffer("aabb", aabb)
        self.contraction = contraction
        self.encoding = make_encoding(3, cfg.grid, device)
        self.decoder = make_decoder(cfg, self.encoding.out_dim, 1 + 3 * sh_count(SH_DEGREE))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """World points [N,3] -> [-1,1]^3 over the aabb (not clamped), or over the contracted cube."""
        if self.contraction is not None:
            return 0.5 * self.contraction.apply(x)
        lo, hi = self.aabb[0], self.aabb[1]
        return (x - lo) * (2.0 / (hi - lo)) - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """World points [N,3] -> grid features [N,D] (a channel-first [D,N] buffer, transposed)."""
        xn = self.normalise(x)
        if isinstance(self.encoding, TriPlane) and xn.device.type == "cpu":
            return triplane_features_cf(self.encoding, xn).t()
        return self.encoding(xn)

    def _density(self, raw0: torch.Tensor) -> torch.Tensor:
        z = raw0 + self.density_shift
        if self.density_activation == "exp":
            return self.density_scale * torch.exp(z.clamp(max=EXP_CAP))
        return self.density_scale * F.softplus(z)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,3] world -> density [N] >= 0. Evaluates only the decoder's density row."""
        return self._density(self.decoder.outputs(self.features(x), slice(0, 1))[:, 0])

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> FieldOutput:
        """x [N,3] world points, d [N,3] unit view directions -> FieldOutput(density [N], rgb [N,3])."""
        raw = self.decoder.outputs(self.features(x))
        return FieldOutput(density=self._density(raw[:, 0]), rgb=sh_colour(raw[:, 1:], d, SH_DEGREE))

    def fused_parts(self):
        """This field's tensors for ``fieldfit.cuda.render_fused`` (detached; a split decoder as its ``as_one``), or
        None where that kernel does not apply (other grids, an MLP decoder or colour, a contraction)."""
        from fieldfit.cuda.fused import HashEncoding, RBFField, TriPlaneEncoding

        enc, dec = self.encoding, self.decoder
        if isinstance(dec, SplitRBFDecoder):
            dec = dec.as_one()  # None with an MLP's colour
        if not isinstance(dec, RBFDecoder) or self.contraction is not None:
            return None
        if type(enc) is HashGrid and enc.dim == 3:
            parts = HashEncoding(enc.table.detach(), tuple(enc.res))
        elif type(enc) is TriPlane:
            parts = TriPlaneEncoding([p.detach() for p in enc.planes], [v.detach() for v in enc.volumes])
        else:
            return None
        return RBFField(self.aabb, parts, dec.rbf.centers.detach(), dec.rbf.log_prec.detach(), dec.rbf.kernel,
                        dec.head.weight.detach(), dec.head.bias.detach(), self.density_scale, self.density_shift,
                        tail_w=None if dec.tail is None else dec.tail.weight.detach(),
                        density_activation=self.density_activation, exp_cap=EXP_CAP,
                        proj_w=None if dec.project is None else dec.project.weight.detach())

    def param_groups(self) -> dict:
        """Parameter counts by part (grid vs decoder) for reports."""
        return {
            "grid": sum(p.numel() for p in self.encoding.parameters()),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
        }


__all__ = ["DENSITY_ACTIVATIONS", "EXP_CAP", "RadianceRBF", "default_density_scale", "GNF_DENSITY_SHIFT", "SH_DEGREE"]
