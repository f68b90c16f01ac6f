"""A world-space scene cut into A x B overlapping blocks, and each camera given to the blocks it sees.

Conventions:
* The two horizontal axes are the scene's axes of largest spread (the range of the camera positions plus the
  range of the sparse points, or of the scene box without points); the first (A cells) is the wider one, the
  third axis is up. Blocks span the scene box's full height.
* Cells split the scene box evenly. A block's box is its cell pushed out on each horizontal side by ``overlap``
  times the cell's side, clipped to the scene box: neighbours share a band 2 x overlap cells wide, across which
  the blend of ``blend.BlockWeights`` goes from one to the other.
* A camera belongs to every block whose box it sees: at least ``min_share`` of its image looks into the box (of
  a grid of its pixels, ``VIS_RAYS`` along the longer side, the share whose rays cross the box between near and
  far; occlusion is not considered). Points projected from the box would miss a box the camera stands in
  and count a distant one in full; the image's share measures what the view shows of it. A camera that sees no
  box goes to the block whose cell centre is nearest (horizontally), so every camera belongs
  to at least one block. Train and test views are given out by the same rule.
"""

import re
from dataclasses import dataclass, field

import numpy as np
import torch

from fieldfit.errors import InputError

MAX_CELLS = 16  # per axis
VIS_RAYS = 16  # rays along an image's longer side when measuring what a camera sees
MIN_SHARE = 0.1


@dataclass
class Block:
    """One block: its cell (index along each horizontal axis), the cell's box and the overlap-enlarged ``box``
    ([2,3] world), and its views (indices into the scene's frames)."""

    name: str
    index: tuple[int, int]
    cell: np.ndarray
    box: np.ndarray
    train: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "index": list(self.index), "cell": self.cell.tolist(), "box": self.box.tolist(),
                "train": list(self.train), "test": list(self.test)}


@dataclass
class Plan:
    """The partition: horizontal ``axes`` (first, second), the cells' ``edges`` along each, the blend ``margins``
    (overlap x cell side) and the blocks, row-major (first axis slowest)."""

    axes: tuple[int, int]
    edges: tuple[np.ndarray, np.ndarray]
    margins: tuple[float, float]
    blocks: list[Block]

    def to_dict(self) -> dict:
        return {"axes": list(self.axes), "edges": [e.tolist() for e in self.edges], "margins": list(self.margins),
                "blocks": [b.to_dict() for b in self.blocks]}


def parse_grid(text) -> tuple[int, int]:
    """"AxB" -> (A, B), each 1..MAX_CELLS; InputError naming --blocks otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or not all(1 <= int(g) <= MAX_CELLS for g in m.groups()):
        raise InputError(f"--blocks {text}", f"expected AxB, two whole numbers from 1 to {MAX_CELLS}",
                         "e.g. --blocks 2x2 or --blocks 4x1")
    return int(m.group(1)), int(m.group(2))


def check_overlap(overlap) -> float:
    v = float(overlap)
    if not 0.0 < v <= 0.5:
        raise InputError(f"--overlap {overlap}", "must be a share of a cell's side in (0, 0.5]", "e.g. --overlap 0.15")
    return v


def horizontal_axes(scene) -> tuple[int, int]:
    """(wider, narrower) horizontal axes of a scene (module doc)."""
    pos = np.asarray([c.position for c in scene.cameras()], np.float64)
    spread = np.ptp(pos, axis=0) if len(pos) else np.zeros(3)
    pts = scene.points if scene.points is not None and len(scene.points) >= 10 else np.asarray(scene.aabb)
    spread = spread + np.ptp(np.asarray(pts, np.float64), axis=0)
    order = np.argsort(-spread, kind="stable")
    return int(order[0]), int(order[1])


def camera_shares(cameras, box: np.ndarray, near: float, far: float) -> np.ndarray:
    """[C] share of each camera's image that looks into ``box``: of a ``VIS_RAYS`` grid of its pixels, those whose
    ray crosses the box between near and far."""
    from fieldfit.render.rays import ray_aabb

    aabb = torch.as_tensor(box, dtype=torch.float64)
    out = []
    for cam in cameras:
        n = max(1, -(-max(cam.width, cam.height) // VIS_RAYS))
        o, d = cam.scaled(n).rays(dtype=torch.float64) if n > 1 else cam.rays(dtype=torch.float64)
        t0, t1, hit = ray_aabb(o, d, aabb)
        out.append(float((hit & (t1 > near) & (t0 < far)).double().mean()))
    return np.asarray(out)


def partition(scene, grid: tuple[int, int], overlap: float, min_share: float = MIN_SHARE) -> Plan:
    """The blocks of ``scene`` on an A x B ``grid`` with ``overlap`` (module doc)."""
    (a0, a1), aabb = horizontal_axes(scene), np.asarray(scene.aabb, np.float64)
    edges = tuple(np.linspace(aabb[0, ax], aabb[1, ax], n + 1) for ax, n in zip((a0, a1), grid, strict=True))
    margins = tuple(float(overlap * (e[1] - e[0])) for e in edges)
    blocks = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            cell = aabb.copy()
            cell[:, a0], cell[:, a1] = edges[0][i:i + 2], edges[1][j:j + 2]
            box = cell.copy()
            for ax, m in zip((a0, a1), margins, strict=True):
                box[:, ax] = np.clip(box[:, ax] + (-m, m), aabb[0, ax], aabb[1, ax])
            blocks.append(Block(f"b{i}_{j}", (i, j), cell, box))
    cams = scene.cameras()
    shares = np.stack([camera_shares(cams, b.box, scene.near, scene.far) for b in blocks], 1)  # [C, K]
    centres = np.asarray([b.cell.mean(0)[[a0, a1]] for b in blocks])
    for split in ("train", "test"):
        for i in scene.splits.get(split, []):
            owners = np.nonzero(shares[i] >= min_share)[0]
            if owners.size == 0:  # sees no box: the nearest cell's block
                pos = cams[i].position[[a0, a1]]
                owners = [int(np.argmin(np.linalg.norm(centres - pos, axis=1)))]
            for k in owners:
                getattr(blocks[k], split).append(int(i))
    return Plan((a0, a1), edges, margins, blocks)


__all__ = ["MIN_SHARE", "Block", "Plan", "camera_shares", "check_overlap", "horizontal_axes", "parse_grid",
           "partition"]
