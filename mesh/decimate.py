"""Decimation that keeps a closed mesh closed and its topology: fast-simplification in checked passes.

The decimator is fast-simplification (quadric-error edge collapses, the Fast-Quadric-Mesh-Simplification
library; ``pip install 'fieldfit[mesh]'``). Its collapses do not test the link condition, so one pass to a far
target can pinch thin parts into non-manifold edges and change the Euler number (armadillo, 100k -> 5k faces:
Euler 2 -> 5 at its default aggressiveness). So ``decimate`` goes in passes, each to at most half the faces, and
keeps a pass only when its result, as other tools load it, is still what the input was (``topology``):

- vertices rounded to float32 (what .ply .stl .glb store) and merged closer than ``mesh.weld.WELD_TOL`` of the
  bounding-box diagonal (``mesh.weld.merge_by_distance``, the weld of MeshLab, Blender, trimesh);
- a closed, oriented 2-manifold there (``mesh.weld.is_closed_manifold``: every edge two faces in opposite
  directions, every vertex one fan) with positive volume, the same Euler number and the same number of shells.

A pass that breaks this is retried less aggressively: lower aggressiveness (7, 5, 3), then a target halfway back
towards the faces it started from (three times). When no try keeps the topology the decimation stops there, and
says so (``Decimated.note``).

Each connected component is decimated on its own, to its share of the target (its share of the faces, at least
4), so that no small shell is collapsed away; the weld radius is the whole mesh's throughout, and the reassembled
mesh is checked once more (two shells that came within it of each other would merge: then nothing is decimated).

Vertex colours follow the nearest input vertex.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from fieldfit.errors import InputError

from .clean import remove_unreferenced
from .topology import component_count, euler_characteristic, face_components, signed_volume
from .weld import WELD_TOL, diagonal, is_closed_manifold, merge_by_distance

AGGRESSION = (7.0, 5.0, 3.0)  # fast-simplification's ``agg``: 7 is its default; lower collapses more carefully
RETRIES = 3  # a pass that breaks the topology at every aggression: its target moved halfway back, this often
MIN_FACES = 4  # the fewest faces of a closed shell (a tetrahedron)


@dataclass(frozen=True)
class Topology:
    """What a tool that welds vertices finds in a mesh (see the module doc)."""

    closed: bool
    euler: int
    shells: int

    def keeps(self, other: "Topology") -> bool:
        """``other`` is closed and has this topology."""
        return other.closed and (other.euler, other.shells) == (self.euler, self.shells)


@dataclass
class Decimated:
    """The result of ``decimate``: vertices [V,3] float64, faces [F,3] int64, colours [V,C] (or None), the passes
    kept, and a one-line note when the target was not reached (empty otherwise)."""

    vertices: np.ndarray
    faces: np.ndarray
    colours: np.ndarray | None
    passes: int
    note: str = ""


def topology(vertices, faces, radius: float | None = None) -> Topology:
    """``Topology`` of (vertices, faces) after float32 rounding and a weld of vertices closer than ``radius`` (default
    ``WELD_TOL`` of the bounding-box diagonal)."""
    v = np.asarray(vertices, dtype=np.float32).astype(np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    v, f = merge_by_distance(v, f, WELD_TOL * diagonal(v) if radius is None else radius)
    closed = len(f) > 0 and is_closed_manifold(v, f) and signed_volume(v, f) > 0
    return Topology(bool(closed), int(euler_characteristic(v, f)), int(component_count(v, f)))


def _simplifier():
    try:
        import fast_simplification
    except ModuleNotFoundError:
        raise InputError("--faces", "decimation needs the fast-simplification package",
                         "pip install 'fieldfit[mesh]'") from None
    return fast_simplification.simplify


def _pass(simplify, v, f, goal: int, want: Topology, radius: float):
    """One pass towards ``goal`` faces: the first try that removes faces and keeps ``want``; None when none does."""
    start = len(f)
    for k in range(RETRIES + 1):
        target = start - (start - goal) // 2**k
        if target >= start:
            break
        for agg in AGGRESSION:
            nv, nf = simplify(v, f, target_count=target, agg=agg)
            nf = np.asarray(nf, dtype=np.int64).reshape(-1, 3)
            if len(nf) < start and want.keeps(topology(nv, nf, radius)):
                return np.asarray(nv, dtype=np.float64), nf
    return None


def _shell(simplify, v, f, target: int, radius: float) -> tuple[np.ndarray, np.ndarray, int]:
    """One connected shell decimated in checked passes towards ``target`` faces: (vertices, faces, passes)."""
    want, passes = topology(v, f, radius), 0
    while len(f) > target:
        step = _pass(simplify, v, f, max(target, len(f) // 2), want, radius)
        if step is None:
            break
        (v, f), passes = step, passes + 1
    return v, f, passes


def decimate(vertices, faces, target: int, colours=None) -> Decimated:
    """At most ``target`` faces with the topology of the input, or as close as the checked passes get (module doc).

    Args:
        vertices: [V,3] float; faces: [F,3] int: a closed, oriented mesh (as ``topology`` sees it).
        target: the most faces wanted (>= 4).
        colours: optional per-vertex values [V,C] (uint8 or float), carried by the nearest input vertex.

    Returns:
        ``Decimated``; the input unchanged (0 passes) when it has ``target`` faces or fewer.

    Raises:
        ValueError: a mesh that is not closed (nothing to keep), or a target under 4.
    """
    if target < MIN_FACES:
        raise ValueError(f"decimate: target must be >= {MIN_FACES} faces, got {target}")
    v0 = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f0 = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    radius = WELD_TOL * diagonal(v0)
    want = topology(v0, f0, radius)
    if not want.closed:
        raise ValueError("decimate: the mesh is not a closed, oriented 2-manifold once welded")
    unchanged = Decimated(v0, f0, None if colours is None else np.asarray(colours), 0)
    if len(f0) <= target:
        return unchanged
    simplify = _simplifier()
    count, labels = face_components(f0, len(v0))
    verts, tris, passes, offset = [], [], 0, 0
    for k in range(count):
        vk, fk = remove_unreferenced(v0, f0[labels == k])
        share = max(MIN_FACES, int(target * len(fk) / len(f0)))
        vk, fk, n = _shell(simplify, vk, fk, share, radius)
        verts.append(vk)
        tris.append(fk + offset)
        offset, passes = offset + len(vk), max(passes, n)
    v, f = np.concatenate(verts), np.concatenate(tris)
    if topology(v, f, radius) != want:
        unchanged.note = "not decimated: decimated shells came within the weld radius of each other"
        return unchanged
    note = "" if len(f) <= target else (
        f"reached {len(f)} faces, not {target}: further passes (down to 1/8 of a halving) changed the topology "
        f"(Euler {want.euler}, {want.shells} shell(s))")
    out = None if colours is None else np.asarray(colours)[cKDTree(v0).query(v)[1]]
    return Decimated(v, f, out, passes, note)


__all__ = ["AGGRESSION", "MIN_FACES", "Decimated", "Topology", "decimate", "topology"]
