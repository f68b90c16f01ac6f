"""The per-ray setup of a fused frame in one op: the span to march and the SH bases of each ray (no gradient).

``RadianceModel`` clips each ray to the occupied box and to [near, far], then to the grid's box, and
``render_fused`` reads each ray's SH bases; in torch that is about ninety elementwise kernels per frame
(bench/launches.py), here one. The reference (``_torch_ref.ray_setup_ref``) is the code the renderer and
the fields run (``render.ray_aabb``, ``fields.components.sh.sh_bases``); the kernel rounds as it does, op for op.
``sh_bases`` alone (the same kernel code, per direction) is what the fields call for the SH bases of every
sample in training steps and frames; ``sample_positions`` gives those samples' points (``RaySamples.positions``).
"""

import torch

from . import _checks
from ._dispatch import backend_for
from ._torch_ref import ray_setup_ref, sample_positions_ref, sh_bases_ref

_OP = "ray_setup"


def ray_setup(origins: torch.Tensor, dirs: torch.Tensor, box: torch.Tensor, aabb: torch.Tensor, near: float,
              far: float, sh_degree: int | None = None):
    """(t_min [R], t_max [R], sh [R, (sh_degree + 1)^2] or None) of rays.

    t_min, t_max: the ray clipped to ``box`` (the occupied cells' box) and to [near, far], then to ``aabb``
    (the grid's box); t_max = t_min where nothing is left to march. sh: the real SH bases of the
    directions (``sh_bases``), when ``sh_degree`` (0..3) is given.

    Args:
        origins, dirs: [R,3] float32 or float64 (dirs of any nonzero length; t in units of |d|).
        box, aabb: [2,3] (min row, max row), same dtype and device.
        near, far: floats (far may be inf).
    """
    _checks.tensor(_OP, "origins", origins, ("R", 3))
    like = ("origins", origins)
    _checks.tensor(_OP, "dirs", dirs, (origins.shape[0], 3), like=like)
    _checks.tensor(_OP, "box", box, (2, 3), like=like)
    _checks.tensor(_OP, "aabb", aabb, (2, 3), like=like)
    if sh_degree is not None and sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"{_OP}: sh_degree must be 0..3 or None, got {sh_degree!r}")
    near, far = float(near), float(far)
    if not near <= far:
        raise ValueError(f"{_OP}: need near <= far, got near={near}, far={far}")
    if backend_for(origins) == "torch" or origins.dtype != torch.float32:  # the kernel is float32 only
        return ray_setup_ref(origins, dirs, box, aabb, near, far, sh_degree)
    from . import _ray_setup_triton  # noqa: PLC0415 - triton is imported lazily

    with torch.no_grad():
        return _ray_setup_triton.ray_setup(origins.contiguous(), dirs.contiguous(), box.contiguous(),
                                           aabb.contiguous(), near, far, sh_degree)


def sh_bases(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """[N, (degree + 1)^2] real SH bases of directions ``dirs`` [N,3] (``sh_bases_ref``, to the bit in float32).

    One kernel where the reference is about forty-five elementwise ops; the fields call it per sample
    in every training step and frame. Directions that need a gradient, float64 and CPU tensors take the
    reference (the kernel has no backward).

    Args:
        dirs: [N,3] float32 or float64 unit directions (not normalised here).
        degree: 0..3.
    """
    _checks.tensor("sh_bases", "dirs", dirs, ("N", 3))
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_bases: degree must be 0..3, got {degree!r}")
    if (backend_for(dirs) == "torch" or dirs.dtype != torch.float32
            or (dirs.requires_grad and torch.is_grad_enabled())):
        return sh_bases_ref(dirs, degree)
    from . import _ray_setup_triton  # noqa: PLC0415 - triton is imported lazily

    return _ray_setup_triton.sh_bases(dirs.detach().contiguous(), degree)


def sample_positions(origins: torch.Tensor, dirs: torch.Tensor, ray_indices: torch.Tensor, t_starts: torch.Tensor,
                     t_ends: torch.Tensor) -> torch.Tensor:
    """[S,3] midpoints o + t_mid d of packed intervals (``sample_positions_ref``, to the bit in float32).

    One kernel where the reference is six ops (two gathers, the midpoint, a product and a sum); every
    density round of a training step and frame calls it. Inputs that need a gradient, float64 and CPU
    tensors take the reference (the kernel has no backward).

    Args:
        origins, dirs: [R,3] float32 or float64.
        ray_indices: [S] int64 in [0, R) (not checked: that would cost a device sync).
        t_starts, t_ends: [S] float, on the device of origins.
    """
    op = "sample_positions"
    _checks.tensor(op, "origins", origins, ("R", 3))
    like = ("origins", origins)
    _checks.tensor(op, "dirs", dirs, (origins.shape[0], 3), like=like)
    _checks.tensor(op, "ray_indices", ray_indices, ("S",), dtype=torch.int64, like=like)
    _checks.tensor(op, "t_starts", t_starts, (ray_indices.shape[0],))
    _checks.tensor(op, "t_ends", t_ends, (ray_indices.shape[0],))
    floats = (origins, dirs, t_starts, t_ends)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in floats)
    float32 = all(t.dtype == torch.float32 and t.device == origins.device for t in floats)
    if backend_for(origins) == "torch" or not float32 or grad:  # mixed dtypes: the reference's type promotion
        return sample_positions_ref(origins, dirs, ray_indices, t_starts, t_ends)
    from . import _ray_setup_triton  # noqa: PLC0415 - triton is imported lazily

    return _ray_setup_triton.sample_positions(origins.contiguous(), dirs.contiguous(), ray_indices.contiguous(),
                                              t_starts.contiguous(), t_ends.contiguous())
