"""Scene contraction for captures whose content reaches the horizon (real photos: rooms, streets, tables).

Conventions
-----------
* World point x -> y = (x - centre) / radius; with n = |y|_inf (the cube norm, as MERF uses), the contracted
  point is y where n <= 1 and y * (2 - 1/n) / n beyond: the inner cube (world box centre +- radius) is kept as
  it is and all of space outside it fills the shell 1 < n < 2, so everything lies in the cube [-2, 2]^3 that
  the occupancy grid and the field's encoding cover. ``inverse`` maps the open cube back.
* Rays stay straight in the world: the marcher steps along world t and looks the occupancy up at the
  contracted sample (``contracted_candidates``); densities are per world unit, so opacities are those of
  the world interval. Steps are uniform (``step``) until the ray leaves the inner cube at t = T, then grow as
  dt = step * (t / T)^2, so that a step spans about the same length in the contracted shell as one inner
  step; in closed form t_k = T / (1 - k * step / T), which reaches infinity after T / step steps (the far
  bound stops the ray before). T is the later of the inner cube's exit and |origin - centre| + radius (past
  it every point of the ray is outside the cube), so rays from cameras outside the cube step finely near
  them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .rays import ray_aabb
from .samples import RaySamples

BOX = ((-2.0, -2.0, -2.0), (2.0, 2.0, 2.0))  # the contracted space
MAX_CANDIDATES = 1 << 24  # candidate intervals per call: rays are split beyond this


@dataclass(frozen=True)
class Contraction:
    """The contraction around ``centre`` [3] with inner half-side ``radius`` (module doc)."""

    centre: tuple
    radius: float

    def __post_init__(self):
        c = tuple(float(v) for v in np.asarray(self.centre, np.float64).reshape(3))
        if not all(math.isfinite(v) for v in c) or not (math.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"Contraction: centre must be finite and radius > 0, got {c}, {self.radius}")
        object.__setattr__(self, "centre", c)
        object.__setattr__(self, "radius", float(self.radius))

    @classmethod
    def from_config(cls, d) -> Contraction | None:
        """From ``to_config``'s dict (None stays None)."""
        return None if not d else cls(tuple(d["centre"]), float(d["radius"]))

    def to_config(self) -> dict:
        return {"centre": list(self.centre), "radius": self.radius}

    def normalised(self, samples: RaySamples) -> RaySamples:
        """``samples`` with t mapped to s = t / (t + radius) in [0, 1) (for losses on the weights' spread, which
        world t would let the shell's huge intervals dominate; mip-NeRF 360 uses such an s)."""
        def g(t):
            return t / (t + self.radius)

        return RaySamples(g(samples.t_starts), g(samples.t_ends), samples.ray_indices, samples.n_rays)

    def inner_box(self) -> np.ndarray:
        """[2,3] the world box that is not contracted."""
        c = np.asarray(self.centre)
        return np.stack([c - self.radius, c + self.radius])

    def _c(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.centre, dtype=x.dtype, device=x.device)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> contracted points in [-2, 2]^3 (differentiable)."""
        y = (x - self._c(x)) / self.radius
        n = y.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.where(n <= 1.0, y, y * ((2.0 - 1.0 / n) / n))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Contracted points [..., 3] with |z|_inf < 2 -> world points."""
        m = z.abs().amax(dim=-1, keepdim=True)
        far = m > 1.0
        n = 1.0 / (2.0 - m.clamp(1.0, 2.0 - 1e-6))
        y = torch.where(far, z * (n / m.clamp_min(1e-12)), z)
        return y * self.radius + self._c(z)


def schedule(k: torch.Tensor, t0: torch.Tensor, t_in: torch.Tensor, k_in: torch.Tensor, step: float) -> torch.Tensor:
    """t of (fractional) step index k [R,K] for rays starting at t0 [R] that leave the inner cube at t_in [R]
    after k_in [R] uniform steps (module doc); inf where the schedule has reached infinity."""
    t0, t_in, k_in = t0[:, None], t_in[:, None], k_in[:, None]
    inner = t0 + k * ((t_in - t0) / k_in.clamp_min(1.0))
    j = (k - k_in).clamp_min(0.0)
    denom = 1.0 - j * step / t_in
    outer = torch.where(denom > 0, t_in / denom.clamp_min(1e-12), torch.full_like(denom, math.inf))
    return torch.where(k <= k_in, inner, outer)


@dataclass
class Spans:
    """Where rays [R] march (module doc): from ``t0``, uniform steps until ``t_in`` (``k_in`` of them), then
    growing; ``counts`` intervals in all before ``far``."""

    t0: torch.Tensor
    t_in: torch.Tensor
    k_in: torch.Tensor
    counts: torch.Tensor
    far: float
    step: float

    def times(self, k: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """t [A,K] at step indices k [A,K] of the rays ``rows`` [A] (all when None), within [t0, far]."""
        t0, t_in, k_in = (x if rows is None else x[rows] for x in (self.t0, self.t_in, self.k_in))
        t = schedule(k, t0, t_in, k_in, self.step).clamp_max(self.far)
        return torch.maximum(t, t0[:, None])


def spans(contraction: Contraction, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float,
          step: float) -> Spans:
    """The marching schedule of rays [R,3] (unit dirs) between near and far (module doc)."""
    n_rays, dev, dt = origins.shape[0], origins.device, origins.dtype
    box = torch.as_tensor(contraction.inner_box(), dtype=dt, device=dev)
    _, t_b, hit = ray_aabb(origins, dirs, box)
    far = float(far) if math.isfinite(far) else 1e6 * contraction.radius
    t0 = torch.full((n_rays,), float(near), dtype=dt, device=dev)
    centre = torch.as_tensor(contraction.centre, dtype=dt, device=dev)
    reach = (origins - centre).norm(dim=-1) + contraction.radius  # beyond it every point is outside the cube
    t_in = torch.maximum(torch.where(hit, t_b, t0), reach).clamp(max=far)
    k_in = torch.ceil((t_in - t0).clamp_min(0.0) / step)
    k_far = (t_in / step) * (1.0 - t_in / far)
    counts = (k_in + torch.ceil(k_far.clamp_min(0.0))).long() + 1
    return Spans(t0, t_in, k_in, counts, far, float(step))


@torch.no_grad()
def contracted_candidates(grid, contraction: Contraction, origins: torch.Tensor, dirs: torch.Tensor, near: float,
                          far: float, step: float, stratified: bool = False) -> RaySamples:
    """Every interval of rays [R,3] (unit dirs) between near and far whose contracted midpoint lies in an
    occupied cell of ``grid`` (a grid over ``BOX``), stepped as the module doc says."""
    n_rays, dev, dt = origins.shape[0], origins.device, origins.dtype
    if n_rays == 0:
        return RaySamples.empty(0, dev, dt)
    sp = spans(contraction, origins, dirs, near, far, step)
    parts, r0 = [], 0
    while r0 < n_rays:
        k_max = int(sp.counts[r0:].max())
        r1 = min(n_rays, r0 + max(1, MAX_CANDIDATES // max(k_max, 1)))
        parts.append(_chunk(grid, sp, origins, dirs, torch.arange(r0, r1, device=dev), stratified))
        r0 = r1
    t_s = torch.cat([p[0] for p in parts])
    t_e = torch.cat([p[1] for p in parts])
    ri = torch.cat([p[2] for p in parts])
    return RaySamples(t_s, t_e, ri, n_rays)


def _chunk(grid, sp: Spans, origins, dirs, rows, stratified):
    dev, dt = origins.device, origins.dtype
    k_max = int(sp.counts[rows].max())
    k = torch.arange(k_max + 1, device=dev, dtype=dt)[None, :].expand(rows.numel(), -1)
    if stratified:
        k = k + torch.rand(rows.numel(), 1, device=dev, dtype=dt)
    t = sp.times(k, rows)
    t_s, t_e = t[:, :-1], t[:, 1:]
    valid = t_e > t_s
    mid = 0.5 * (t_s + t_e)
    pos = origins[rows, None, :] + dirs[rows, None, :] * mid[..., None]
    occ = torch.zeros_like(valid)
    flat = valid.nonzero(as_tuple=True)
    occ[flat] = grid.occupied(pos[flat])
    s = RaySamples.from_batched(t_s, t_e, occ)
    return s.t_starts, s.t_ends, rows[s.ray_indices]


__all__ = ["BOX", "Contraction", "Spans", "contracted_candidates", "schedule", "spans"]
