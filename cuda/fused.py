"""A whole frame in one kernel: occupancy march, RBF radiance field and compositing, per ray (no gradient).

The frame path of the other ops launches a few hundred kernels and syncs the device between
marching rounds; at 800x800 on an H200 that host work, not arithmetic, set the frame time. Here one
program marches a block of rays together: each ray skips to its next occupied interval, the block
evaluates the field there (hash grid or tri-plane -> RBF layer -> linear head -> density and SH
colour, all in registers) and composites; a lane whose ray is opaque or out of intervals writes it and
takes the next ray of a queue the programs share. Nothing per sample is written to memory.

Semantics (``_fused_ref.render_fused_ref``): the intervals of ``traverse_occupancy`` (no jitter);
sample i of a ray has tau_i = min(sigma_i (t_end - t_start), 64) at its midpoint; it counts when
exp(-sum_{j<i} tau_j) >= early_stop and (alpha_thre > 0 only) 1 - exp(-tau_i) >= alpha_thre; counted
samples composite front to back, skipped ones do not dim those behind; a ray stops once its
optical depth reaches -log(early_stop). This is ``RadianceModel.render``'s image.

The field (``RBFField``) is ``RadianceRBF``'s: an optional linear tail on the grid features adds to the head's
outputs, and the density activation is softplus or exp (its argument capped at ``exp_cap``, ``EXP_CAP`` = 12).
"""

from dataclasses import dataclass

import torch

from . import _checks
from ._dispatch import backend_for
from ._fused_ref import render_fused_ref
from ._torch_ref import RBF_KERNELS
from .traverse import _box, _check_march
from .triplane import check_grids

_OP = "render_fused"
DENSITY_ACTIVATIONS = ("softplus", "exp")
EXP_CAP = 12.0  # density "exp": exp(min(z, EXP_CAP)), RadianceRBF's cap


@dataclass
class HashEncoding:
    """instant-ngp hash grid (``hash_grid``): tables [L,T,F], L resolutions."""

    table: torch.Tensor
    resolutions: tuple


@dataclass
class TriPlaneEncoding:
    """Tri-plane (``triplane_grid``): 3L planes [F,R,R] (xy, xz, yz per level) and dense volumes [F,R,R,R]."""

    planes: list
    volumes: list


@dataclass
class RBFField:
    """The tensors of an RBF radiance field (``RadianceRBF`` with a hash grid or a tri-plane and an RBF decoder).

    density = density_scale * act(raw_0 + density_shift), rgb_c = sigmoid(sum_b sh_b raw_{1 + c B + b}),
    raw = head_w phi + head_b (+ tail_w feats), phi = rbf(feats), or rbf(proj_w feats) with a projection,
    feats = encoding((x - lo) * 2 / (hi - lo) - 1); act: softplus, or exp(min(z, exp_cap)) for
    ``density_activation`` "exp".
    """

    aabb: torch.Tensor  # [2,3] box the grid covers
    encoding: HashEncoding | TriPlaneEncoding
    centers: torch.Tensor  # [K, D], D the encoding's features ([K, J] with proj_w)
    log_prec: torch.Tensor  # [K, D] ([K, J] with proj_w)
    kernel: str
    head_w: torch.Tensor  # [1 + 3B, K]
    head_b: torch.Tensor  # [1 + 3B]
    density_scale: float
    density_shift: float
    tail_w: torch.Tensor | None = None  # [1 + 3B, D]: the decoder's linear tail on the features (None: no tail)
    density_activation: str = "softplus"  # DENSITY_ACTIVATIONS
    exp_cap: float = EXP_CAP
    proj_w: torch.Tensor | None = None  # [J, D]: the decoder's projection of the features (None: none)

    @property
    def sh_degree(self) -> int:
        """Degree of the SH colour the head holds (B = (degree + 1)^2 bases per channel)."""
        return int(round(((self.head_w.shape[0] - 1) // 3) ** 0.5)) - 1


def render_fused(origins: torch.Tensor, dirs: torch.Tensor, sh: torch.Tensor, t_min: torch.Tensor,
                 t_max: torch.Tensor, binary: torch.Tensor, aabb: torch.Tensor, step_size: float, max_steps: int,
                 field: RBFField, background: torch.Tensor, early_stop: float, alpha_thre: float):
    """Render rays through an occupancy grid and an RBF radiance field (module docstring for the rule).

    Args:
        origins, dirs: [R,3] float32; t_min, t_max: [R] (the span to march); binary, aabb, step_size,
            max_steps: the occupancy grid and march of ``traverse_occupancy``.
        sh: [R,B] the SH bases of each ray's direction (the colour reads them).
        field: the field's tensors, float32, on the rays' device.
        background: [3] colour behind the rays.
        early_stop: transmittance below which samples stop counting (0: never); alpha_thre: >= 0.

    Returns:
        (rgb [R,3] with the background, opacity [R], depth [R] = sum of w t_mid, evaluated [R] int32:
        field evaluations per ray). No gradient; the CUDA path does not sync the device.
    """
    step, m = _check_march(_OP, origins, dirs, t_min, t_max, binary, aabb, step_size, max_steps, "max_steps")
    _check(origins, sh, field, background)
    if not (0.0 <= float(early_stop) < 1.0 and float(alpha_thre) >= 0.0):
        raise ValueError(f"{_OP}: need 0 <= early_stop < 1 and alpha_thre >= 0, got {early_stop}, {alpha_thre}")
    if backend_for(origins) == "torch":
        return render_fused_ref(origins, dirs, sh, t_min, t_max, binary, aabb, step, m, field, background,
                                float(early_stop), float(alpha_thre))
    from . import _fused_triton  # noqa: PLC0415 - triton is imported lazily

    box, step_t = _box(aabb, step, origins)
    with torch.no_grad():
        return _fused_triton.render(origins.contiguous(), dirs.contiguous(), sh.contiguous(), t_min.contiguous(),
                                    t_max.contiguous(), binary.contiguous().view(torch.uint8), box, step_t, m, field,
                                    background.contiguous(), float(early_stop), float(alpha_thre))


def _check(origins, sh, field: RBFField, background) -> None:
    r = origins.shape[0]
    like = ("origins", origins)
    _checks.tensor(_OP, "origins", origins, ("R", 3), dtype=torch.float32)
    _checks.tensor(_OP, "sh", sh, (r, "B"), like=like)
    _checks.tensor(_OP, "background", background, (3,), like=like)
    _checks.tensor(_OP, "field.aabb", field.aabb, (2, 3), like=like)
    enc = field.encoding
    if isinstance(enc, HashEncoding):
        _checks.tensor(_OP, "field.encoding.table", enc.table, ("L", "T", "F"), like=like)
        levels, _, feats = enc.table.shape
        if len(enc.resolutions) != levels:
            raise ValueError(f"{_OP}: field.encoding.resolutions has {len(enc.resolutions)} entries for {levels} "
                             f"table levels")
        width = levels * feats
    elif isinstance(enc, TriPlaneEncoding):
        feats = check_grids(_OP, enc.planes, enc.volumes, like, "field.encoding.")
        width = feats * (len(enc.planes) + len(enc.volumes))
    else:
        raise TypeError(f"{_OP}: field.encoding must be a HashEncoding or a TriPlaneEncoding, got {type(enc).__name__}")
    units_in = width  # what the units measure their distances in: the features, or their projection
    if field.proj_w is not None:
        _checks.tensor(_OP, "field.proj_w", field.proj_w, ("J", width), like=like)
        units_in = field.proj_w.shape[0]
    _checks.tensor(_OP, "field.centers", field.centers, ("K", units_in), like=like)
    k = field.centers.shape[0]
    _checks.tensor(_OP, "field.log_prec", field.log_prec, (k, units_in), like=like)
    _checks.tensor(_OP, "field.head_w", field.head_w, (1 + 3 * sh.shape[1], k), like=like)
    _checks.tensor(_OP, "field.head_b", field.head_b, (1 + 3 * sh.shape[1],), like=like)
    if field.tail_w is not None:
        _checks.tensor(_OP, "field.tail_w", field.tail_w, (1 + 3 * sh.shape[1], width), like=like)
    if field.density_activation not in DENSITY_ACTIVATIONS:
        raise ValueError(f"{_OP}: field.density_activation must be one of {DENSITY_ACTIVATIONS}, "
                         f"got {field.density_activation!r}")
    if field.kernel not in RBF_KERNELS:
        raise ValueError(f"{_OP}: field.kernel must be one of {RBF_KERNELS}, got {field.kernel!r}")
