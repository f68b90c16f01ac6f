"""Uniform sampler: N intervals per ray between near and far."""

import torch
from torch import nn

from ..samples import RaySamples


class UniformSampler(nn.Module):
    """Split [near, far] of every ray into ``n_samples`` contiguous intervals.

    Stratified: the N-1 interior interval edges move uniformly at random within half a
    bin of their place (ends stay at near and far), so the intervals still tile
    [near, far] without gaps or overlaps.

    Args:
        n_samples: intervals per ray.
        stratified: default for ``sample``.

    Examples:
        >>> s = UniformSampler(4).sample(torch.zeros(2, 3), torch.ones(2, 3), 0.0, 1.0)
        >>> s.n_samples, s.t_ends[:4].tolist()
        (8, [0.25, 0.5, 0.75, 1.0])
    """

    def __init__(self, n_samples: int, stratified: bool = False):
        super().__init__()
        self.n_samples = int(n_samples)
        self.stratified = bool(stratified)

    def sample(self, origins: torch.Tensor, dirs: torch.Tensor, near, far, stratified=None) -> RaySamples:
        """Args: origins, dirs [R,3]; near, far floats or [R]. Returns RaySamples (R*N samples)."""
        n_rays, n = origins.shape[0], self.n_samples
        kw = dict(dtype=origins.dtype, device=origins.device)
        near = torch.as_tensor(near, **kw).expand(n_rays)[:, None]
        far = torch.as_tensor(far, **kw).expand(n_rays)[:, None]
        u = torch.linspace(0.0, 1.0, n + 1, **kw).expand(n_rays, n + 1)
        if self.stratified if stratified is None else stratified:
            shift = (torch.rand(n_rays, n - 1, **kw) - 0.5) / n
            u = torch.cat([u[:, :1], u[:, 1:-1] + shift, u[:, -1:]], dim=-1)
        edges = near + (far - near) * u
        return RaySamples.from_batched(edges[:, :-1].contiguous(), edges[:, 1:].contiguous())
