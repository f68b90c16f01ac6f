"""MLPs: the one builder every network of fieldfit uses, the ReLU MLP decoder, and a SIREN."""

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}


def mlp(sizes: list[int], activation: str = "relu", last_activation: bool = False) -> nn.Sequential:
    """Linear layers of widths ``sizes`` (input first, output last) with ``activation`` (relu | elu) between
    them, and after the last one when ``last_activation``: [Linear, act, Linear, act, ..., Linear(, act)]."""
    act = ACTIVATIONS[activation]
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            mods.append(act())
    return nn.Sequential(*mods)


class MLPDecoder(nn.Module):
    """features [N,D] -> hidden ReLU layers -> [N,out]."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.net = mlp([in_dim] + [hidden] * layers + [out_dim])

    def outputs(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The output columns ``rows`` only, at features x [N,D] (as ``RBFDecoder.outputs``)."""
        head = self.net[-1]
        return torch.nn.functional.linear(self.net[:-1](x), head.weight[rows], head.bias[rows])

    def forward(self, x):
        return self.net(x)


class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020): sine layers with omega_0 = 30 and their initialisation."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 3, omega0: float = 30.0):
        super().__init__()
        self.omega0 = omega0
        dims = [in_dim] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = nn.Linear(hidden, out_dim)
        with torch.no_grad():
            for i, lin in enumerate(self.layers):
                bound = 1.0 / lin.in_features if i == 0 else math.sqrt(6.0 / lin.in_features) / omega0
                lin.weight.uniform_(-bound, bound)
            bound = math.sqrt(6.0 / hidden) / omega0
            self.head.weight.uniform_(-bound, bound)

    def forward(self, x):
        for lin in self.layers:
            x = torch.sin(self.omega0 * lin(x))
        return self.head(x)


class Identity(nn.Module):
    """Encoding stand-in for coordinate networks (SIREN sees raw coordinates)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x):
        return x
