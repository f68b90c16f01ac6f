"""Contracts between fields and renderers (DESIGN.md): narrow Protocols, fixed return types."""

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@dataclass
class FieldOutput:
    """What a radiance field returns at points x [N,3] seen along directions d [N,3]."""

    density: torch.Tensor  # [N], >= 0
    rgb: torch.Tensor  # [N,3] in [0,1]
    extras: dict = field(default_factory=dict)  # named extras (normals, features, ...), never stashed on the module


@runtime_checkable
class RadianceField(Protocol):
    def density(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> FieldOutput: ...


@runtime_checkable
class GeometryField(Protocol):
    def sdf(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ImageField(Protocol):
    def rgb(self, uv: torch.Tensor) -> torch.Tensor: ...
