"""One layer of K anisotropic Gaussian RBF units in feature space (METHODS.md 1.2).

phi_k(F) = kernel(r_k), r_k = sum_d exp(b_kd) (F_d - mu_kd)^2; the head is a plain Linear.
The layer itself is ``fieldfit.cuda.rbf_layer`` (three GEMMs + clamp on CPU, a fused kernel on
CUDA): x [N,D], centers [K,D], log_prec [K,D] -> phi [N,K].
"""

import torch
from torch import nn

from fieldfit import cuda as kernels


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
    """features [N,D] -> RBF layer [N,K] -> Linear [N,out] (no output activation)."""

    def __init__(self, in_dim: int, out_dim: int, units: int = 64, kernel: str = "gaussian",
                 center_init: float = 1e-4, log_prec_init: float = 0.0):
        super().__init__()
        self.rbf = RBFLayer(in_dim, units, kernel, center_init, log_prec_init)
        self.head = nn.Linear(units, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rbf(x))
