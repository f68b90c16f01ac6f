"""Load triangle meshes from disk, clean them, and say in plain words what is wrong with them.

Every problem a user can cause with a file (missing, wrong extension, corrupt, empty, NaN
coordinates) raises ``fieldfit.errors.InputError`` naming the file; nothing else escapes
``load_mesh`` as a traceback for those cases.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from fieldfit.errors import InputError

from . import topology
from .clean import clean

SUPPORTED_MESH_EXTS = (".obj", ".ply", ".stl", ".off", ".glb")

# Bounding-box diagonal of a mesh in unit coordinates: leaves a margin inside [-1, 1]^3.
UNIT_DIAGONAL = 1.9
# Total face area, relative to the squared bounding-box size, below which a mesh has no surface to fit.
MIN_RELATIVE_AREA = 1e-12
# Coordinates a mesh may have: fits write meshes in float32 (PLY, STL, GLB), which overflow near 3.4e38 and keep
# no shape below about 1e-35, so a larger or a smaller mesh would be exported as inf or as one point.
MAX_COORDINATE = 1e30
MIN_SIZE = 1e-30


@dataclass
class LoadedMesh:
    """A cleaned triangle mesh and what the loader found out about it.

    Attributes:
        vertices: [V,3] float64 positions, in the file's units.
        faces: [F,3] int64 vertex indices, oriented so that the signed volume is >= 0.
        path: the file it came from.
        diagnostics: plain-language findings, e.g. "open: 12 boundary edges",
            "150 non-manifold edges", "3 components", "4 degenerate/duplicate faces dropped",
            "inconsistent winding: ...", "watertight, genus 0".
    """

    vertices: np.ndarray
    faces: np.ndarray
    path: str
    diagnostics: list[str] = field(default_factory=list)

    @property
    def watertight(self) -> bool:
        """Every edge shared by exactly two faces with opposite directions."""
        return topology.is_watertight(self.vertices, self.faces)

    @property
    def components(self) -> int:
        """Connected components (faces sharing a vertex are connected)."""
        return topology.component_count(self.vertices, self.faces)

    @property
    def euler(self) -> int:
        """Euler characteristic V - E + F (2 - 2 genus for one closed component)."""
        return topology.euler_characteristic(self.vertices, self.faces)


def _scene_arrays(scene: trimesh.Scene) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every triangle geometry of a scene, with its node transform applied."""
    verts, faces, offset = [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry.get(name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = np.asarray(geom.vertices, dtype=np.float64)
        v = v @ transform[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64)
        if np.linalg.det(transform[:3, :3]) < 0:  # a mirroring transform flips orientation
            f = f[:, ::-1]
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(verts), np.concatenate(faces)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw (vertices, faces) from trimesh, or InputError when the file cannot be parsed."""
    ext = path.suffix.lower()
    try:
        obj = trimesh.load(str(path), file_type=ext[1:], process=False)
    except Exception as exc:  # trimesh raises many types for corrupt files
        raise InputError(path, f"could not read {ext} mesh ({type(exc).__name__}: {exc})",
                         f"check that the file is a valid {ext} mesh") from exc
    if isinstance(obj, trimesh.Scene):
        return _scene_arrays(obj)
    if isinstance(obj, trimesh.Trimesh):
        return np.asarray(obj.vertices, dtype=np.float64), np.asarray(obj.faces, dtype=np.int64)
    return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)  # point cloud, path, ...


def load_mesh(path) -> LoadedMesh:
    """Read a triangle mesh and clean it.

    Reads with trimesh (``process=False``, so nothing is changed behind our back), concatenates
    .glb scenes with their transforms applied, then merges bit-identical vertices, drops faces
    that repeat a vertex and duplicate faces, drops unreferenced vertices, and flips all faces
    when the mesh is inside-out (negative signed volume).

    Args:
        path: a .obj .ply .stl .off or .glb file.

    Returns:
        LoadedMesh with vertices [V,3] float64, faces [F,3] int64 and diagnostics.

    Raises:
        InputError: missing file, unsupported extension, unreadable file, no faces,
            face indices out of range, NaN/Inf coordinates, coordinates beyond MAX_COORDINATE or a
            box under MIN_SIZE, no face of non-zero area. The message names the file.

    Examples:
        >>> import tempfile, trimesh
        >>> path = tempfile.mkdtemp() + "/box.obj"
        >>> _ = trimesh.creation.box().export(path)
        >>> m = load_mesh(path)
        >>> m.watertight, m.euler, len(m.faces)
        (True, 2, 12)
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "mesh file not found", "check the path")
    if not p.is_file():
        raise InputError(p, "is not a file", "pass a mesh file, not a folder")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_MESH_EXTS:
        raise InputError(p, f"unsupported mesh extension '{p.suffix}'",
                         f"use one of {' '.join(SUPPORTED_MESH_EXTS)}")
    if p.stat().st_size == 0:
        raise InputError(p, "file is empty", "export the mesh again")
    v, f = _read_arrays(p)
    if len(f) == 0:
        raise InputError(p, "mesh has no faces (empty, or only points/lines)",
                         "export triangles or polygons, not a point cloud")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(p, "faces refer to vertices that do not exist", "repair or re-export the mesh")
    bad = ~np.isfinite(v[np.unique(f)]).all(axis=1)
    if bad.any():
        raise InputError(p, f"{int(bad.sum())} vertices have NaN or infinite coordinates",
                         "fix or remove them in a mesh editor")
    _check_range(v[np.unique(f)], p)

    v, f, counts = clean(v, f)
    diags = []
    if counts["merged_vertices"]:
        diags.append(f"{counts['merged_vertices']} duplicate vertices merged")
    n_dropped = counts["degenerate_faces"] + counts["duplicate_faces"]
    if n_dropped:
        diags.append(f"{n_dropped} degenerate/duplicate faces dropped")
    if len(f) == 0:
        raise InputError(p, "mesh has no faces left after dropping degenerate ones",
                         "the mesh is empty or collapsed to points")
    size = float(np.max(v.max(axis=0) - v.min(axis=0)))
    if topology.face_areas(v, f).sum() <= MIN_RELATIVE_AREA * size * size:
        raise InputError(p, "every face has zero area (the vertices are collinear or coincide)",
                         "export the surface of a solid, not a line or a point")
    if topology.signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
        diags.append("faces were inside-out (negative volume): flipped")
    diags += topology.describe(v, f)
    return LoadedMesh(vertices=v, faces=np.ascontiguousarray(f), path=str(p), diagnostics=diags)


def _check_range(v: np.ndarray, path: Path) -> None:
    """InputError unless the used vertices ``v`` [V,3] lie within +-MAX_COORDINATE and their box measures at
    least MIN_SIZE (see there: beyond, a fit's exported mesh would be inf or a single point)."""
    top = float(np.abs(v).max())
    if top > MAX_COORDINATE:
        raise InputError(path, f"coordinates reach {top:.3g}, beyond the {MAX_COORDINATE:g} that exported meshes "
                         "(float32) hold", "scale the mesh down in a mesh editor")
    size = float(np.max(v.max(axis=0) - v.min(axis=0)))
    if size == 0:
        raise InputError(path, "every vertex is at the same point", "export the surface of a solid, not a point")
    if size < MIN_SIZE:
        raise InputError(path, f"the mesh measures {size:.3g}, below the {MIN_SIZE:g} that exported meshes "
                         "(float32) resolve", "scale the mesh up in a mesh editor")


def normalization(vertices) -> tuple[np.ndarray, float]:
    """Center and scale that map a shape into unit coordinates.

    ``(v - center) * scale`` has its bounding-box centre at 0 and bounding-box diagonal 1.9,
    so the shape fits in [-1, 1]^3 with a small margin.

    Args:
        vertices: [V,3] positions.

    Returns:
        (center [3] float64, scale float).

    Raises:
        ValueError: empty input, non-finite values or a zero-size bounding box.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if len(v) == 0 or not np.isfinite(v).all():
        raise ValueError("normalization: vertices are empty or not finite")
    lo, hi = v.min(axis=0), v.max(axis=0)
    with np.errstate(over="ignore"):
        extent = hi - lo
    top = float(extent.max())
    if not np.isfinite(top):
        raise ValueError("normalization: the bounding box is too large for float64")
    if top <= 0:
        raise ValueError("normalization: all vertices coincide (zero-size bounding box)")
    diag = top * float(np.linalg.norm(extent / top))  # no overflow or underflow near 1e300 or 1e-300
    scale = UNIT_DIAGONAL / diag
    if not np.isfinite(scale):
        raise ValueError(f"normalization: the bounding box ({diag:g}) is too small to scale to unit size")
    return 0.5 * lo + 0.5 * hi, scale


def _like(center, v):
    """center as an array/tensor that broadcasts against v (numpy or torch)."""
    if hasattr(v, "device") and hasattr(v, "dtype") and not isinstance(v, np.ndarray):
        import torch

        return torch.as_tensor(np.asarray(center), dtype=v.dtype, device=v.device)
    return np.asarray(center)


def to_unit(v, center, scale):
    """File units -> unit coordinates: ``(v - center) * scale``. v: [...,3] numpy or torch."""
    return (v - _like(center, v)) * scale


def from_unit(v, center, scale):
    """Unit coordinates -> file units: ``v / scale + center``. v: [...,3] numpy or torch."""
    return v / scale + _like(center, v)
