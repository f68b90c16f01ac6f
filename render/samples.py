"""The one container every sampler returns: packed ray samples.

Notation: R rays, S samples in all. Samples are *packed*: those of ray 0 first,
then those of ray 1, ..., each ray's in increasing t. ``ray_indices`` is therefore
sorted non-decreasing; a ray may have no samples at all. An interval is
[t_start, t_end) along o + t d, with t in units of |d| (metres for the unit
directions of ``render.rays``).

Vocabulary (same names in every module): ``origins``, ``dirs``, ``t_starts``,
``t_ends``, ``ray_indices``, ``packed_info``.
"""

from dataclasses import dataclass

import torch


@dataclass
class RaySamples:
    """Packed samples of ``n_rays`` rays.

    Attributes:
        t_starts: [S] float, interval starts.
        t_ends: [S] float, interval ends (>= t_starts).
        ray_indices: [S] int64, the ray of each sample, sorted non-decreasing.
        n_rays: number of rays R (rays without samples included).

    Examples:
        >>> s = RaySamples.from_batched(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]))
        >>> s.packed_info().tolist()
        [[0, 2]]
    """

    t_starts: torch.Tensor
    t_ends: torch.Tensor
    ray_indices: torch.Tensor
    n_rays: int

    def __post_init__(self):
        # Cheap checks only (no device synchronisation); see ``validate`` for the rest.
        n = self.t_starts.shape
        if self.t_starts.dim() != 1 or self.t_ends.shape != n or self.ray_indices.shape != n:
            raise ValueError(
                "RaySamples: t_starts, t_ends and ray_indices must be 1-D of equal length, got "
                f"{tuple(self.t_starts.shape)}, {tuple(self.t_ends.shape)}, {tuple(self.ray_indices.shape)}"
            )
        if self.ray_indices.dtype != torch.long:
            raise ValueError(f"RaySamples: ray_indices must be int64, got {self.ray_indices.dtype}")
        self.n_rays = int(self.n_rays)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_batched(cls, t_starts: torch.Tensor, t_ends: torch.Tensor, mask=None) -> "RaySamples":
        """Pack a batched layout [R,N] (N samples per ray), keeping ``mask`` [R,N] bool if given."""
        n_rays, n = t_starts.shape
        ray_indices = torch.arange(n_rays, device=t_starts.device).repeat_interleave(n)
        t_s, t_e = t_starts.reshape(-1), t_ends.reshape(-1)
        if mask is not None:
            keep = mask.reshape(-1)
            t_s, t_e, ray_indices = t_s[keep], t_e[keep], ray_indices[keep]
        return cls(t_s, t_e, ray_indices, n_rays)

    @classmethod
    def empty(cls, n_rays: int, device=None, dtype=torch.float32) -> "RaySamples":
        """No samples for ``n_rays`` rays."""
        z = torch.zeros(0, device=device, dtype=dtype)
        return cls(z, z.clone(), torch.zeros(0, dtype=torch.long, device=device), n_rays)

    # -- derived quantities -----------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return self.t_starts.shape[0]

    @property
    def deltas(self) -> torch.Tensor:
        """[S] interval lengths t_end - t_start (differentiable)."""
        return self.t_ends - self.t_starts

    @property
    def t_mids(self) -> torch.Tensor:
        """[S] interval midpoints."""
        return 0.5 * (self.t_starts + self.t_ends)

    def counts(self) -> torch.Tensor:
        """[R] int64 number of samples of each ray."""
        return torch.bincount(self.ray_indices, minlength=self.n_rays)

    def packed_info(self) -> torch.Tensor:
        """[R,2] int64 (start, count): ray r owns samples start .. start+count-1."""
        counts = self.counts()
        starts = torch.cumsum(counts, 0) - counts
        return torch.stack([starts, counts], dim=-1)

    def positions(self, origins: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """[S,3] midpoints o + t_mid d of the intervals; origins, dirs [R,3]. Differentiable."""
        from fieldfit.cuda import sample_positions  # noqa: PLC0415 - one kernel on a GPU (no gradient needed)

        return sample_positions(origins, dirs, self.ray_indices, self.t_starts, self.t_ends)

    def to(self, device) -> "RaySamples":
        return RaySamples(self.t_starts.to(device), self.t_ends.to(device), self.ray_indices.to(device), self.n_rays)

    def validate(self) -> None:
        """Full check of the packed invariants (synchronises the device; for tests and debugging)."""
        if self.n_samples == 0:
            return
        ri = self.ray_indices
        if bool((ri[1:] < ri[:-1]).any()):
            raise ValueError("RaySamples: ray_indices must be sorted non-decreasing")
        if int(ri.min()) < 0 or int(ri.max()) >= self.n_rays:
            raise ValueError(f"RaySamples: ray_indices must lie in [0, {self.n_rays})")
        if bool((self.t_ends < self.t_starts).any()):
            raise ValueError("RaySamples: t_ends must be >= t_starts")
