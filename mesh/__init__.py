"""fieldfit.mesh: load, sample, extract, measure and export triangle meshes.

Conventions: SDFs are negative inside; unit coordinates put a shape's bounding box at the
origin with diagonal 1.9 (inside [-1, 1]^3); faces are counter-clockwise seen from outside.
"""

from .export import export_mesh
from .extract import extract_sdf_mesh, marching_cubes_closed, remove_fragments
from .grid import evaluate_grid
from .inside import inside, signed_distance, winding_number
from .io import SUPPORTED_MESH_EXTS, LoadedMesh, from_unit, load_mesh, normalization, to_unit
from .metrics import (
    CONVENTIONS,
    chamfer_l2,
    component_count,
    euler_characteristic,
    is_watertight,
    normal_consistency,
    volume_iou,
)
from .sampling import sdf_training_set, surface_samples

__all__ = [
    "SUPPORTED_MESH_EXTS",
    "LoadedMesh",
    "load_mesh",
    "normalization",
    "to_unit",
    "from_unit",
    "winding_number",
    "inside",
    "signed_distance",
    "surface_samples",
    "sdf_training_set",
    "marching_cubes_closed",
    "remove_fragments",
    "extract_sdf_mesh",
    "evaluate_grid",
    "chamfer_l2",
    "normal_consistency",
    "volume_iou",
    "is_watertight",
    "euler_characteristic",
    "component_count",
    "CONVENTIONS",
    "export_mesh",
]
