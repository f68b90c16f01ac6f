"""K nearest faces per pixel centre (the integer half of the K-buffer rasterizer).

Two layers: ``raster_faces`` (checks, contiguity, dispatch) -> ``_raster_triton`` (tile binning
plus a depth-peeling kernel, imported on first CUDA/forced use); CPU tensors use the torch
reference ``_raster_ref.raster_faces_ref``. No autograd layer: face ids are not differentiable;
``fieldfit.render.raster`` recomputes barycentrics and depths from them in torch, with gradients.
"""

import torch

from . import _checks
from ._dispatch import backend_for
from ._raster_ref import raster_faces_ref

_OP = "raster_faces"


def raster_faces(tri: torch.Tensor, width: int, height: int, k: int, near: float = 1e-4) -> torch.Tensor:
    """Ids of the K nearest faces at every pixel centre, nearest first.

    Semantics of ``raster_faces_ref`` (coverage rule, depth, tie order: see ``cuda._raster_ref``).

    Args:
        tri: [F,3,3] float32/float64: per face and vertex (pixel x, pixel y (rows down), camera depth).
        width, height: image size in pixels; pixel (col, row) has its centre at (col + 0.5, row + 0.5).
        k: layers kept per pixel.
        near: faces with a vertex at depth <= near are not drawn (no clipping).

    Returns:
        [H*W, K] int64 face indices into ``tri``, -1 where a pixel has fewer than K faces.

    Examples:
        >>> tri = torch.tensor([[[0.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, 4.0, 1.0]]])
        >>> raster_faces(tri, 3, 3, 1).reshape(3, 3).tolist()
        [[0, 0, 0], [0, 0, 0], [0, 0, -1]]
    """
    _checks.tensor(_OP, "tri", tri, ("F", 3, 3))
    width, height, k = (_checks.int_arg(_OP, n, v, 1) for n, v in (("width", width), ("height", height), ("k", k)))
    if backend_for(tri) == "torch":
        return raster_faces_ref(tri, width, height, k, float(near))
    from . import _raster_triton  # noqa: PLC0415 - triton is imported lazily

    return _raster_triton.forward(tri.contiguous(), width, height, k, float(near))
