"""One layer of K anisotropic Gaussian RBF units in feature space (METHODS.md 1.2).

phi_k(F) = kernel(r_k), r_k = sum_d exp(b_kd) (z_d - mu_kd)^2 with z = F, or, with a projection, z = P F (P [J,D]
learned, shared by the units: each unit's metric is then P^T diag(exp(b_k)) P, a full one of rank J, instead of a
diagonal one in the features' own axes); the head is a plain Linear (plus, optionally, a linear tail on F itself).
The layer itself is ``fieldfit.cuda.rbf_layer`` (three GEMMs + clamp on CPU, a fused kernel on
CUDA): x [N,D], centers [K,D], log_prec [K,D] -> phi [N,K].
"""

import torch
import torch.nn.functional as F
from torch import nn

from fieldfit import cuda as kernels

from .mlp import MLPDecoder


class RBFLayer(nn.Module):
    """K units with learnable centres and per-dimension log-precisions."""

    def __init__(self, in_dim: int, units: int = 64, kernel: str = "gaussian", center_init: float = 1e-4,
                 log_prec_init: float = 0.0):
        super().__init__()
        self.kernel = kernel
        self.centers = nn.Parameter(torch.empty(units, in_dim).uniform_(-center_init, center_init))
        self.log_prec = nn.Parameter(torch.full((units, in_dim), float(log_prec_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.rbf_layer(x, self.centers, self.log_prec, self.kernel)


class RBFDecoder(nn.Module):
    """features F [N,D] -> (optionally projected, z = P F [N,J]) -> RBF layer phi [N,K] -> y = W phi + c [N,out]
    (no output activation).

    With ``tail``, y = W phi + V F + c: a linear function of the features is added, as the polynomial tail of an
    RBF interpolant. The units then model what is not linear in the features (a radiance field's SH colour is
    largely linear in tri-plane features, as in TensoRF's appearance basis). V starts at zero, so a fit starts
    from the plain RBF network.

    With ``project`` = J > 0 the units measure distances in z = P F, P [J,D] learned and starting as the first J
    rows of the identity (so centres drawn like the features start among them). One shared map turns every unit's
    axis-aligned ellipsoid into one along the directions the fit finds, and J < D makes the layer cheaper.
    """

    def __init__(self, in_dim: int, out_dim: int, units: int = 64, kernel: str = "gaussian",
                 center_init: float = 1e-4, log_prec_init: float = 0.0, tail: bool = False, project: int = 0):
        super().__init__()
        self.project = nn.Linear(in_dim, project, bias=False) if project else None
        if self.project is not None:  # z starts as the first J features (all of them where J >= D)
            nn.init.eye_(self.project.weight)
        self.rbf = RBFLayer(project or in_dim, units, kernel, center_init, log_prec_init)
        self.head = nn.Linear(units, out_dim)
        self.tail = nn.Linear(in_dim, out_dim, bias=False) if tail else None
        if self.tail is not None:
            nn.init.zeros_(self.tail.weight)

    def units_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the units measure their distances in: the features x [N,D], or their projection P x [N,J]."""
        return x if self.project is None else F.linear(x, self.project.weight)

    def outputs(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The output columns ``rows`` only, at features x [N,D] (a field's density alone: ``slice(0, 1)``)."""
        y = F.linear(self.rbf(self.units_input(x)), self.head.weight[rows], self.head.bias[rows])
        return y if self.tail is None else y + F.linear(x, self.tail.weight[rows])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)


class SplitRBFDecoder(nn.Module):
    """Density (output 0) and colour (the other outputs) from two ``RBFDecoder``s, each with its own units,
    projection and tail: the units that place surfaces need not be the ones that shade them. With ``colour_mlp`` =
    (hidden, layers) the colour comes from a ReLU MLP (``MLPDecoder``) instead, the density still from the units.

    Same interface as ``RBFDecoder.outputs``; a density-only call (``rows = slice(0, 1)``) evaluates the density
    decoder alone."""

    def __init__(self, in_dim: int, out_dim: int, units: int = 64, kernel: str = "gaussian",
                 center_init: float = 1e-4, log_prec_init: float = 0.0, tail: bool = False, project: int = 0,
                 colour_mlp: tuple[int, int] | None = None):
        super().__init__()
        if out_dim < 2:
            raise ValueError(f"SplitRBFDecoder: needs a density and at least one colour output, got {out_dim}")
        self.density = RBFDecoder(in_dim, 1, units, kernel, center_init, log_prec_init, tail, project)
        if colour_mlp is None:
            self.colour = RBFDecoder(in_dim, out_dim - 1, units, kernel, center_init, log_prec_init, tail, project)
        else:
            self.colour = MLPDecoder(in_dim, out_dim - 1, *colour_mlp)

    def outputs(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        if rows == slice(0, 1):
            return self.density.outputs(x)
        return torch.cat([self.density.outputs(x), self.colour.outputs(x)], dim=1)[:, rows]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)

    @torch.no_grad()
    def as_one(self) -> RBFDecoder | None:
        """One ``RBFDecoder`` with the same outputs (a copy, for kernels that read one decoder): both sets of units
        side by side, each head row reading its own set. With projections z stacks both (P = [P_d; P_c]) and each
        unit's precision is zero (log-precision -inf) along the other decoder's rows: it measures what it did.
        None with an MLP's colour."""
        a, b = self.density, self.colour
        if not isinstance(b, RBFDecoder):
            return None
        in_dim = a.project.in_features if a.project is not None else a.rbf.centers.shape[1]  # the features (D)
        ka, kb = a.rbf.centers.shape[0], b.rbf.centers.shape[0]
        ja = 0 if a.project is None else a.project.out_features
        jb = 0 if b.project is None else b.project.out_features
        oa, ob = a.head.out_features, b.head.out_features
        with torch.device("meta"):  # every tensor is written below; no draw from the random stream
            one = RBFDecoder(in_dim, oa + ob, ka + kb, a.rbf.kernel, tail=a.tail is not None, project=ja + jb)
        one.to_empty(device=a.head.weight.device).to(a.head.weight.dtype)
        if ja:  # block-diagonal metric on the stacked projection
            one.project.weight.copy_(torch.cat([a.project.weight, b.project.weight]))
            one.rbf.centers.zero_()
            one.rbf.log_prec.fill_(-float("inf"))
            one.rbf.centers[:ka, :ja], one.rbf.centers[ka:, ja:] = a.rbf.centers, b.rbf.centers
            one.rbf.log_prec[:ka, :ja], one.rbf.log_prec[ka:, ja:] = a.rbf.log_prec, b.rbf.log_prec
        else:
            one.rbf.centers.copy_(torch.cat([a.rbf.centers, b.rbf.centers]))
            one.rbf.log_prec.copy_(torch.cat([a.rbf.log_prec, b.rbf.log_prec]))
        one.head.weight.zero_()
        one.head.weight[:oa, :ka], one.head.weight[oa:, ka:] = a.head.weight, b.head.weight
        one.head.bias.copy_(torch.cat([a.head.bias, b.head.bias]))
        if one.tail is not None:
            one.tail.weight.copy_(torch.cat([a.tail.weight, b.tail.weight]))
        return one
