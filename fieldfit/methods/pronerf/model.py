"""ProNeRF's forward pass (METHODS.md 3.2) on the shared renderer: the projection-aware sampler
(``render.samplers.projection``) places N samples per ray, the field is queried only there, and
``render.composite`` composites them with the sampler's density modulation.

Rays are those of the radiance task (``tasks.radiance``): unit directions in the marching space (world, or the
NDC cube for LLFF).
"""

import torch
from torch import nn

from fieldfit.render import composite
from fieldfit.render.samplers.projection import ProjectionSampler, intervals, jitter_sorted


class ProNeRFModel(nn.Module):
    """Field + projection-aware sampler (saved together); ``sampler.sources`` (not saved) supplies the colours."""

    def __init__(self, field: nn.Module, sampler: ProjectionSampler):
        super().__init__()
        self.field, self.sampler = field, sampler

    @property
    def n(self) -> int:
        """Samples per ray."""
        return self.sampler.n

    def composite_at(self, o, d, t, far, background, offsets=None, sigma_add=None, alpha_mul=None):
        """Query the field at o + t d (+ offsets), t [R,K] sorted, and composite; intervals [t_k, t_k+1)."""
        r, k = t.shape
        samples = intervals(t, far)
        x = o[:, None] + t[..., None] * d[:, None]
        if offsets is not None:
            x = x + offsets
        out = self.field(x.reshape(-1, 3), d[:, None].expand(r, k, 3).reshape(-1, 3))
        return composite(out.density, out.rgb, samples, background=background, sigma_add=_flat(sigma_add),
                         alpha_mul=_flat(alpha_mul))

    def render(self, o, d, background, views: torch.Tensor, jitter: float = 0.0):
        """The full pipeline on rays [R,3] with source views [R,V] (or [V] for all rays).

        jitter > 0 moves each final depth by |N(0,1)| jitter (at most 0.99) of the gap to a random neighbour
        (ProNeRF's stage 2). Returns (RenderOutput, the sampler's proposal dict).
        """
        prop = self.sampler.sample(o, d, views)
        t = prop["t"]
        if jitter > 0:
            t = jitter_sorted(t, prop["near"], prop["far"], jitter)
        out = self.composite_at(o, d, t, prop["far"], background, prop["offsets"], prop["sigma_add"],
                                prop["alpha_mul"])
        return out, prop

    def render_uniform(self, o, d, background, n: int):
        """The field alone, marched with n uniform samples between near and far (the baseline)."""
        near, far = self.sampler.bounds(o, d)
        s = (torch.arange(n, device=o.device, dtype=o.dtype) + 0.5) / n
        return self.composite_at(o, d, near[:, None] + s * (far - near)[:, None], far, background)


def _flat(a):
    return None if a is None else a.reshape(-1)


__all__ = ["ProNeRFModel"]
