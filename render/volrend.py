"""Volume compositing of packed samples (functional; no state).

Notation: R rays, S packed samples (render/samples.py), C channels.
For sample i of a ray with density sigma_i on [t_start_i, t_end_i):

    delta_i = t_end_i - t_start_i          (units of |d|: metres for unit directions)
    alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = prod_{j<i} (1 - alpha_j) = exp(-sum_{j<i} sigma_j delta_j)   (before sample i)
    w_i     = T_i alpha_i
    rgb     = sum_i w_i c_i + (1 - opacity) * background,   opacity = sum_i w_i
    depth   = sum_i w_i t_mid_i            (NOT normalised by opacity; see RenderOutput)

The segmented scan is ``cuda._torch_ref.composite_packed_ref`` (a GPU kernel takes
its place behind ``_composite_packed`` with the same signature); accumulation over
rays stays in torch (index_add), so everything is differentiable.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from ..cuda import composite_packed
from .samples import RaySamples

# Single dispatch point for the segmented scan: (sigmas, t_starts, t_ends, ray_indices, n_rays)
# -> (weights, transmittance).
_composite_packed = composite_packed  # Triton on CUDA tensors, the torch reference on CPU


@dataclass
class RenderOutput:
    """Composited result of R rays.

    Attributes:
        rgb: [R,C] colour (or any values) including the background term.
        opacity: [R] accumulated weight sum_i w_i in [0,1].
        depth: [R] sum_i w_i t_mid_i, the expected t with empty space counting as t = 0
            (nerfacc's and NeRF's convention). ``normalized_depth()`` divides by opacity.
            t is distance along the ray (metric for unit directions), not camera z.
        weights: [S] w_i = T_i alpha_i.
        transmittance: [S] T_i, transmittance BEFORE sample i (1 at a ray's first sample).
    """

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    weights: torch.Tensor
    transmittance: torch.Tensor

    def normalized_depth(self, eps: float = 1e-10) -> torch.Tensor:
        """[R] depth / opacity: the expected t of the visible surface (0 where opacity is 0)."""
        return self.depth / self.opacity.clamp_min(eps)


def _check(name: str, x: torch.Tensor, n: int, dims: int) -> None:
    if x.dim() != dims or x.shape[0] != n:
        raise ValueError(f"{name}: expected {'[S]' if dims == 1 else '[S,C]'} with S={n}, got {tuple(x.shape)}")


def _accumulate(weights, values, samples: RaySamples, background) -> RenderOutput:
    n_rays, ri = samples.n_rays, samples.ray_indices
    c = values.shape[-1]
    dtype = torch.promote_types(weights.dtype, values.dtype)
    rgb = torch.zeros(n_rays, c, dtype=dtype, device=values.device).index_add(0, ri, weights[:, None] * values)
    opacity = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add(0, ri, weights)
    depth = torch.zeros(n_rays, dtype=weights.dtype,
                        device=weights.device).index_add(0, ri, weights * samples.t_mids.to(weights.dtype))
    if background is not None:
        bg = torch.as_tensor(background, dtype=dtype, device=values.device)
        if bg.shape not in ((c,), (n_rays, c)):
            raise ValueError(f"background: expected [C] or [R,C] with R={n_rays}, C={c}, got {tuple(bg.shape)}")
        rgb = rgb + (1.0 - opacity)[:, None] * bg
    return rgb, opacity, depth


def composite(
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    samples: RaySamples,
    background: Optional[torch.Tensor] = None,
    alpha_mul: Optional[torch.Tensor] = None,
    sigma_add: Optional[torch.Tensor] = None,
) -> RenderOutput:
    """Composite densities and colours of packed samples along their rays.

    Args:
        sigmas: [S] densities >= 0 (float32 or float64).
        rgbs: [S,C] colours or any per-sample values (C >= 1).
        samples: the RaySamples the values belong to.
        background: [C] or [R,C] colour behind the rays, or None (black / zero).
        alpha_mul: [S] or None. ProNeRF modulation: with it,
            alpha = relu(alpha_mul) * (1 - exp(-relu(sigma + sigma_add) delta)), clamped
            to at most 1 (ProNeRF's cumprod of 1 - alpha + 1e-10 turns negative above 1).
        sigma_add: [S] or None. ProNeRF density offset: sigma -> relu(sigma + sigma_add).

    Returns:
        RenderOutput; differentiable in sigmas, rgbs, background, the modulation terms and
        the interval bounds. Transmittance is computed in log space, the scan in float64.

    Examples:
        >>> s = RaySamples.from_batched(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]))
        >>> out = composite(torch.tensor([0.0, 1e4]), torch.ones(2, 3), s, background=torch.zeros(3))
        >>> round(out.opacity.item(), 6), round(out.depth.item(), 6)
        (1.0, 1.5)
    """
    n = samples.n_samples
    _check("sigmas", sigmas, n, 1)
    _check("rgbs", rgbs, n, 2)
    if sigma_add is not None:
        _check("sigma_add", sigma_add, n, 1)
        sigmas = torch.relu(sigmas + sigma_add)
    if alpha_mul is None:
        s = samples
        weights, trans = _composite_packed(sigmas, s.t_starts.to(sigmas.dtype), s.t_ends.to(sigmas.dtype),
                                           s.ray_indices, s.n_rays)
    else:
        _check("alpha_mul", alpha_mul, n, 1)
        alphas = (torch.relu(alpha_mul) * (1.0 - torch.exp(-torch.relu(sigmas) * samples.deltas))).clamp(max=1.0)
        weights, trans = _weights_from_alpha(alphas, samples)
    rgb, opacity, depth = _accumulate(weights, rgbs, samples, background)
    return RenderOutput(rgb, opacity, depth, weights, trans)


def _weights_from_alpha(alphas: torch.Tensor, samples: RaySamples):
    """w_i = T_i alpha_i with T_i = prod_{j<i}(1 - alpha_j), through the same scan.

    tau = -log(1 - alpha) on unit intervals makes the density scan produce exactly
    prod(1 - alpha). alpha is clamped to 1 - eps(dtype) inside the log only (a layer
    with alpha = 1 leaves T ~ eps, not 0, behind it); the weights use alpha itself.
    """
    eps = torch.finfo(alphas.dtype).eps
    tau = -torch.log1p(-alphas.clamp(0.0, 1.0 - eps))
    ones = torch.ones_like(tau)
    _, trans = _composite_packed(tau, torch.zeros_like(tau), ones, samples.ray_indices, samples.n_rays)
    return trans * alphas, trans


def composite_alpha(
    alphas: torch.Tensor,
    values: torch.Tensor,
    samples: RaySamples,
    background: Optional[torch.Tensor] = None,
) -> RenderOutput:
    """Front-to-back alpha compositing of packed, depth-sorted layers (DNMP's K-buffer).

    w_k = alpha_k prod_{j<k} (1 - alpha_j), value = sum_k w_k v_k + (1 - sum_k w_k) background.
    Empty layers are masked by leaving them out of ``samples`` (never duplicated);
    depth uses the samples' midpoints, so pass t_starts = t_ends = layer depth.

    Args:
        alphas: [S] in [0,1].
        values: [S,C].
        samples: RaySamples (only ray_indices, n_rays and t_mids are used).
        background: [C], [R,C] or None.

    Returns:
        RenderOutput, differentiable in alphas, values and background.
    """
    n = samples.n_samples
    _check("alphas", alphas, n, 1)
    _check("values", values, n, 2)
    weights, trans = _weights_from_alpha(alphas, samples)
    rgb, opacity, depth = _accumulate(weights, values, samples, background)
    return RenderOutput(rgb, opacity, depth, weights, trans)
