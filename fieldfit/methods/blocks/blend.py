"""The blocks' fields as one field: a partition of unity over the horizontal plane, blended per sample.

Why per sample, not per pixel: Block-NeRF blends whole images of the blocks near the camera with inverse-distance
weights, which works for its unbounded block fields. Here every block is box-bounded (its box is its field's
aabb), so no block can draw what a view shows beyond its box: a street seen lengthwise crosses several boxes.
So each sample point takes its density and colour from the blocks whose box holds it:

    w_k(x) = u_i(x[a0]) * v_j(x[a1])          (block k = cell (i, j); a0, a1 the horizontal axes)

where u_i is 1 inside cell i, falls linearly to 0 across the band of half-width m (the overlap margin) around
each of its inner edges, and stays 1 beyond the scene's outer edges. Along each axis the u_i sum to 1 (in a band
the two ramps add up to 1, and bands never overlap since m <= half a cell), so sum_k w_k = 1 everywhere, every w_k
is continuous (slope 1 / 2m), and w_k is 0 outside block k's box. Then

    sigma(x) = sum_k w_k sigma_k(x),    rgb(x, d) = sum_k w_k sigma_k(x) rgb_k(x, d) / sigma(x)

(colours weighted by each block's density too, so a block with empty space where its neighbour has a wall does
not wash the wall's colour out). sigma_k is block k's density inside its box and occupied cells (0 elsewhere:
where its own renders never sample). Inside one cell, away from the bands, the blend is that block's field
exactly: the parent renders there what the block renders. The marching grid (``blocks_grid``) is the union of
the blocks' occupied cells on one grid over the scene box. The mesh is marching cubes of this sigma (one grid,
one surface through the bands).
"""

import itertools

import numpy as np
import torch
from torch import nn

from fieldfit.fields.base import FieldOutput
from fieldfit.render import OccupancyGrid


def axis_weights(x: torch.Tensor, edges, margin: float) -> torch.Tensor:
    """[N, n] the 1-D partition of unity u_i(x) of the n cells between ``edges`` [n+1] (module doc)."""
    n = len(edges) - 1
    out = torch.ones(x.shape[0], n, dtype=x.dtype, device=x.device)
    width = 2.0 * max(float(margin), 1e-12)
    for i in range(n):
        if i > 0:  # rises across the band around its left edge
            out[:, i] *= ((x - (float(edges[i]) - margin)) / width).clamp(0.0, 1.0)
        if i < n - 1:  # falls across the band around its right edge
            out[:, i] *= (((float(edges[i + 1]) + margin) - x) / width).clamp(0.0, 1.0)
    return out


class BlockWeights:
    """w_k(x) of the module doc, for the blocks of a ``partition.Plan`` (row-major: k = i * B + j)."""

    def __init__(self, axes, edges, margins):
        self.axes = tuple(int(a) for a in axes)
        self.edges = [np.asarray(e, np.float64) for e in edges]
        self.margins = tuple(float(m) for m in margins)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[N, K] weights of points x [N,3]; each row sums to 1."""
        u = axis_weights(x[:, self.axes[0]], self.edges[0], self.margins[0])
        v = axis_weights(x[:, self.axes[1]], self.edges[1], self.margins[1])
        return (u[:, :, None] * v[:, None, :]).reshape(x.shape[0], u.shape[1] * v.shape[1])


class BlendedField(nn.Module):
    """The blocks' radiance fields as one (``fields.base.RadianceField``): ``fields[k]`` inside ``boxes[k]`` where
    ``grids[k]`` is occupied, blended by ``weights`` (module doc)."""

    def __init__(self, fields: list, grids: list, boxes, weights: BlockWeights):
        super().__init__()
        self.fields = nn.ModuleList(fields)
        self.grids = nn.ModuleList(grids)
        self.register_buffer("boxes", torch.as_tensor(np.asarray(boxes), dtype=torch.float32))
        self.weights = weights

    def parts(self, x: torch.Tensor):
        """Yield (k, indices of the points block k holds, their weights)."""
        w = self.weights(x.double()).to(x.dtype)
        for k in range(len(self.fields)):
            box = self.boxes[k].to(x.dtype)
            mask = (w[:, k] > 0) & ((x >= box[0]) & (x <= box[1])).all(1)
            idx = mask.nonzero().squeeze(-1)
            if idx.numel():
                idx = idx[self.grids[k].occupied(x[idx])]
            if idx.numel():
                yield k, idx, w[idx, k]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        sigma = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k, idx, w in self.parts(x):
            sigma[idx] += w * self.fields[k].density(x[idx]).reshape(-1).to(x.dtype)
        return sigma

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> FieldOutput:
        sigma = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        paint = torch.zeros(x.shape[0], 3, dtype=x.dtype, device=x.device)
        for k, idx, w in self.parts(x):
            out = self.fields[k](x[idx], d[idx])
            s = w * out.density.reshape(-1).to(x.dtype)
            sigma[idx] += s
            paint[idx] += s[:, None] * out.rgb.to(x.dtype)
        rgb = torch.where(sigma[:, None] > 0, paint / sigma.clamp_min(1e-30)[:, None], paint)
        return FieldOutput(density=sigma, rgb=rgb.clamp(0.0, 1.0))


@torch.no_grad()
def blocks_grid(grids: list, boxes, aabb, resolution: int, device="cpu") -> OccupancyGrid:
    """An occupancy grid over ``aabb`` whose cell is occupied where any block's occupied cell (inside its box)
    overlaps it: a superset of where ``BlendedField`` has density."""
    grid = OccupancyGrid(aabb, resolution=resolution, warmup_steps=0, dilation=0).to(device)
    binary = torch.zeros_like(grid.binary)
    g = grid.resolution
    lo0, cell = grid.aabb[0].double(), grid.cell_size.double()
    for child, box in zip(grids, boxes, strict=True):
        flat = child.binary.reshape(-1).nonzero().squeeze(-1)
        if not flat.numel():
            continue
        ijk = child.cell_indices(flat).double()
        c_lo = child.aabb[0].double() + ijk * child.cell_size.double()
        c_hi = c_lo + child.cell_size.double()
        b = torch.as_tensor(np.asarray(box), dtype=torch.float64, device=c_lo.device)
        c_lo, c_hi = torch.maximum(c_lo, b[0]), torch.minimum(c_hi, b[1])
        keep = (c_hi > c_lo).all(1)
        first = ((c_lo[keep] - lo0) / cell).floor().long().clamp(0, g - 1)
        last = ((c_hi[keep] - lo0) / cell).ceil().long().sub(1).clamp(0, g - 1)
        span = int((last - first).max()) + 1 if first.numel() else 0
        for dx, dy, dz in itertools.product(range(span), repeat=3):
            idx = first + torch.tensor([dx, dy, dz], device=first.device)
            ok = (idx <= last).all(1)
            binary[idx[ok, 0], idx[ok, 1], idx[ok, 2]] = True
    grid.binary.copy_(binary)
    return grid


__all__ = ["BlendedField", "BlockWeights", "axis_weights", "blocks_grid"]
