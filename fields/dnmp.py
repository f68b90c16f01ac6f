"""Deformable neural mesh primitives (METHODS.md 2.1): the model pieces, no rays and no training.

Notation: M primitives of one voxel size s, each a deformed level-1 icosphere (42 vertices,
80 faces; faces are never shared between primitives). Primitive m has vertices

    V_m = c_m + delta_m + r_s (T + Dec(z_m / |z_m|)),   r_s = s sqrt(3) / 2 (voxel circumradius)

with T the unit template, z_m in R^8 a latent, delta_m a centre offset, Dec a frozen decoder
(``MeshDecoder``, trained by fieldfit itself: ``fieldfit.methods.dnmp.autoencoder``). Every vertex carries a
learnable feature; ``Shader`` maps an interpolated feature (and the view direction, with the
interpolated normal) to an opacity and a colour. ``Background`` is a colour per direction.

Differences from the paper, for CPU budgets: decoder 8->128->128->126 (paper 4x512), shader
trunk 2x64 on the raw feature (paper 8x256 on PE(feature)); vertex features start as a position
encoding of the vertex (dimension 3 + 6 freqs: 39 by default; the paper learns 21-D features).
"""

import math

import torch
from torch import nn

from .components.mlp import mlp
from .components.sh import sh_colour, sh_count

LATENT = 8


def icosphere() -> tuple[torch.Tensor, torch.Tensor]:
    """Level-1 icosphere: unit vertices [42,3] float32, faces [80,3] int64 counter-clockwise seen from outside."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
         [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [list(map(float, p)) for p in v]
    mid: dict[tuple[int, int], int] = {}

    def middle(a, b):
        key = (min(a, b), max(a, b))
        if key not in mid:
            verts.append([(verts[a][i] + verts[b][i]) / 2 for i in range(3)])
            mid[key] = len(verts) - 1
        return mid[key]

    faces = []
    for a, b, c in f:
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    vt = torch.tensor(verts, dtype=torch.float32)
    return vt / vt.norm(dim=-1, keepdim=True), torch.tensor(faces, dtype=torch.int64)


class MeshDecoder(nn.Module):
    """z [N,8] (normalised here) -> vertex offsets [N,42,3] from the unit icosphere."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = mlp([LATENT, hidden, hidden, 42 * 3])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return self.net(z).reshape(-1, 42, 3)


class MeshEncoder(nn.Module):
    """Template radii [N,42] -> unit latent [N,8] (used to train the decoder and find the sphere code)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = mlp([42, hidden, hidden, LATENT])

    def forward(self, radii: torch.Tensor) -> torch.Tensor:
        z = self.net(radii)
        return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class PrimitiveLevel(nn.Module):
    """The M primitives of one voxel size: latents, centre offsets and per-vertex features."""

    def __init__(self, centres: torch.Tensor, voxel: float, sphere_code: torch.Tensor, feat_dim: int = 16):
        super().__init__()
        tv, tf = icosphere()
        m = centres.shape[0]
        self.voxel = float(voxel)
        self.radius = self.voxel * math.sqrt(3.0) / 2.0
        self.register_buffer("centres", centres.float())
        self.register_buffer("template", tv)
        self.register_buffer("faces", (tf[None] + 42 * torch.arange(m)[:, None, None]).reshape(-1, 3))
        self.latents = nn.Parameter(sphere_code.float().reshape(1, LATENT).repeat(m, 1))
        self.offsets = nn.Parameter(torch.zeros(m, 3))
        self.features = nn.Parameter(torch.zeros(m * 42, feat_dim))

    @property
    def count(self) -> int:
        return self.centres.shape[0]

    def vertices(self, decoder: MeshDecoder) -> torch.Tensor:
        """[M*42,3] world positions; differentiable in latents and offsets."""
        shape = self.template + decoder(self.latents)
        return (self.centres[:, None] + self.offsets[:, None] + self.radius * shape).reshape(-1, 3)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """[V,3] unit area-weighted vertex normals (outward for counter-clockwise faces)."""
    tri = verts[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    n = torch.zeros_like(verts).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return nn.functional.normalize(n, dim=-1)


def dir_encoding(d: torch.Tensor) -> torch.Tensor:
    """[N,3] unit directions -> [N,9] real spherical harmonics up to degree 2 (constant dropped: 8 + d)."""
    x, y, z = d.unbind(-1)
    return torch.stack([x, y, z, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y, x * y * z], -1)


class Shader(nn.Module):
    """(feature [N,F], view dir [N,3], normal [N,3]) -> (alpha [N], rgb [N,3]).

    ``sh_degree`` None: the colour MLP reads the view direction (degree-2 harmonics) with the
    feature; an integer: the MLP gives spherical-harmonic coefficients of that degree per point, as
    rbf's radiance field does, and the colour is sigmoid(sum_k c_k Y_k(dir)).
    ``rim``: the opacity also reads |normal . dir| (0 where the surface turns away at a silhouette),
    so a primitive's rim can fade like the partly covered pixels of a photo's outline.
    """

    def __init__(self, feat_dim: int = 16, hidden: int = 64, sh_degree: int | None = None, rim: bool = False):
        super().__init__()
        self.sh_degree, self.rim = sh_degree, bool(rim)
        self.trunk = mlp([feat_dim, hidden, hidden], last_activation=True)
        self.alpha = nn.Linear(hidden + self.rim, 1)
        if sh_degree is None:
            self.colour = mlp([hidden + 9 + 3, hidden, 3])
        else:
            self.colour = mlp([hidden + 3, hidden, 3 * sh_count(sh_degree)])
        nn.init.constant_(self.alpha.bias, 1.0)

    def opacity(self, h, facing=None):
        """Alpha [N] from trunk output h [N,hidden]; ``facing`` [N,1] is |normal . dir| (None: 1, face on)."""
        if self.rim:
            h = torch.cat([h, torch.ones_like(h[:, :1]) if facing is None else facing], -1)
        return torch.sigmoid(self.alpha(h)).squeeze(-1)

    def forward(self, feat, dirs, normals):
        h = self.trunk(feat)
        alpha = self.opacity(h, (normals * dirs).sum(-1, keepdim=True).abs() if self.rim else None)
        if self.sh_degree is None:
            return alpha, torch.sigmoid(self.colour(torch.cat([h, dir_encoding(dirs), normals * dirs], -1)))
        return alpha, sh_colour(self.colour(torch.cat([h, normals], -1)), dirs, self.sh_degree)


class Background(nn.Module):
    """Colour seen along a direction where every primitive is missed or transparent: [N,3] -> [N,3]."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = mlp([9, hidden, 3])

    def forward(self, dirs):
        return torch.sigmoid(self.net(dir_encoding(dirs)))


__all__ = ["Background", "LATENT", "MeshDecoder", "MeshEncoder", "PrimitiveLevel", "Shader", "dir_encoding",
           "icosphere", "vertex_normals"]
