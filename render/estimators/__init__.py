"""Samplers and estimators: nn.Modules with buffer state whose ``sample`` returns RaySamples."""

from .occupancy import OccupancyGrid
from .uniform import UniformSampler

__all__ = ["OccupancyGrid", "UniformSampler"]
