"""fieldfit.cuda: GPU kernels (Triton) for the hot paths, each beside a pure-torch reference.

Public ops: ``rbf_layer``, ``dense_grid``, ``hash_grid``, ``triplane_grid``, ``composite_packed``,
``traverse_occupancy``, ``traverse_occupancy_next``, ``terminate_round``, ``raster_faces``, ``render_fused`` (a
whole frame) and ``ray_setup`` (its rays' spans and SH bases). CUDA tensors run the Triton kernels,
everything else the references in ``_torch_ref``; ``FIELDFIT_KERNELS=torch|triton`` forces one
(see ``_dispatch``). Importing this package imports no triton and compiles nothing; kernels are
imported and compiled on first use.
"""

if __name__ != "fieldfit.cuda":
    # With the repository root on sys.path (``python -c``/``-m`` run there) this folder shadows the
    # top-level ``cuda`` package of NVIDIA's cuda-python, which torch probes with
    # ``from cuda.bindings import ...`` inside ``import torch``. An ImportError keeps that probe
    # harmless; going on would re-enter the half-imported torch and crash.
    raise ImportError(f"{__file__} is the package fieldfit.cuda, not a top-level {__name__!r} package")

from ._dispatch import backend_for, backend_for_device
from ._torch_ref import COMPOSITE_MAX_OPTICAL_DEPTH, RBF_KERNELS
from ._torch_ref import ray_box_ref as ray_box
from .composite import composite_packed
from .fused import render_fused
from .grid import dense_grid, hash_grid
from .raster import raster_faces
from .ray_setup import ray_setup, sample_positions, sh_bases
from .rbf import rbf_layer
from .terminate import terminate_round
from .traverse import traversal_skips_empty, traverse_occupancy, traverse_occupancy_next
from .triplane import triplane_grid

__all__ = [
    "COMPOSITE_MAX_OPTICAL_DEPTH",
    "RBF_KERNELS",
    "backend_for",
    "backend_for_device",
    "composite_packed",
    "dense_grid",
    "hash_grid",
    "raster_faces",
    "ray_box",
    "ray_setup",
    "rbf_layer",
    "render_fused",
    "sample_positions",
    "sh_bases",
    "terminate_round",
    "traversal_skips_empty",
    "traverse_occupancy",
    "traverse_occupancy_next",
    "triplane_grid",
]
