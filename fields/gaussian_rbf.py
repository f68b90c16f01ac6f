"""Gaussian RBF fields: feature grid -> one layer of anisotropic RBF units -> linear head.

Three compositions share the components: ``ImageRBF`` (2D, rgb(uv)), ``SDFRBF`` (3D, sdf(x)),
and ``RadianceRBF`` (5D, density(x) and forward(x, d), in ``radiance_rbf.py``). The decoder can
be swapped for a ReLU MLP or a SIREN (coordinate network, no grid) for comparisons.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .components.encodings import GridConfig, make_encoding
from .components.mlp import Identity, MLPDecoder, Siren
from .components.rbf import RBFDecoder, SplitRBFDecoder


@dataclass
class FieldConfig:
    grid: GridConfig = field(default_factory=GridConfig)
    decoder: str = "rbf"  # rbf | mlp | siren
    units: int = 64  # RBF units (K)
    kernel: str = "gaussian"
    center_init: float = 1e-4
    hidden: int = 64  # mlp / siren width
    layers: int = 2  # mlp / siren depth
    log_prec_init: float = 0.0  # starting log-precision of every RBF unit (runs saved before it: 0)
    tail: bool = False  # rbf: add a linear function of the features to the output (runs saved before it: none)
    project: int = 0  # rbf: units on a learned J-dim linear map of the features, 0: on the features (saved before: 0)
    split: bool = False  # rbf: density and colour from two decoders (SplitRBFDecoder; saved before: one)
    colour: str = "rbf"  # split: the colour decoder, rbf | mlp (an MLP of ``hidden`` x ``layers``; saved before: rbf)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FieldConfig":
        d = dict(d)
        grid = GridConfig(**d.pop("grid", {}))
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(grid=grid, **known)


def make_decoder(cfg: FieldConfig, in_dim: int, out_dim: int) -> nn.Module:
    if cfg.decoder == "rbf":
        args = (in_dim, out_dim, cfg.units, cfg.kernel, cfg.center_init, cfg.log_prec_init, cfg.tail, cfg.project)
        if not cfg.split:
            return RBFDecoder(*args)
        return SplitRBFDecoder(*args, colour_mlp=(cfg.hidden, cfg.layers) if cfg.colour == "mlp" else None)
    if cfg.decoder == "mlp":
        return MLPDecoder(in_dim, out_dim, cfg.hidden, cfg.layers)
    if cfg.decoder == "siren":
        return Siren(in_dim, out_dim, cfg.hidden, cfg.layers)
    raise ValueError(f"unknown decoder {cfg.decoder!r} (rbf, mlp, siren)")


class _GridField(nn.Module):
    def __init__(self, dim: int, out_dim: int, cfg: FieldConfig, device="cpu"):
        super().__init__()
        self.cfg = cfg
        self.encoding = Identity(dim) if cfg.decoder == "siren" else make_encoding(dim, cfg.grid, device)
        self.decoder = make_decoder(cfg, self.encoding.out_dim, out_dim)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoding(x))

    def param_groups(self) -> dict:
        """Parameter counts by part (grid vs decoder) for reports."""
        return {
            "grid": sum(p.numel() for p in self.encoding.parameters()),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
        }


class ImageRBF(_GridField):
    """2D field: uv [N,2] in [-1,1]^2 (u along width) -> rgb [N,C] (C channels of the image)."""

    def __init__(self, cfg: FieldConfig, channels: int = 3, device="cpu"):
        super().__init__(2, channels, cfg, device)

    def rgb(self, uv: torch.Tensor) -> torch.Tensor:
        return self.raw(uv)

    forward = rgb


class SDFRBF(_GridField):
    """3D signed distance: x [N,3] in [-1,1]^3 -> sdf [N], negative inside."""

    def __init__(self, cfg: FieldConfig, device="cpu"):
        super().__init__(3, 1, cfg, device)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.raw(x).squeeze(-1)

    forward = sdf
