"""A small NeRF (Mildenhall et al. 2020) radiance field: positional encoding -> ReLU MLP with one skip ->
density, then a colour branch that reads the view direction. ProNeRF's optional field (``--field nerf``)."""

import torch
import torch.nn.functional as F
from torch import nn

from .base import FieldOutput
from .components.encodings import frequency_encoding


class NerfMLP(nn.Module):
    """A small NeRF (positional encoding -> ReLU MLP with one skip -> density, then a colour branch).

    ProNeRF's is 8 x 256 with PE 10 / 4; the defaults here (4 x 128) fit CPU budgets. x is
    normalised by ``aabb`` to [-1,1]^3 first. density = scale softplus(raw + shift), as RadianceRBF.
    """

    def __init__(self, aabb, freqs: int = 10, dir_freqs: int = 4, hidden: int = 128, layers: int = 4,
                 density_shift: float = -1.0, density_scale: float = 10.0):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3))
        self.freqs, self.dir_freqs = freqs, dir_freqs
        self.density_shift, self.density_scale = float(density_shift), float(density_scale)
        in_x, in_d = 3 * (1 + 2 * freqs), 3 * (1 + 2 * dir_freqs)
        self.skip = layers // 2
        self.layers = nn.ModuleList(
            nn.Linear(in_x if i == 0 else hidden + (in_x if i == self.skip else 0), hidden) for i in range(layers))
        self.sigma = nn.Linear(hidden, 1)
        self.feat = nn.Linear(hidden, hidden)
        self.colour = nn.Sequential(nn.Linear(hidden + in_d, hidden // 2), nn.ReLU(inplace=True),
                                    nn.Linear(hidden // 2, 3))

    def _trunk(self, x):
        lo, hi = self.aabb[0], self.aabb[1]
        e = frequency_encoding((x - lo) * (2.0 / (hi - lo)) - 1.0, self.freqs)
        h = e
        for i, lin in enumerate(self.layers):
            h = F.relu(lin(torch.cat([h, e], -1) if i == self.skip and i > 0 else h))
        return h

    def _density(self, h):
        return self.density_scale * F.softplus(self.sigma(h)[:, 0] + self.density_shift)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self._density(self._trunk(x))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> FieldOutput:
        h = self._trunk(x)
        c = self.colour(torch.cat([self.feat(h), frequency_encoding(d, self.dir_freqs)], -1))
        return FieldOutput(density=self._density(h), rgb=torch.sigmoid(c))


__all__ = ["NerfMLP"]
