"""Ray marching of a radiance field through an occupancy grid: the renderer every volumetric method shares.

Marching (TensoRF / instant-ngp style): each ray is clipped to the box of the grid's occupied cells and to
[near, far], and marched with a fixed step through the occupied cells only; samples behind an opaque
layer or nearly empty are dropped by the one early-termination rule (``render.termination``). Three
marchers give the same picture (float rounding aside):

- ``render``, packed: every occupied interval, a gradient-free density pass in rounds drops what the
  rule drops, then the field is evaluated once, with gradient, on the survivors and composited. Training
  uses it. On a CPU, where the grid is contracted, the same samples are found a window at a time
  (``render.windows``: a ray's intervals only while it is transparent).
- ``render_rounds``: each round every ray still transparent takes its next 8, 16, ... occupied intervals,
  which are coloured and composited at once (no packing; each sample's density evaluated once).
- ``render_fused``: one kernel per chunk of rays (``fieldfit.cuda.render_fused``) for fields that expose
  ``fused_parts`` (``fields.base.FusableField``: RBF fields on a hash grid or a tri-plane).

On a grid with a contraction (unbounded captures, ``render.contraction``) the packed marcher takes its candidates
from ``contracted_candidates`` (or a window at a time, ``render.windows``) and the rounds from
``windows.ContractedWindows`` instead of the box traversal; the fused
kernel does not draw them (rounds on a CPU, packed on a GPU instead).

The field is reached through ``fields.base.RadianceField`` only: ``density(x)`` and ``forward(x, d)``.
``march_mode`` picks the marcher of frames, ``render_rays`` draws many rays in chunks.
"""

import math
import os
from dataclasses import dataclass

import torch

from fieldfit.cuda import COMPOSITE_MAX_OPTICAL_DEPTH, traversal_skips_empty, traverse_occupancy_next
from fieldfit.cuda import render_fused as fused_kernel
from fieldfit.fields.base import RadianceField

from .contraction import contracted_candidates
from .contraction import spans as contracted_spans
from .estimators import OccupancyGrid
from .rays import ray_aabb
from .samples import RaySamples
from .termination import keep_batched, stop_depth, terminate
from .volrend import RenderOutput, composite
from .windows import ContractedWindows, march_windows

# How frames are marched (module doc).
MARCH_MODES = ("rounds", "packed", "fused")


@dataclass
class MarchConfig:
    """How rays are marched. Lengths are in marching-space units (t along unit directions)."""

    step: float  # marching step
    near: float = 0.0
    far: float = float("inf")
    early_stop: float = 1e-4  # drop samples where the transmittance before them is below this
    alpha_thre: float = 0.0  # drop samples whose alpha is below this (0: keep all)

    def __post_init__(self):
        # config.json holds an infinite far (NDC scenes) as 1e308 (JSON has no inf), which float32 cannot hold
        if self.far >= 1e300:
            self.far = math.inf


def spans(grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, cfg: MarchConfig,
          sh_degree: int | None = None):
    """(t_min [R], t_max [R], steps of the longest span, SH bases [R,B] or None) of rays clipped to the occupied
    box, [near, far] and the grid (``OccupancyGrid.clip``)."""
    return grid.clip(origins, dirs, cfg.near, cfg.far, cfg.step, sh_degree)


@torch.no_grad()
def candidates(grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, cfg: MarchConfig,
               stratified: bool = False) -> RaySamples:
    """Every occupied interval of rays [R,3] within the occupied box and [near, far] (before termination); on a
    grid with a contraction, every occupied interval between near and far (``render.contraction``)."""
    if grid.contraction is not None:
        return contracted_candidates(grid, grid.contraction, origins, dirs, cfg.near, cfg.far, cfg.step, stratified)
    t_min, t_max, max_steps, _ = spans(grid, origins, dirs, cfg)
    return grid.march_spans(origins, dirs, t_min, t_max, cfg.step, max_steps, stratified)


def windowed(grid: OccupancyGrid, device) -> bool:
    """Whether ``march`` finds intervals a window at a time (``render.windows``): on a CPU, where the grid is
    contracted. Measured on 2 cores (bench/README.md): the fox's training march 61 -> 40 ms, its steps 7% faster;
    fern's dense NDC grid gained nothing (its box traversal costs as much resumed as whole), lego's sparse one skips
    its empty blocks already (``traversal_skips_empty``)."""
    return torch.device(device).type == "cpu" and grid.contraction is not None


@torch.no_grad()
def march(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, cfg: MarchConfig,
          stratified: bool = False) -> RaySamples:
    """Packed samples of rays [R,3] (no gradient) through occupied cells, early-terminated: every candidate, then
    ``terminate``, or the same samples a window at a time where that is faster (``windowed``)."""
    if windowed(grid, origins.device) and (cfg.early_stop > 0 or cfg.alpha_thre > 0):
        return march_windows(field.density, grid, origins, dirs, cfg, stratified)
    cand = candidates(grid, origins, dirs, cfg, stratified)
    return terminate(field.density, origins, dirs, cand, cfg.early_stop, cfg.alpha_thre)


def render(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
           background: torch.Tensor, cfg: MarchConfig, stratified: bool = False) -> tuple[RenderOutput, RaySamples]:
    """Composite rays [R,3] on ``background`` [3] or [R,3], marched packed.

    Returns (RenderOutput with rgb [R,3], opacity [R], ...; the RaySamples). Differentiable in the field's
    parameters (the sample positions are not).
    """
    samples = march(field, grid, origins, dirs, cfg, stratified)
    out = field(samples.positions(origins, dirs), dirs[samples.ray_indices])
    return composite(out.density, out.rgb, samples, background=background), samples


@torch.no_grad()
def render_rounds(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor,
                  background: torch.Tensor, cfg: MarchConfig, first: int = 8, most: int = 64):
    """``render`` without gradient, marched in rounds: each round every ray still transparent takes its next k
    occupied intervals (``traverse_occupancy_next``; k = first, doubling up to most), the field colours them in
    one pass, and they are composited into the ray's running sums; rays past the rule's depth or out of
    intervals stop. A round syncs the device twice.

    Returns (rgb [R,3] with background, opacity [R], depth [R] (sum w t_mid), field evaluations).
    """
    n, dev = origins.shape[0], origins.device
    warp = grid.contraction
    if warp is None:
        t_min, t_max, max_steps, _ = spans(grid, origins, dirs, cfg)
        alive = (t_max > t_min).nonzero().squeeze(-1)
        k_next = torch.zeros(n, dtype=torch.int32, device=dev)
    else:  # contracted: the next occupied intervals of the schedule (``render.windows.ContractedWindows``)
        windows = ContractedWindows(grid, contracted_spans(warp, origins, dirs, cfg.near, cfg.far, cfg.step),
                                    origins, dirs, None)
        alive = torch.arange(n, device=dev)
        k_next = torch.zeros(n, dtype=torch.long, device=dev)
    rgb = torch.zeros(n, 3, device=dev)
    opacity, depth = torch.zeros(n, device=dev), torch.zeros(n, device=dev)
    tau_all, tau_kept = torch.zeros(n, device=dev), torch.zeros(n, device=dev)  # optical depth so far
    stop_tau = stop_depth(cfg.early_stop)
    k, evals = int(first), 0
    while alive.numel() > 0:
        o, d = origins[alive], dirs[alive]
        if warp is None:
            ts, te, counts, kn = traverse_occupancy_next(o, d, t_min[alive], t_max[alive], grid.binary, grid.aabb,
                                                         cfg.step, max_steps, k_next[alive], k)
            more = kn < max_steps
        else:
            ts, te, counts, kn = windows(alive, k_next[alive], k)
            more = (counts == k) & (kn < windows.end)
        valid = torch.arange(k, device=dev) < counts[:, None]
        rows, cols = valid.nonzero(as_tuple=True)
        evals += rows.numel()
        mid = 0.5 * (ts + te)
        out = field(o[rows] + d[rows] * mid[rows, cols, None], d[rows])
        tau = torch.zeros_like(ts)
        tau[rows, cols] = (out.density.to(ts.dtype) * (te - ts)[rows, cols]).clamp(max=COMPOSITE_MAX_OPTICAL_DEPTH)
        colour = torch.zeros(*ts.shape, 3, device=dev, dtype=out.rgb.dtype)
        colour[rows, cols] = out.rgb
        kept = keep_batched(tau, valid, tau_all[alive], cfg.early_stop, cfg.alpha_thre)
        tau_k = torch.where(kept, tau, 0.0)  # skipped samples do not dim those behind them (as render)
        trans = torch.exp(-(tau_kept[alive, None] + torch.cumsum(tau_k, 1) - tau_k))
        w = trans * torch.where(kept, 1.0 - torch.exp(-tau), 0.0)
        rgb[alive] += (w[..., None] * colour).sum(1)
        opacity[alive] += w.sum(1)
        depth[alive] += (w * mid).sum(1)
        tau_all[alive] += tau.sum(1)
        tau_kept[alive] += tau_k.sum(1)
        k_next[alive] = kn
        alive = alive[more & (tau_all[alive] < stop_tau)]
        k = min(2 * k, int(most))
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=dev)
    return rgb + (1.0 - opacity)[:, None] * bg, opacity, depth, evals


def fusable(field) -> bool:
    """Whether ``render_fused`` can draw ``field`` (``fields.base.FusableField`` with parts to give)."""
    parts = getattr(field, "fused_parts", None)
    return parts is not None and parts() is not None


@torch.no_grad()
def render_fused(field, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, background: torch.Tensor,
                 cfg: MarchConfig):
    """``render_rounds``' result from one fused kernel (``fieldfit.cuda.render_fused``): march, field and
    compositing per ray block, no packed samples, one device sync (the march's step count).
    Raises ValueError for fields it cannot draw (``fusable``)."""
    parts = field.fused_parts() if hasattr(field, "fused_parts") else None
    if parts is None:
        raise ValueError(f"render_fused draws RBF fields on a hash grid or a tri-plane, not "
                         f"{type(field).__name__} with this grid/decoder; march frames with "
                         f"FIELDFIT_MARCH=packed or rounds")
    t_min, t_max, max_steps, sh = spans(grid, origins, dirs, cfg, parts.sh_degree)
    bg = torch.as_tensor(background, dtype=origins.dtype, device=origins.device).expand(3).contiguous()
    rgb, opacity, depth, evals = fused_kernel(origins, dirs, sh, t_min, t_max, grid.binary, grid.aabb, cfg.step,
                                              max_steps, parts, bg, cfg.early_stop, cfg.alpha_thre)
    return rgb, opacity, depth, int(evals.sum())


def render_chunk(device) -> int:
    """Rays per render chunk: 2^13 on a CPU (measured best on 2 cores); 2^20 on a GPU, where a chunk costs a
    fixed few hundred kernel launches and host syncs (an 800x800 lego frame on an H200: 29 ms packed in
    chunks of 2^20 rays, 34 ms in chunks of 2^18)."""
    return 1 << 20 if torch.device(device).type == "cuda" else 1 << 13


def march_mode(device, field=None, grid=None) -> str:
    """How frames are marched: FIELDFIT_MARCH=rounds|packed|fused, else on a CPU packed where ``grid`` is sparse
    enough for the traversal to skip blocks of empty steps (``traversal_skips_empty``), rounds otherwise, and on a
    GPU fused where ``field`` is ``fusable`` and the Triton kernels draw (not FIELDFIT_KERNELS=torch), else packed.

    Measured (bench/README.md), 2-core CPU: trained lego runs at 200x200 packed 340 ms a frame against rounds 630
    (RBF decoder; MLP 336 / 405), at 100x100 74 / 83; fern (a dense NDC grid) rounds 3.0 s against packed 3.6. On
    an H200 at 800x800 fused 9.6 ms, packed 19.7, rounds 26.5. Training always marches packed (rounds: 9.0 against
    6.0 ms per march on the H200). On a CPU the fused path runs the torch reference, slower than the others.
    """
    mode = os.environ.get("FIELDFIT_MARCH", "").strip().lower()
    if mode and mode not in MARCH_MODES:
        raise ValueError(f"FIELDFIT_MARCH={mode!r} is not recognised; set it to 'rounds', 'packed' or 'fused' "
                         f"(or unset it)")
    if mode:
        return mode
    if torch.device(device).type == "cpu":
        sparse = grid is not None and grid.contraction is None and traversal_skips_empty(grid.binary)
        return "packed" if sparse else "rounds"
    if grid is not None and grid.contraction is not None:  # no fused kernel for contracted space
        return "packed"
    from fieldfit.cuda import backend_for_device  # noqa: PLC0415 - only the GPU branch reaches it

    kernel = backend_for_device(device) == "triton"  # not FIELDFIT_KERNELS=torch
    return "fused" if kernel and field is not None and fusable(field) else "packed"


@torch.no_grad()
def render_chunked(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, background,
                   cfg: MarchConfig, chunk: int, mode: str = "packed"):
    """(rgb [R,3] on the device, unclamped; opacity [R]; depth [R]; field samples) of rays [R,3] on the field's
    device, ``chunk`` rays at a time, marched by ``mode`` (see ``march_mode``)."""
    parts, n = [], 0
    if grid.contraction is not None and mode == "fused":  # the fused kernel does not step through contracted space
        mode = "rounds" if torch.device(origins.device).type == "cpu" else "packed"
    for s in range(0, origins.shape[0], chunk):
        o, d = origins[s:s + chunk], dirs[s:s + chunk]
        if mode == "rounds":
            rgb, opacity, depth, k = render_rounds(field, grid, o, d, background, cfg)
        elif mode == "fused":
            rgb, opacity, depth, k = render_fused(field, grid, o, d, background, cfg)
        else:
            res, samples = render(field, grid, o, d, background, cfg)
            rgb, opacity, depth, k = res.rgb, res.opacity, res.depth, samples.n_samples
        parts.append((rgb, opacity, depth))
        n += k
    if not parts:
        z = origins.new_zeros(0)
        return origins.new_zeros(0, 3), z, z.clone(), 0
    return (*(torch.cat(p) for p in zip(*parts, strict=True)), n)


@torch.no_grad()
def render_rays(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor, dirs: torch.Tensor, background,
                cfg: MarchConfig, device, chunk: int | None = None, mode: str | None = None):
    """Render many rays [R,3] (any device) in chunks of ``chunk`` rays on ``device`` (default
    ``render_chunk(device)``), marched by ``mode`` (default ``march_mode(device, field)``).

    The packed traversal costs every ray of a chunk as much as the chunk's longest span through the occupied
    box, so rays are rendered in order of that span (1.5-2x faster frames); the fused kernel keeps the image's
    order, whose neighbouring rays share grid cells (its lanes take the next ray of the queue when theirs is
    done).

    Returns (rgb [R,3] on the CPU, clamped to [0,1]; opacity [R] on the CPU; depth [R] on the CPU (sum w t);
    number of field samples).
    """
    mode = mode or march_mode(device, field, grid)
    chunk = chunk or render_chunk(device)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    if mode == "fused" or grid.contraction is not None:  # image order (contracted rays have no box span)
        rgb, opacity, depth, n = render_chunked(field, grid, origins.to(device), dirs.to(device), bg, cfg, chunk, mode)
        return rgb.clamp(0, 1).float().cpu(), opacity.float().cpu(), depth.float().cpu(), n
    t0, t1, _ = ray_aabb(origins, dirs, grid.occupied_box().to(origins.device))
    order = torch.argsort(t1 - t0).to(device)
    o, d = origins.to(device)[order], dirs.to(device)[order]
    rgb_s, opacity_s, depth_s, n = render_chunked(field, grid, o, d, bg, cfg, chunk, mode)
    rgb, opacity, depth = torch.empty_like(rgb_s), torch.empty_like(opacity_s), torch.empty_like(depth_s)
    rgb[order], opacity[order], depth[order] = rgb_s.clamp(0, 1), opacity_s, depth_s
    return rgb.float().cpu(), opacity.float().cpu(), depth.float().cpu(), n


__all__ = ["MARCH_MODES", "MarchConfig", "candidates", "fusable", "march", "march_mode", "render", "render_chunk",
           "render_chunked", "render_fused", "render_rays", "render_rounds", "spans", "windowed"]
