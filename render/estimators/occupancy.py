"""Occupancy-grid estimator: skip empty space, march the rest with a fixed step.

State (buffers, saved in state_dict): ``aabb`` [2,3], ``density`` [G^3] (EMA of the
maximum density seen in each cell), ``binary`` [G,G,G] bool (cells marched). Cell
(i, j, k) spans aabb[0] + (i, j, k) * cell_size, axis 0 along x; ``density`` is
``binary``'s flat (row-major) order. Every cell is on until the first ``update``.
With a ``contraction`` (``render.contraction``) the grid covers the contracted cube: ``occupied``
takes world points and contracts them, ``update`` hands ``density_fn`` world points.

This is the TensoRF/instant-ngp/nerfacc scheme: ``update`` evaluates the field at a
jittered point per cell, keeps max(decay * old, new), thresholds, and (as TensoRF's
alpha mask does with a 3x3x3 max-pool) dilates the result so that a cell whose single
probe point fell outside a thin occupied cap is still marched.

In a distributed fit (torch.distributed initialised, several ranks) rank 0 refreshes the grid and broadcasts
it, so every rank marches the same cells.
"""

import math

import torch
import torch.distributed as tdist
from torch import nn

from ...cuda import ray_setup, traverse_occupancy
from ..rays import ray_aabb
from ..samples import RaySamples
from ..termination import terminate


def _ranks() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def _eval_chunked(fn, x: torch.Tensor, chunk: int) -> torch.Tensor:
    out = [fn(x[i : i + chunk]).reshape(-1) for i in range(0, x.shape[0], chunk)]
    return torch.cat(out) if out else x.new_zeros(0)


class OccupancyGrid(nn.Module):
    """Binary occupancy grid over an axis-aligned box.

    Args:
        aabb: [2,3] (min corner, max corner) or 6 numbers.
        resolution: G cells per axis.
        warmup_steps: ``update`` evaluates every cell while step < warmup_steps.
        dilation: cells of max-pool dilation after thresholding (0 turns it off).

    Examples:
        >>> grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=32)
        >>> grid.update(lambda x: (x.norm(dim=-1) < 0.5).float() * 10, step=0)
        >>> s = grid.sample(torch.tensor([[0.0, 0, 3]]), torch.tensor([[0.0, 0, -1]]), 0.0, 10.0, 0.01)
        >>> 2.4 < float(s.t_starts.min()) < 2.6
        True
    """

    def __init__(self, aabb, resolution: int = 128, warmup_steps: int = 256, dilation: int = 1,
                 contraction=None):
        super().__init__()
        self.contraction = contraction
        if contraction is not None:
            from ..contraction import BOX

            aabb = BOX
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb: max corner must exceed min corner, got {aabb.tolist()}")
        g = int(resolution)
        self.warmup_steps = int(warmup_steps)
        self.dilation = int(dilation)
        self.register_buffer("aabb", aabb)
        self.register_buffer("density", torch.zeros(g**3))
        self.register_buffer("binary", torch.ones(g, g, g, dtype=torch.bool))

    @property
    def resolution(self) -> int:
        return self.binary.shape[0]

    @property
    def cell_size(self) -> torch.Tensor:
        """[3] edge lengths of one cell."""
        return (self.aabb[1] - self.aabb[0]) / self.resolution

    def cell_indices(self, flat: torch.Tensor) -> torch.Tensor:
        """[M,3] int64 (i, j, k) of flat cell indices [M]."""
        g = self.resolution
        return torch.stack([flat // (g * g), (flat // g) % g, flat % g], dim=-1)

    def occupied_fraction(self) -> float:
        return float(self.binary.float().mean())

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        """[N] bool: whether the cell holding each point [N,3] is occupied (points outside the box take the
        nearest cell)."""
        g = torch.tensor(self.binary.shape, device=points.device)
        if self.contraction is not None:
            points = self.contraction.apply(points)
        cell = ((points.to(self.aabb.dtype) - self.aabb[0]) / self.cell_size).floor().long()
        cell = torch.minimum(cell.clamp_min(0), g - 1)
        return self.binary[cell[:, 0], cell[:, 1], cell[:, 2]]

    def occupied_box(self) -> torch.Tensor:
        """[2,3] box of the occupied cells (the grid's box when none is occupied). Cached until ``binary``
        changes (an update, a loaded state dict: any in-place write bumps the tensor's version)."""
        key = (self.binary.data_ptr(), self.binary._version, self.aabb._version, self.binary.device)
        cached = getattr(self, "_box_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        occ = self.binary
        axes = [occ.any(dim=tuple(a for a in range(3) if a != i)).nonzero().squeeze(-1) for i in range(3)]
        if any(a.numel() == 0 for a in axes):
            box = self.aabb.clone()
        else:
            lo = torch.stack([a.min() for a in axes]).to(self.aabb.dtype)
            hi = torch.stack([a.max() for a in axes]).to(self.aabb.dtype) + 1
            box = torch.stack([self.aabb[0] + lo * self.cell_size, self.aabb[0] + hi * self.cell_size])
        self._box_cache = (key, box)
        return box

    @torch.no_grad()
    def update(
        self,
        density_fn,
        step: int,
        decay: float = 0.95,
        threshold: float = 0.01,
        n_cells=None,
        chunk: int = 1 << 18,
    ) -> None:
        """Refresh the grid from ``density_fn``.

        Args:
            density_fn: points [M,3] -> [M] (or [M,1]). Its values are compared with
                ``threshold``; to threshold the opacity of one marching step, as nerfacc
                does, pass ``lambda x: field.density(x) * step_size``.
            step: training step; all cells are evaluated while step < warmup_steps or
                when n_cells is None.
            decay: EMA factor: density <- max(decay * density, new) in evaluated cells (0: the new values).
            threshold: a cell is occupied when density > min(threshold, mean density)
                (nerfacc's rule: a grid that is still dark everywhere keeps its brightest cells).
            n_cells: after warm-up, evaluate this many cells: half drawn uniformly, half
                among the occupied ones.
            chunk: points per density_fn call.
        """
        if _ranks() > 1 and tdist.get_rank() > 0:  # a distributed fit: rank 0 refreshes, the others receive
            self._receive()
            return
        g3 = self.density.numel()
        device = self.density.device
        if n_cells is None or step < self.warmup_steps:
            idx = torch.arange(g3, device=device)
        else:
            n_cells = int(n_cells)
            uniform = torch.randint(0, g3, (n_cells - n_cells // 2,), device=device)
            occ = self.binary.reshape(-1).nonzero().squeeze(-1)
            pick = occ[torch.randint(0, max(occ.numel(), 1), (n_cells // 2,), device=device)] if occ.numel() else occ
            idx = torch.unique(torch.cat([uniform, pick]))
        ijk = self.cell_indices(idx).to(self.aabb.dtype)
        points = self.aabb[0] + (ijk + torch.rand_like(ijk)) * self.cell_size
        if self.contraction is not None:
            points = self.contraction.inverse(points)
        new = _eval_chunked(density_fn, points, chunk).to(self.density.dtype)
        self.density[idx] = torch.maximum(self.density[idx] * decay, new)
        thre = min(float(threshold), float(self.density.mean()))
        binary = (self.density > thre).reshape(self.binary.shape)
        if self.dilation > 0:
            k = 2 * self.dilation + 1
            pooled = nn.functional.max_pool3d(binary[None, None].float(), k, stride=1, padding=self.dilation)
            binary = pooled[0, 0] > 0
        self.binary.copy_(binary)
        if _ranks() > 1:
            self._receive()

    def _receive(self) -> None:
        """Rank 0's density and cells on every rank (a distributed fit: the grid is the same everywhere)."""
        tdist.broadcast(self.density, 0)
        cells = self.binary.to(torch.uint8)
        tdist.broadcast(cells, 0)
        self.binary.copy_(cells.bool())

    def span(self, origins: torch.Tensor, dirs: torch.Tensor, near, far) -> tuple[torch.Tensor, torch.Tensor]:
        """(t_min, t_max) [R] of rays clipped to the box and to [near, far] (t_max = t_min: nothing to march)."""
        t_near, t_far, hit = ray_aabb(origins, dirs, self.aabb.to(origins.dtype))
        t_min = torch.maximum(t_near, torch.as_tensor(near, dtype=origins.dtype, device=origins.device))
        t_max = torch.minimum(t_far, torch.as_tensor(far, dtype=origins.dtype, device=origins.device))
        return t_min, torch.where(hit & (t_max > t_min), t_max, t_min)

    def clip(self, origins: torch.Tensor, dirs: torch.Tensor, near, far, step_size: float,
             sh_degree: int | None = None):
        """(t_min [R], t_max [R], steps of the longest span, SH bases [R,B] or None) of rays clipped to the occupied
        box, [near, far] and the grid (``ray_setup``: one kernel on a GPU; syncs the device once, for the steps)."""
        box, aabb = (b.to(origins.dtype) for b in (self.occupied_box(), self.aabb))
        t_min, t_max, sh = ray_setup(origins, dirs, box, aabb, near, far, sh_degree)
        return t_min, t_max, self.max_steps(t_min, t_max, step_size) if origins.shape[0] else 0, sh

    @staticmethod
    def max_steps(t_min: torch.Tensor, t_max: torch.Tensor, step_size: float) -> int:
        """Steps that cover the longest span (syncs the device once)."""
        longest = float((t_max - t_min).max()) if t_min.numel() else 0.0
        return int(math.ceil(longest / step_size)) + 1

    @torch.no_grad()
    def march_spans(self, origins: torch.Tensor, dirs: torch.Tensor, t_min: torch.Tensor, t_max: torch.Tensor,
                    step_size: float, max_steps: int, stratified: bool = False) -> RaySamples:
        """``sample`` without termination for rays already clipped to [t_min, t_max] [R] (``span``; ``max_steps``
        from ``max_steps``): their occupied intervals, the first shifted by a random fraction of a step if
        ``stratified``."""
        n_rays = origins.shape[0]
        jitter = torch.rand(n_rays, device=origins.device, dtype=origins.dtype) if stratified else None
        t_s, t_e, ri = traverse_occupancy(origins, dirs, t_min, t_max, self.binary, self.aabb, step_size, max_steps,
                                          jitter)
        return RaySamples(t_s, t_e, ri, n_rays)

    @torch.no_grad()
    def sample(
        self,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        near,
        far,
        step_size: float,
        density_fn=None,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        stratified: bool = False,
        chunk: int = 1 << 20,
    ) -> RaySamples:
        """March rays through occupied cells.

        Each ray is clipped to the box and to [near, far] and marched from its entry with
        intervals of ``step_size`` (the first shifted by a random fraction of a step per
        ray if ``stratified``); intervals whose midpoint lies in an unoccupied cell are
        dropped (``cuda._torch_ref.traverse_occupancy_ref``).

        With ``density_fn`` (points [M,3] -> densities [M], called without grad, ``chunk``
        points at a time) samples are also dropped by the early-termination rule
        (``render.termination``): where the transmittance before them is < early_stop_eps or
        where alpha = 1 - exp(-sigma delta) < alpha_thre (only when alpha_thre > 0).

        Args:
            origins, dirs: [R,3]; t is in units of |d| (metres for unit dirs).
            near, far: floats or [R] tensors.
            step_size: marching step (same units as t).

        Returns:
            RaySamples (no gradient; evaluate the field on ``positions`` afterwards).
        """
        n_rays = origins.shape[0]
        if n_rays == 0:
            return RaySamples.empty(0, origins.device, origins.dtype)
        t_min, t_max = self.span(origins, dirs, near, far)
        samples = self.march_spans(origins, dirs, t_min, t_max, step_size, self.max_steps(t_min, t_max, step_size),
                                   stratified)
        if density_fn is None:
            return samples
        return terminate(lambda x: _eval_chunked(density_fn, x, chunk), origins, dirs, samples, early_stop_eps,
                         alpha_thre)
