"""Pure-torch reference of ``render_fused``: march, RBF radiance field and compositing of a frame.

Built from the other references, packed: every occupied interval of every ray
(``traverse_occupancy_ref``) is evaluated, then the early-termination rule of the renderer picks
the samples that count (see ``render_fused``). Memory grows with the candidate intervals, which is
fine for tests and debugging; the kernel keeps nothing per sample.
"""

import math

import torch
import torch.nn.functional as F

from ._torch_ref import COMPOSITE_MAX_OPTICAL_DEPTH, hash_grid_ref, rbf_layer_ref, traverse_occupancy_ref, triplane_ref


def field_ref(x: torch.Tensor, sh: torch.Tensor, field) -> tuple[torch.Tensor, torch.Tensor]:
    """(density [S], rgb [S,3]) of the RBF field (its projection, tail and density activation too) at points x [S,3]
    seen with SH bases sh [S,B]."""
    lo, hi = field.aabb[0], field.aabb[1]
    xn = (x - lo) * (2.0 / (hi - lo)) - 1.0
    enc = field.encoding
    if hasattr(enc, "table"):
        feats = hash_grid_ref(xn, enc.table, enc.resolutions)
    else:
        feats = triplane_ref(xn, enc.planes, enc.volumes)
    units_in = feats if field.proj_w is None else F.linear(feats, field.proj_w)  # the decoder's projection
    phi = rbf_layer_ref(units_in, field.centers, field.log_prec, field.kernel)
    raw = F.linear(phi, field.head_w, field.head_b)
    if field.tail_w is not None:
        raw = raw + F.linear(feats, field.tail_w)
    z = raw[:, 0] + field.density_shift
    if field.density_activation == "exp":
        density = field.density_scale * torch.exp(z.clamp(max=field.exp_cap))
    else:
        density = field.density_scale * F.softplus(z)
    coeffs = raw[:, 1:].reshape(raw.shape[0], 3, sh.shape[1])
    return density, torch.sigmoid(torch.einsum("ncb,nb->nc", coeffs, sh))


def _exclusive(x: torch.Tensor, ri: torch.Tensor, n_rays: int) -> torch.Tensor:
    """[S] per-ray exclusive prefix sums of x (samples packed ray after ray)."""
    inc = torch.cumsum(x, 0)
    counts = torch.bincount(ri, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    exc = inc - x
    return exc - exc[starts[ri]]


@torch.no_grad()
def render_fused_ref(origins, dirs, sh, t_min, t_max, binary, aabb, step_size: float, max_steps: int, field,
                     background, early_stop: float, alpha_thre: float):
    """See ``fieldfit.cuda.render_fused``. Returns (rgb [R,3], opacity [R], depth [R], evaluated [R] int32)."""
    n = origins.shape[0]
    ts, te, ri = traverse_occupancy_ref(origins, dirs, t_min, t_max, binary, aabb, step_size, max_steps)
    mid = 0.5 * (ts + te)
    density, colour = field_ref(origins[ri] + dirs[ri] * mid[:, None], sh[ri], field)
    tau = (density * (te - ts)).clamp(max=COMPOSITE_MAX_OPTICAL_DEPTH)
    before = _exclusive(tau.double(), ri, n)  # optical depth of every earlier sample of the ray
    stop_tau = -math.log(early_stop) if early_stop > 0 else math.inf
    evaluated = before < stop_tau  # the kernel stops a ray once its optical depth reaches stop_tau
    kept = torch.exp(-before) >= early_stop
    if alpha_thre > 0:
        kept &= (1.0 - torch.exp(-tau)) >= alpha_thre
    tau_k = torch.where(kept, tau, 0.0)
    trans = torch.exp(-_exclusive(tau_k.double(), ri, n)).to(tau.dtype)
    w = torch.where(kept, trans * (1.0 - torch.exp(-tau)), 0.0)
    rgb = torch.zeros(n, 3, dtype=origins.dtype, device=origins.device).index_add_(0, ri, w[:, None] * colour)
    opacity = torch.zeros(n, dtype=origins.dtype, device=origins.device).index_add_(0, ri, w)
    depth = torch.zeros(n, dtype=origins.dtype, device=origins.device).index_add_(0, ri, w * mid)
    counts = torch.zeros(n, dtype=torch.int32, device=origins.device).index_add_(0, ri, evaluated.int())
    rgb = rgb + (1.0 - opacity)[:, None] * background.to(rgb.dtype)
    return rgb, opacity, depth, counts
