"""A field sampled on a fine grid only where its zero level set can be: the band around the surface.

``evaluate_grid`` at 256^3 calls the field 16.7M times, and all but a few percent of those nodes are far from the
surface, where marching cubes only reads their sign. Here the field is first sampled every ``stride`` nodes (a
coarse grid whose cells are ``stride`` fine cells wide); a coarse cell is refined, all of its fine nodes
evaluated, when a corner is within ``reach`` cell diagonals of the level or its corners change sign. The other
fine nodes take the trilinear interpolation of their cell's corners, which all have the same sign and are at
least ``reach`` diagonals from the level.

For a field whose slope is at most ``reach`` (an SDF has slope 1) no point of an unrefined cell can reach the
level, so every node next to a sign change is evaluated and marching cubes gives the mesh of the full grid.
A field steeper than that can hide a feature smaller than a coarse cell; ``reach`` 2 leaves room for a fitted
field twice as steep as a distance.
"""

import numpy as np

from .grid import evaluate_grid, grid_bounds

STRIDE = 4  # fine cells per coarse cell
REACH = 2.0  # refine a coarse cell whose nearest corner is within this many of its diagonals of the level


def _axes(res, lo, hi, stride):
    """Per axis: the fine node positions (float32, as ``evaluate_grid`` makes them) and the coarse ones (every
    ``stride``-th fine node, continued past ``hi`` to a whole cell)."""
    import torch

    fine, coarse = [], []
    for r, a, b in zip(res, lo, hi, strict=True):
        x = torch.linspace(float(a), float(b), int(r)).numpy()
        idx = stride * np.arange(-(-(r - 1) // stride) + 1)
        beyond = (a + (b - a) / (r - 1) * idx).astype(np.float32)
        fine.append(x)
        coarse.append(np.where(idx < r, x[np.minimum(idx, r - 1)], beyond))
    return fine, coarse


def _call(sdf_fn, pts: np.ndarray, chunk: int, device) -> np.ndarray:
    """The field at points [N,3] float32, in chunks."""
    import torch

    out = np.empty(len(pts), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(pts), chunk):
            p = torch.from_numpy(pts[s:s + chunk]).to(device)
            out[s:s + len(p)] = sdf_fn(p).reshape(-1).float().cpu().numpy()
    return out


def evaluate_band(sdf_fn, resolution=256, bounds=(-1.0, 1.0), chunk: int = 2**18, device=None,
                  level: float = 0.0, stride: int = STRIDE, reach: float = REACH) -> tuple[np.ndarray, dict]:
    """The volume of ``evaluate_grid`` with the field evaluated only in the band around ``level`` (module doc).

    Returns:
        ([R0,R1,R2] float32 volume, report) with report keys ``evaluated`` (field calls, coarse included) and
        ``nodes`` (fine nodes in all).

    Raises:
        ValueError: the field returned NaN or infinite values.
    """
    import torch

    lo, hi = grid_bounds(bounds)
    res = np.broadcast_to(np.asarray(resolution, dtype=np.int64), (3,))
    nodes = int(np.prod(res))
    if (res < 2).any():
        raise ValueError(f"resolution must be >= 2 per axis, got {resolution}")
    if (res <= 2 * stride).any():
        return evaluate_grid(sdf_fn, resolution, bounds, chunk, device), {"evaluated": nodes, "nodes": nodes}
    fine, axes = _axes(res, lo, hi, stride)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    coarse = _call(sdf_fn, grid, chunk, device).reshape([len(a) for a in axes])
    off = coarse - np.float32(level)
    corners = [off[i:len(off) - 1 + i, j:off.shape[1] - 1 + j, k:off.shape[2] - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    near = np.min(np.abs(corners), axis=0)
    signs = np.sign(corners)
    diagonal = stride * float(np.linalg.norm((hi - lo) / (res - 1)))
    # a NaN corner refines its cell too (NaN compares unequal), so the check at the end sees it
    refine = (near <= reach * diagonal) | (signs.min(axis=0) != signs.max(axis=0))
    # every fine node of a refined cell: the cell's own nodes span stride+1 per axis
    cells = refine.repeat(stride, 0).repeat(stride, 1).repeat(stride, 2)
    mask = np.zeros(np.add(cells.shape, 1), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                mask[i:i + cells.shape[0], j:j + cells.shape[1], k:k + cells.shape[2]] |= cells
    mask = np.ascontiguousarray(mask[:res[0], :res[1], :res[2]])
    # align_corners maps coarse node c to fine index c*stride only when the fine size is (C-1)*stride+1
    full = [(len(a) - 1) * stride + 1 for a in axes]
    fill = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None, None], size=tuple(full),
                                           mode="trilinear", align_corners=True)[0, 0]
    vol = np.ascontiguousarray(fill[:res[0], :res[1], :res[2]].numpy())
    idx = np.flatnonzero(mask)
    if len(idx):
        pts = np.stack([x[i] for x, i in zip(fine, np.unravel_index(idx, mask.shape), strict=True)], axis=1)
        vol.ravel()[idx] = _call(sdf_fn, pts, chunk, device)
    if not np.isfinite(vol).all():
        raise ValueError(f"the SDF returned {int((~np.isfinite(vol)).sum())} NaN/Inf values on the grid")
    return vol, {"evaluated": int(coarse.size + len(idx)), "nodes": nodes}


__all__ = ["REACH", "STRIDE", "evaluate_band"]
