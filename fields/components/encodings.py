"""Multi-resolution feature grids: dense (2D/3D), tri-plane, hash; tinycudann when present.

Every encoding maps x [N,d] in [-1,1]^d to features [N, out_dim]. The per-level lookups go
through ``fieldfit.cuda`` (the seam where fused GPU kernels plug in).

Kind ``tcnn`` is tinycudann's hash grid where it can run (installed, CUDA device); elsewhere
``make_encoding`` builds fieldfit's ``HashGrid`` (the same instant-ngp encoding) without a word:
the caller asks ``tcnn_unavailable`` first and tells the user (``fieldfit.methods.rbf.config.field_for_device``).
"""

from dataclasses import dataclass

import torch
from torch import nn

from fieldfit import cuda as kernels
from fieldfit.cuda.triplane import _layout, pack

from .smooth import add_plane_tv_grad, plane_tv


@dataclass
class GridConfig:
    kind: str = "dense"  # dense | triplane | hash | tcnn | densehash
    levels: int = 8
    base_res: int = 16
    max_res: int = 512
    features: int = 2  # per level
    table_log2: int = 19  # hash tables only
    init_scale: float = 1e-4  # features start ~U(-s, s)
    volume_max_res: int = 0  # triplane only: add dense 3D volumes for levels up to this resolution
    axis_scale: tuple | None = None  # dense only: per-axis resolution factors (x, y[, z]), e.g. an image's aspect
    fine_levels: int = 0  # densehash only: hashed levels above the dense ones (max_res, fine_max_res]
    fine_max_res: int = 0  # densehash only: finest hashed resolution

    def fine_resolutions(self) -> list[int]:
        """densehash: the hashed levels, geometric from just above max_res up to fine_max_res."""
        if self.fine_levels <= 0:
            return []
        if self.fine_max_res <= self.max_res:
            raise ValueError(f"fine_max_res ({self.fine_max_res}) must exceed max_res ({self.max_res})")
        g = (self.fine_max_res / self.max_res) ** (1.0 / self.fine_levels)
        return [int(round(self.max_res * g**i)) for i in range(1, self.fine_levels + 1)]

    def resolutions(self) -> list[int]:
        if self.levels == 1:
            return [self.max_res]
        g = (self.max_res / self.base_res) ** (1.0 / (self.levels - 1))
        return [int(round(self.base_res * g**i)) for i in range(self.levels)]


def dense_shapes(dim: int, cfg: GridConfig) -> list[tuple]:
    """Per-level vertex counts of a dense grid in grid_sample order ([(D,) H, W]; x[:,0] along W)."""
    scale = cfg.axis_scale or (1.0,) * dim
    return [tuple(max(2, round(r * scale[a])) for a in reversed(range(dim))) for r in cfg.resolutions()]


def _param(shape, scale):
    return nn.Parameter(torch.empty(shape).uniform_(-scale, scale))


def _kernels_read(t: torch.Tensor) -> bool:
    """Whether the grids on ``t``'s device go through the Triton kernels (which read them channels-last best)."""
    try:
        return kernels.backend_for(t) != "torch"
    except (RuntimeError, ValueError):  # a forced backend that cannot run here: the lookup itself will say so
        return False


def _relayout(g: nn.Parameter, channels_last: bool) -> None:
    """Lay grid ``g`` [F, *R] out channels-last (features fastest) or channels-first (contiguous), in place."""
    if channels_last and _layout(g) != "cl":
        g.data = g.data.movedim(0, -1).contiguous().movedim(-1, 0)
    elif not channels_last and not g.is_contiguous():
        g.data = g.data.contiguous()


class _GridLayout(nn.Module):
    """Keeps the grids in the layout their device reads fastest: channels-last where the Triton kernels read
    them (a corner's features in one memory sector instead of one sector per feature), channels-first for
    the torch reference (grid_sample's own layout). Set when the module moves (``.to``), so an optimizer
    made after the move sees the final layout, and on a forward that finds the other one. Values never
    depend on the layout (the lookups read any), only speed does."""

    channels_last = False  # the layout lay_out last set (grids are made channels-first)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        grids = self.layout_grids()
        if grids:
            self.lay_out(_kernels_read(grids[0]))
        return self

    def layout_grids(self) -> list:
        raise NotImplementedError

    def lay_out(self, channels_last: bool) -> None:
        for g in self.layout_grids():
            _relayout(g, channels_last)
        self.channels_last = channels_last

    def _lay_out_for(self, x: torch.Tensor) -> bool:
        """Whether the kernels read the grids at ``x``'s device; the grids laid out for it."""
        kernels_read = _kernels_read(x)
        if kernels_read != self.channels_last:
            self.lay_out(kernels_read)
        return kernels_read


class DenseGrid(_GridLayout):
    """Dense multi-resolution grids; level l has shape [F, R_l, R_l(, R_l)] (channels-last in memory where the
    Triton kernels read them)."""

    def __init__(self, dim: int, cfg: GridConfig):
        super().__init__()
        self.dim, self.res = dim, cfg.resolutions()
        self.grids = nn.ParameterList([_param((cfg.features, *shp), cfg.init_scale) for shp in dense_shapes(dim, cfg)])
        self.out_dim = cfg.features * len(self.res)

    def layout_grids(self) -> list:
        return list(self.grids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._lay_out_for(x)
        return torch.cat([kernels.dense_grid(x, g) for g in self.grids], dim=-1)


class TriPlane(_GridLayout):
    """Three axis-aligned multi-resolution planes (xy, xz, yz), features concatenated,
    plus optional coarse dense volumes (for the levels whose resolution <= volume_max_res).
    Where the Triton kernels read them, the grids sit channels-last in one buffer (``pack``)."""

    PLANES = ((0, 1), (0, 2), (1, 2))

    def __init__(self, cfg: GridConfig):
        super().__init__()
        self.res = cfg.resolutions()
        self.planes = nn.ParameterList(
            [_param((cfg.features, r, r), cfg.init_scale) for r in self.res for _ in self.PLANES]
        )
        vres = [r for r in self.res if r <= cfg.volume_max_res]
        self.volumes = nn.ParameterList([_param((cfg.features, r, r, r), cfg.init_scale) for r in vres])
        self.out_dim = cfg.features * (3 * len(self.res) + len(vres))

    def layout_grids(self) -> list:
        return [*self.planes, *self.volumes]

    def lay_out(self, channels_last: bool) -> None:
        if channels_last:  # one buffer: the fused lookup reads it in place
            pack(self.layout_grids(), channels_last=True)
            self.channels_last = True
        else:
            super().lay_out(False)

    def tv(self) -> torch.Tensor:
        """Total variation of the planes: the mean squared difference of neighbouring cells along each plane
        axis, summed over the planes (K-Planes' and TensoRF's smoothness prior for few-view scenes)."""
        return sum(plane_tv(g) for g in self.planes)

    def add_tv_grad(self, weight: float) -> None:
        """Add the gradient of ``weight * self.tv()`` to the planes' gradients (after a backward)."""
        for g in self.planes:
            add_plane_tv_grad(g, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._lay_out_for(x):  # one fused lookup of every grid
            grids = self.layout_grids()
            return kernels.triplane_grid(x, grids[:len(self.planes)], grids[len(self.planes):])
        feats = []
        for i, g in enumerate(self.planes):
            a, b = self.PLANES[i % 3]
            feats.append(kernels.dense_grid(x[:, [a, b]], g))
        feats += [kernels.dense_grid(x, g) for g in self.volumes]
        return torch.cat(feats, dim=-1)


class HashGrid(nn.Module):
    """instant-ngp multi-resolution hash encoding (plain torch / fused kernel on CUDA)."""

    def __init__(self, dim: int, cfg: GridConfig):
        super().__init__()
        self.dim, self.res = dim, cfg.resolutions()
        size = 2**cfg.table_log2
        self.table = _param((len(self.res), size, cfg.features), cfg.init_scale)
        self.out_dim = cfg.features * len(self.res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.hash_grid(x, self.table, self.res)


class DenseHashGrid(nn.Module):
    """Dense levels (base_res..max_res) plus hashed finer levels (``fine_resolutions``): fine
    detail near a surface without the cost of a dense fine volume. Features: dense, then hashed."""

    def __init__(self, dim: int, cfg: GridConfig):
        super().__init__()
        fine = cfg.fine_resolutions()
        if not fine:
            raise ValueError("densehash needs fine_levels >= 1 and fine_max_res > max_res")
        self.dense = DenseGrid(dim, cfg)
        self.fine_res = fine
        self.table = _param((len(fine), 2**cfg.table_log2, cfg.features), cfg.init_scale)
        self.res = self.dense.res + fine
        self.out_dim = self.dense.out_dim + cfg.features * len(fine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.dense(x), kernels.hash_grid(x, self.table, self.fine_res)], dim=-1)


class TcnnHashGrid(nn.Module):
    """tinycudann's HashGrid (CUDA only); same input/output contract as HashGrid."""

    def __init__(self, dim: int, cfg: GridConfig):
        super().__init__()
        import tinycudann as tcnn  # noqa: PLC0415 - optional accelerator

        growth = (cfg.max_res / cfg.base_res) ** (1.0 / max(cfg.levels - 1, 1))
        self.enc = tcnn.Encoding(dim, {
            "otype": "HashGrid", "n_levels": cfg.levels, "n_features_per_level": cfg.features,
            "log2_hashmap_size": cfg.table_log2, "base_resolution": cfg.base_res,
            "per_level_scale": growth,
        })
        self.out_dim = cfg.features * cfg.levels

    def forward(self, x):
        return self.enc(((x + 1) * 0.5).clamp(0, 1)).float()


def tcnn_unavailable(device) -> str | None:
    """Why tinycudann's hash grid cannot run on ``device`` (None when it can): not installed, failing to load, or
    a device that is not a GPU."""
    try:
        import tinycudann  # noqa: F401, PLC0415 - optional accelerator, imported lazily
    except ImportError as e:
        if getattr(e, "name", None) == "tinycudann":
            return "tinycudann not installed"
        return f"tinycudann cannot be imported ({str(e).strip().splitlines()[0] if str(e).strip() else e!r})"
    except (OSError, RuntimeError) as e:  # tcnn raises EnvironmentError at import without a usable GPU
        return f"tinycudann failed to load ({str(e).strip().splitlines()[0] if str(e).strip() else e!r})"
    if torch.device(device).type != "cuda":
        return "tinycudann needs a CUDA device"
    return None


def make_encoding(dim: int, cfg: GridConfig, device="cpu") -> nn.Module:
    """Build the encoding ``cfg.kind`` for ``dim``-D inputs (tcnn falls back to torch hash)."""
    if cfg.kind == "dense":
        return DenseGrid(dim, cfg)
    if cfg.kind == "triplane":
        if dim != 3:
            raise ValueError("triplane needs 3-D inputs")
        return TriPlane(cfg)
    if cfg.kind == "hash":
        return HashGrid(dim, cfg)
    if cfg.kind == "densehash":
        return DenseHashGrid(dim, cfg)
    if cfg.kind == "tcnn":  # where tinycudann cannot run: the same encoding in torch (see the module doc)
        return TcnnHashGrid(dim, cfg) if tcnn_unavailable(device) is None else HashGrid(dim, cfg)
    raise ValueError(f"unknown grid kind {cfg.kind!r} (dense, triplane, hash, tcnn, densehash)")


def frequency_encoding(x: torch.Tensor, n_freqs: int, scale: float = 1.0) -> torch.Tensor:
    """NeRF's positional encoding: [...,D] -> [...,D (1 + 2 n_freqs)] = x, then sin(scale 2^k x) for
    k < n_freqs (frequency-major), then the cosines. ``scale`` pi gives NeRF's paper form (inputs in
    [-1,1] span whole periods), 1 its code's form."""
    if n_freqs <= 0:
        return x
    scales = scale * 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)
    xs = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(xs), torch.cos(xs)], dim=-1)


def grid_params(enc: nn.Module) -> int:
    return sum(p.numel() for p in enc.parameters())


__all__ = ["DenseGrid", "DenseHashGrid", "GridConfig", "HashGrid", "TcnnHashGrid", "TriPlane", "dense_shapes",
           "frequency_encoding", "grid_params", "make_encoding", "tcnn_unavailable"]
