"""ProNeRF's networks (METHODS.md 3.2): the ray sampler, the refiner, bins, and an MLP NeRF field.

Notation: R rays, N samples per ray, V source views, near/far [R] per ray in marching space.

    Pluecker(ray)  = [d^, o x d^]  (6-D, the same for every point of the ray; fed once, raw by
                     default: a frequency encoding of it fits the training rays better but
                     generalises worse to new views, measured 0.03 vs 0.3 of the samples near
                     the surface on test rays of tests/test_pronerf_fit.py's sphere)
    SamplerNet     : enc(Pluecker) -> u~ [N] (sigmoid), sigma_add [N], alpha_mul [N], c0 [3]
                     t~ = near + sort(u~) (far - near)
    bins           : edges e_0 = (near + t~_0)/2, e_i = (t~_{i-1} + t~_i)/2, e_N = (t~_{N-1} + far)/2
    RefineNet      : [enc(Pluecker), (t~ - near)/(far - near), E [N,V,3]] -> u [N], offsets [N,3], c1 [3]
                     t_i = e_i + u_i (e_{i+1} - e_i)   (sorted and inside bin i by construction)

Initialisation: the depth head starts at the quantiles (i + 1/2)/N of (near, far) (uniform
samples), the refiner at bin centres with zero offsets, and the density modulation neutral
(sigma_add = 0, alpha_mul = 1), so an untrained sampler marches like a uniform one.
ProNeRF's networks are 6 x 256 ELU; pronerf's defaults are 4 x 64 (methods/pronerf.py says
why), so that both together cost less per ray than a few field samples on a CPU.
"""


import torch
import torch.nn.functional as F
from torch import nn

from .base import FieldOutput


def plucker(origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """[R,6] Pluecker coordinates (d^, o x d^) of rays [R,3]; invariant to moving o along the ray."""
    d = F.normalize(dirs, dim=-1)
    return torch.cat([d, torch.cross(origins, d, dim=-1)], dim=-1)


def frequency_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """[...,D] -> [...,D (1 + 2 n_freqs)]: x, sin(2^k x), cos(2^k x) (NeRF's positional encoding)."""
    if n_freqs <= 0:
        return x
    scales = 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)
    xs = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(xs), torch.cos(xs)], dim=-1)


def elu_mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * layers
    mods = []
    for a, b in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(a, b), nn.ELU(inplace=True)]
    mods.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*mods)


class SamplerNet(nn.Module):
    """Proposal of N depths per ray from its Pluecker encoding (ProNeRF's PAS, ``MinMaxRay_Net``)."""

    def __init__(self, in_dim: int, n_samples: int, hidden: int = 128, layers: int = 4):
        super().__init__()
        self.n = n_samples
        self.net = elu_mlp(in_dim, hidden, layers, 3 * n_samples + 3)
        head = self.net[-1]
        with torch.no_grad():
            head.weight[: 3 * n_samples].mul_(0.01)
            head.weight[n_samples: 3 * n_samples].zero_()
            q = (torch.arange(n_samples, dtype=torch.float32) + 0.5) / n_samples
            head.bias[:n_samples] = torch.log(q / (1 - q))
            head.bias[n_samples: 3 * n_samples] = 0.0

    def forward(self, enc: torch.Tensor):
        """enc [R,E] -> (u~ [R,N] in (0,1), unsorted; sigma_add raw [R,N]; alpha_mul [R,N]; c0 [R,3])."""
        raw = self.net(enc)
        n = self.n
        return (torch.sigmoid(raw[:, :n]), raw[:, n:2 * n].clamp(-10, 10), 1.0 + raw[:, 2 * n:3 * n].clamp(-10, 10),
                torch.sigmoid(raw[:, 3 * n:]))


class RefineNet(nn.Module):
    """Placement of the final samples inside the bins of the proposal, from re-projected colours."""

    def __init__(self, in_dim: int, n_samples: int, n_views: int, hidden: int = 128, layers: int = 4):
        super().__init__()
        self.n, self.v = n_samples, n_views
        self.net = elu_mlp(in_dim + n_samples * (1 + 3 * n_views), hidden, layers, 4 * n_samples + 3)
        head = self.net[-1]
        with torch.no_grad():
            head.weight[: 4 * n_samples].zero_()
            head.bias[: 4 * n_samples].zero_()

    def forward(self, enc: torch.Tensor, s: torch.Tensor, feats: torch.Tensor):
        """enc [R,E], s [R,N] normalised proposal depths, feats [R,N,V,3] ->
        (u [R,N] in (0,1), offsets [R,N,3] in (-1,1), c1 [R,3])."""
        n = self.n
        raw = self.net(torch.cat([enc, s, feats.flatten(1)], dim=-1))
        return (torch.sigmoid(raw[:, :n]), torch.tanh(raw[:, n:4 * n]).view(-1, n, 3),
                torch.sigmoid(raw[:, 4 * n:]))


def bin_edges(t: torch.Tensor, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Sorted depths t [R,N] -> bin edges [R,N+1] (module doc); end bins reach halfway to near/far."""
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    return torch.cat([0.5 * (near[:, None] + t[:, :1]), mids, 0.5 * (t[:, -1:] + far[:, None])], dim=-1)


def refine_in_bins(t: torch.Tensor, u: torch.Tensor, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """[R,N] t_i = e_i + u_i (e_{i+1} - e_i): one sample inside each bin of sorted t, u in [0,1]."""
    e = bin_edges(t, near, far)
    return e[:, :-1] + u * (e[:, 1:] - e[:, :-1])


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



__all__ = ["NerfMLP", "RefineNet", "SamplerNet", "bin_edges", "elu_mlp", "frequency_encoding", "plucker",
           "refine_in_bins"]
