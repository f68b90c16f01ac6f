"""rbf's options, one Config per task. Fields made with ``option`` are command-line flags; None means "decided by
the preset" (the named constructors ``for_image``, ``for_shape``, ``for_scene``), which every fit goes through.
"""

import os
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch

from fieldfit.config import MAX_BATCH, MAX_LR, MAX_POINTS, MAX_RES, ConfigBase, option
from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import GridConfig, dense_shapes, tcnn_unavailable
from fieldfit.fields.gaussian_rbf import FieldConfig

GRIDS = ("dense", "triplane", "hash", "tcnn", "densehash")
IMAGE_GRIDS = ("dense", "hash", "tcnn")  # 2-D inputs: no tri-plane; densehash needs --fine-levels (shapes only)
RADIANCE_GRIDS = ("dense", "triplane", "hash", "tcnn")
KERNELS = ("gaussian", "inverse_quadratic", "inverse_multiquadric", "multiquadric")
DECODERS = ("rbf", "mlp", "siren")
# Parameters of a feature grid: at most this many, and at most what the machine's memory holds for training
# (weights, gradients and Adam's two moments: 16 bytes a parameter in float32).
MAX_GRID_PARAMS = 1 << 32
TRAIN_BYTES_PER_PARAM = 16


def dense_grid_params(h: int, w: int, grid: GridConfig) -> int:
    """Parameters of ``grid`` as a dense 2D grid over an H x W image (DenseGrid's level shapes)."""
    top = max(h, w)
    shapes = dense_shapes(2, replace(grid, axis_scale=(w / top, h / top)))
    return sum(grid.features * a * b for a, b in shapes)


def fit_max_res(h: int, w: int, grid: GridConfig, cap: int) -> int:
    """The largest finest resolution whose dense grid has at most ``cap`` parameters."""
    lo, hi = grid.base_res, max(h, w)
    if dense_grid_params(h, w, replace(grid, max_res=lo)) > cap:
        raise InputError("--grid-ratio", f"a grid of {cap:,} parameters is too small for {grid.levels} levels "
                         f"from resolution {grid.base_res}",
                         "raise the ratio or lower --levels, --base-res or --features")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if dense_grid_params(h, w, replace(grid, max_res=mid)) <= cap else (lo, mid - 1)
    return lo


def grid_param_count(grid: GridConfig, dim: int) -> int:
    """Parameters of the feature grid ``grid`` over ``dim``-D inputs, counted from its config (nothing is made)."""
    tables = 2**grid.table_log2 * grid.features
    if grid.kind in ("hash", "tcnn"):
        return grid.levels * tables
    if grid.kind == "triplane":
        res = grid.resolutions()
        return grid.features * (3 * sum(r * r for r in res) + sum(r**3 for r in res if r <= grid.volume_max_res))
    dense = grid.features * sum(int(np.prod(s)) for s in dense_shapes(dim, grid))
    return dense + (grid.fine_levels * tables if grid.kind == "densehash" else 0)


def _memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_grid_size(grid: GridConfig, dim: int) -> None:
    """InputError naming --max-res when the grid is larger than MAX_GRID_PARAMS or than this machine's memory
    can train (``TRAIN_BYTES_PER_PARAM``); checked before anything is allocated."""
    params = grid_param_count(grid, dim)
    memory = _memory_bytes()
    cap = min(MAX_GRID_PARAMS, memory // TRAIN_BYTES_PER_PARAM) if memory else MAX_GRID_PARAMS
    if params <= cap:
        return
    need = params * TRAIN_BYTES_PER_PARAM / 2**30
    have = f"; this machine has {memory / 2**30:.0f} GB" if memory else ""
    raise InputError(f"--max-res {grid.max_res}", f"a {grid.kind} grid of {params:,} parameters ({grid.levels} "
                     f"levels of {grid.features} features) needs about {need:,.0f} GB to train{have}",
                     "lower --max-res, --levels or --features")


def field_for_device(field: FieldConfig, device, run) -> FieldConfig:
    """``field`` as it is built on ``device``: a ``tcnn`` grid where tinycudann cannot run becomes fieldfit's own
    hash grid (kind ``hash``, the same instant-ngp encoding; recorded so, the run loads anywhere). The fallback is
    said in one line on stderr and in the run's log, and recorded as ``grid_fallback`` in config.json and
    metrics.json (``Run.warn``)."""
    if field.grid.kind != "tcnn" or field.decoder == "siren":  # siren: no grid at all
        return field
    why = tcnn_unavailable(device)
    if why is None:
        return field
    slower = ", slower" if torch.device(device).type == "cuda" else ""
    run.warn(f"{why}: using fieldfit's torch hash grid (same encoding{slower})", grid_fallback=f"tcnn -> hash: {why}")
    return replace(field, grid=replace(field.grid, kind="hash"))


# The field options every task shares (their defaults differ by task).
def _grid(d, choices=GRIDS):
    return option(d, f"feature grid: {' | '.join(choices)}" + (" (densehash: dense levels plus --fine-levels "
                     "hashed ones up to --fine-max-res)" if "densehash" in choices else ""), choices=choices)


def _levels(d):
    return option(d, "grid levels", low=1, high=32)


def _base_res(d):
    return option(d, "coarsest grid resolution (cells per side)", low=2, high=MAX_RES)


def _max_res(d):
    return option(d, "finest grid resolution (cells per side)", low=2, high=MAX_RES)


def _features(d):
    return option(d, "features per grid level", low=1, high=64)


def _units(d):
    return option(d, "RBF units K of the decoder", low=1, high=4096)


def _kernel(d):
    return option(d, "RBF kernel: gaussian | inverse_quadratic | inverse_multiquadric | multiquadric", choices=KERNELS)


# Fifth pass (issue 29): the units measure distances in a learned linear map of the features, z = P F (P [J, D]
# shared by the units, starting as the first J rows of the identity; fields.components.rbf), so each unit's metric,
# diagonal in the features' own axes before, is P^T diag(b_k) P. Screens at fixed steps (every 8th test view; the
# quality at a fixed step count does not depend on the machine's load): lego 200x200, 1000 steps, seeds 0 / 1:
# without 27.56 / 27.50 dB, J = 56 (every feature) 28.04 / 27.91, J = 32 27.95 / 27.98, J = 16 28.00, the MLP decoder
# 27.87; a random orthogonal start 26.90; bench/fixed_steps.py (all test views), seeds 0 / 1: without 27.48 / 27.44,
# J = 16 27.56 / 27.97, MLP 27.81 / 27.70. fern, 1000 steps: without 22.08, J = 32 22.11, MLP 22.08. The fox
# (contracted), 1000 steps: without 24.42, J = 16 23.80 and foggier (69 samples a ray against 55), so contracted
# captures keep none. 300 s (bench/README.md, "The RBF decoder, fifth pass"): lego 100x100 32.58, 200x200 30.55,
# fern 23.95 (MLP 32.91 / 30.96 / 23.66). J = 16 also makes the layer cheaper than on all 56 features.
PROJECTION = 16


def _projection(d):
    return option(d, "rbf decoder: its units measure distances in a learned linear map of the grid features to N "
                     f"dimensions, 0: in the features themselves (default: {PROJECTION} for radiance scenes, 0 for "
                     "contracted captures, images and shapes)", low=0, high=1024)


def _decoder(d, choices=DECODERS):
    return option(d, "decoder: rbf (Gaussian RBF layer + linear head) | mlp (ReLU MLP) | siren", choices=choices)


def _hidden(d):
    return option(d, "mlp / siren width", low=1, high=4096)


def _layers(d):
    return option(d, "mlp / siren hidden layers", low=1, high=64)


def _batch(d, what):
    return option(d, f"{what} per optimisation step", low=1, high=MAX_BATCH)


def _lr(d):
    return option(d, "learning rate (Adam; decays exponentially to lr x lr_final over the fit)", low=0.0,
                  low_open=True, high=MAX_LR)


def _test_every(d):
    return option(d, "every N-th image is a test view when the scene has no split", low=2, high=10**6)


def _table_log2(d):
    return option(d, "hash table size (log2 of entries per level)", low=8, high=30)


# The field options that set the shapes of its weights (``ConfigBase.SHAPE_OPTIONS``: fixed on --resume).
FIELD_SHAPES = ("grid", "levels", "base_res", "max_res", "features", "table_log2", "volume_max_res", "fine_levels",
                "fine_max_res", "units", "decoder", "hidden", "layers")


class FieldOptions:
    """The feature grid and decoder of a Config (mixin over the shared field names)."""

    def grid_config(self, **over) -> GridConfig:
        kw = dict(kind=self.grid, levels=self.levels, base_res=self.base_res, max_res=self.max_res,
                  features=self.features, table_log2=self.table_log2, init_scale=self.init_scale,
                  volume_max_res=getattr(self, "volume_max_res", 0), fine_levels=getattr(self, "fine_levels", 0),
                  fine_max_res=getattr(self, "fine_max_res", 0))
        kw.update(over)
        return GridConfig(**kw)

    def field_config(self, **grid_over) -> FieldConfig:
        return FieldConfig(grid=self.grid_config(**grid_over), decoder=self.decoder, units=self.units,
                           kernel=self.kernel, hidden=self.hidden, layers=self.layers,
                           log_prec_init=getattr(self, "log_prec_init", 0.0),
                           center_init=self.init_scale if getattr(self, "centers_like_features", False) else 1e-4,
                           tail=self.decoder == "rbf" and getattr(self, "tail", "off") == "on",
                           project=int(getattr(self, "projection", 0) or 0) if self.decoder == "rbf" else 0,
                           split=self.decoder == "rbf" and getattr(self, "split", "off") in ("on", "mlp"),
                           colour="mlp" if getattr(self, "split", "off") == "mlp" else "rbf")


LEVEL_LR = 0.3  # ImageConfig.level_lr under grid_ratio


@dataclass(frozen=True)
class ImageConfig(ConfigBase, FieldOptions):
    """rbf on an image: rgb(uv) fitted to every pixel. Default grid: dense levels whose finest has one vertex
    per pixel; with ``grid_ratio`` the finest level shrinks until the grid holds at most that fraction of the
    image's values (two features per level, a doubled learning rate, half the batch, a higher final rate and a
    moving average of the weights then, unless given)."""

    DEFAULT_SECONDS: ClassVar[float] = 60.0
    # level_lr sets the optimizer's groups (one per level or one in all): fixed on --resume like the shapes
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = (*FIELD_SHAPES, "grid_ratio", "tail", "projection", "level_lr")

    grid: str = _grid("dense", IMAGE_GRIDS)
    levels: int = _levels(6)
    base_res: int = _base_res(24)
    max_res: int | None = _max_res(None)  # None: the image's larger side (or the grid_ratio cap)
    features: int | None = _features(None)  # None: 4 (2 under grid_ratio)
    table_log2: int = _table_log2(19)
    init_scale: float = 1e-4
    grid_ratio: float | None = option(None, "cap the grid at this fraction of the image's values (e.g. 0.25)",
                                      low=0.0, low_open=True, high=100.0)
    units: int = _units(64)
    kernel: str = _kernel("gaussian")
    decoder: str = _decoder("rbf")
    hidden: int = _hidden(64)
    layers: int = _layers(2)
    # Batch 8192: on 2 CPU cores, many small steps beat few large ones (kodim05, 60 s, quiet machine:
    # 65536 -> 49.2 dB, 16384 -> 49.9, 8192 -> 53.0, 4096 -> 52.7). Under grid_ratio 4096 (kodim08 at 0.25, 60 s:
    # 8192 -> 35.64 / 35.35 dB, 4096 -> 36.33 / 36.04, 2048 -> 35.39).
    batch: int | None = _batch(None, "pixels")  # None: 8192 (4096 under grid_ratio)
    lr: float | None = _lr(None)  # None: 1e-2 (2e-2 under grid_ratio)
    # The rate ends at lr x lr_final. A full-size grid can hold the image exactly: its loss falls until Adam's
    # steps (about lr for every weight a batch touches) are the error, and at 0.2 the PSNR at the last step
    # jumped between 50 and 57 dB from one step to the next (kodim09); 0.005 ends near 68. A compact grid never
    # gets there, and the lower rate only slows it (kodim08 at 0.25: 0.2 -> 36.3 dB, 0.02 -> 35.4, 0.005 -> 34.6).
    lr_final: float | None = None  # None: 0.005 (0.5 under grid_ratio)
    # A compact fit ends while Adam's steps are still noise around the optimum: the results use a moving average
    # of the weights (optim.WeightAverage). kodim08 at 0.25, 60 s, pixels in random passes: the last weights
    # 37.15 / 37.08 dB, their average at decay 0.99 36.94, 0.999 37.51 / 37.56, 0.9995 37.42; with it, lr_final 0.5
    # beat 0.2 on kodim08 and kodim01 (37.61 / 37.57 against 37.51 / 37.56; 38.72 against 38.55). A full-size grid
    # lost with it (kodim09: 71.6 dB without, 66.5 with 0.999: its loss still falls to the last step).
    # The RBF decoder's linear tail (fields.components.rbf): the features reach the output from the first step,
    # where units that all start at one point pass on almost no gradient. kodim08 at 0.25, 60 s, seeds 0-2: without
    # 37.78 / 37.06 / 37.27 dB, with 37.64 / 37.75 / 37.82; kodim05 at full size 79.52 -> 81.86.
    tail: str = option("on", "rbf decoder: add a linear function of the grid features to its outputs (an RBF "
                             "interpolant's polynomial tail): on | off", choices=("on", "off"))
    # The units on a learned map of the features (RadianceConfig's PROJECTION) lost here: kodim08 at 0.25, 15000
    # steps, one thread: without 36.89 dB, J = 8 / 12 (all the features) / 16 34.80 / 36.13 / 35.81.
    projection: int | None = _projection(None)
    average: float | None = option(None, "decay of a moving average of the weights that the results use, 0 off "
                                         "(default: 0.999 under --grid-ratio, else 0)", low=0.0, high=0.99999)
    # Every batch moves every cell of a coarse level and few of the finest's, and Adam moves each cell it moves by
    # about the rate: the coarse levels' steps shake the whole image. Under grid_ratio level l learns at
    # lr x (res_l / res_finest)^LEVEL_LR (kodim08's levels 24..385: 0.44 .. 1). bench/README.md "Compact image
    # fits: the coarse levels' rate" has the screens.
    level_lr: float | None = option(None, "dense grid: level l learns at lr x (its resolution / the finest's)^P, "
                                          "coarse levels slower (default: 0.3 under --grid-ratio, else 0)",
                                    low=0.0, high=4.0)

    @classmethod
    def from_dict(cls, d: dict):
        """As saved; runs written before the moving average, the tail and the levels' rates had none of them."""
        return super().from_dict({"average": 0.0, "tail": "off", "level_lr": 0.0, **(d or {})})

    @classmethod
    def for_image(cls, height: int, width: int, channels: int = 3, **given) -> "ImageConfig":
        """The config of an H x W x C image (see the class doc)."""
        cfg = cls(**given)
        compressed = cfg.grid_ratio is not None
        cfg = replace(cfg, features=cfg.features or (2 if compressed else 4), projection=cfg.projection or 0,
                      lr=cfg.lr or (2e-2 if compressed else 1e-2), batch=cfg.batch or (4096 if compressed else 8192),
                      lr_final=cfg.lr_final or (0.5 if compressed else 0.005),
                      average=cfg.average if cfg.average is not None else (0.999 if compressed else 0.0),
                      level_lr=cfg.level_lr if cfg.level_lr is not None else (LEVEL_LR if compressed else 0.0))
        if cfg.max_res is None:
            top = max(height, width)
            cap = int(cfg.grid_ratio * height * width * channels) if compressed else None
            cfg = replace(cfg, max_res=fit_max_res(height, width, cfg.grid_config(), cap) if cap is not None else top)
        top = max(height, width)
        check_grid_size(cfg.grid_config(axis_scale=(width / top, height / top)), 2)
        return cfg


@dataclass(frozen=True)
class SDFConfig(ConfigBase, FieldOptions):
    """rbf on a shape: sdf(x) fitted to samples of the mesh in the unit frame; marching cubes at the end."""

    DEFAULT_SECONDS: ClassVar[float] = 60.0
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = (*FIELD_SHAPES, "projection")

    grid: str = _grid("dense")
    levels: int = _levels(4)
    base_res: int = _base_res(16)
    max_res: int = _max_res(128)
    features: int = _features(2)
    table_log2: int = _table_log2(19)
    init_scale: float = 1e-4
    volume_max_res: int = 0
    fine_levels: int = option(0, "grid densehash: hashed levels above --max-res", low=0, high=16)
    fine_max_res: int = option(0, "grid densehash: finest hashed resolution", low=0, high=MAX_RES)
    units: int = _units(64)
    kernel: str = _kernel("gaussian")
    decoder: str = _decoder("rbf")
    hidden: int = _hidden(64)
    layers: int = _layers(2)
    projection: int | None = _projection(None)  # not measured on shapes
    batch: int = _batch(2048, "points")
    lr: float = _lr(5e-3)
    lr_final: float = 0.01
    train_points: int = option(2_000_000, "training points drawn from the shape (near the surface and uniform)",
                               low=1000, high=MAX_POINTS)
    thin_frac: float = option(0.1, "share of training points drawn across walls and gaps thinner than 0.02 "
                                   "(0: off)", low=0.0, high=1.0)
    resolution: int = option(256, "marching-cubes resolution of the exported mesh", low=16, high=2048)
    eval_every: float | None = option(None, "seconds between progress evaluations (default: a twelfth of the budget)",
                                      low=0.0, low_open=True, high=86400.0)
    iou_points: int = option(1_000_000, "Monte-Carlo points of the IoU measurement (standard error < 1e-3 at 1M)",
                             low=1000, high=MAX_POINTS)

    @classmethod
    def for_shape(cls, **given) -> "SDFConfig":
        """The config of a shape fit; InputError for a densehash grid without hashed levels or a grid too large."""
        cfg = cls(**given)
        cfg = replace(cfg, projection=cfg.projection or 0)
        if cfg.grid == "densehash" and (cfg.fine_levels < 1 or cfg.fine_max_res <= cfg.max_res):
            raise InputError("--grid densehash", f"needs --fine-levels >= 1 and --fine-max-res above --max-res "
                             f"({cfg.max_res}); given {cfg.fine_levels} and {cfg.fine_max_res}",
                             f"e.g. --fine-levels 2 --fine-max-res {4 * cfg.max_res}")
        check_grid_size(cfg.grid_config(), 3)
        return cfg


# (levels, features) of a grid when --levels / --features are not given; other grids: (4, 4).
GRID_SHAPES = {"hash": (16, 2)}  # instant-ngp's hash grid
# (rays per step at most, field samples per step) by device type. On 2 CPU cores small steps win; on a GPU a
# step's fixed cost (a few hundred kernel launches, host syncs in the marcher) needs instant-ngp's / nerfacc's
# 2^18 samples per step to be amortised.
STEP_SIZES = {"cpu": (8192, 1 << 14), "cuda": (1 << 18, 1 << 18)}
# The decoders' learning rates: instant-ngp's 1e-2 for the MLP; for the RBF decoder twice GNF's lr_large (0.02),
# with its centres drawn like the grid's starting features (below).
LR_DECODER = {"rbf": 0.04, "mlp": 0.01}
# The RBF field's fog (issue 29). Samples whose alpha is under the march's threshold get no gradient, so empty space
# stays where training leaves it as a side effect. A ReLU MLP drives it far below the threshold (lego 100x100, 600
# steps: median empty-space density 1e-13); the RBF head's density is a bounded sum of broad units that also cover
# the empty space next to a surface, so with shift -5 its empty space rose above the threshold (about 0.04 at the start,
# 0.12 at 600 steps) and every such sample was kept (9.4 samples per ray against the MLP's 4.3). GNF's shift -10
# puts the same raw values far under the threshold, and sharper starting units (precision e^2 on grid features of
# scale 0.1) separate surface from empty space sooner: 0.008, 5.4 samples per ray, +1.6 dB at 600 steps; fern at
# 400 steps 114 -> 30 samples per ray, +0.75 dB. The MLP keeps -5, and so do contracted scenes: there -10 turns
# the field opaque too slowly for short fits (the blocks photos contracted, 300 steps: 12.1 dB at -10, 16.1 at -5,
# both with precision e^2; 14.4 before).
DENSITY_SHIFT = {"rbf": -10.0, "mlp": -5.0}
CONTRACTED_DENSITY_SHIFT = -5.0
# The RBF field's fog, continued: what remained was on the surfaces, not in empty space (lego 100x100, 1500 steps,
# rays that hit the object: 13.6 samples each before they turn opaque against the MLP's 11.2; background rays 0.1
# either way). Bounded Gaussian units raise the density slowly across a surface; the exp activation makes that
# rise steep and the tail (fields.components.rbf) gives the colour its linear part: 30.17 dB -> 30.85 with the
# tail, 31.03 with both (MLP 31.31); the tail on the density row alone gave 30.51, on density and the SH
# constant 30.64. bench/README.md "The RBF decoder, second pass" has the table.
DENSITY_ACTIVATION = {"rbf": "exp", "mlp": "softplus"}
LOG_PREC_INIT = 2.0
NDC_TV = 0.01  # total-variation weight of forward-facing scenes (``RadianceConfig.with_scene``)
# Finest tri-plane level of NDC scenes. fern, `--time-budget 600`, one run each: 256 23.63 dB / SSIM 0.717 and 512
# 23.71 / 0.734 (decaying occupancy grid); 256 23.70 / 0.718 and 512 23.84 / 0.741 (fresh grid looks); 512 with
# rays in passes 23.92 / 0.750. The finer planes cost 4-26% of the steps in those runs.
NDC_MAX_RES = 512
# ... and of contracted captures: bonsai (`--downscale 2 --time-budget 900`, 19 test views, one run each): 128
# 23.37 dB / SSIM 0.651 in 12147 steps, 256 23.72 / 0.697 in 12613.
CONTRACTED_MAX_RES = 256
# Steps between fresh looks at every occupancy cell, for scenes without alpha (0 for scenes with it). Cells only a
# partial refresh draws keep max(0.95 old, new), so fog a field held early stays in the grid: fern after 2000 steps
# had 75% of its cells occupied, 42% by a fresh look, and 33 of the 47 samples a training ray evaluated lay in such
# cells. With fresh looks: fern 600 s 8152 steps instead of 7146, 9 samples per test ray instead of 59, the same
# PSNR (23.70 dB); bonsai 900 s 12103 steps instead of 8230, 23.27 dB / SSIM 0.652 instead of 23.10 / 0.626. On lego
# (alpha) they cost quality: 200x200, 300 s, rbf 29.59 dB against 29.97, mlp 29.70 against 30.57. One random point
# per cell misses thin parts: that mlp fit rendered with its grid dilated by a cell gives 30.21 (decaying: 30.57).
GRID_REFRESH = 1024
# Fourth pass (issue 29), quality per step: GNF starts every unit's centre at ~0 (U(+-1e-4)), so the 32 units start
# as one and separate only through their head weights. Radiance fits draw the centres like the grid's starting
# features, U(+-init_scale), and train the decoder at 0.04 instead of 0.02 (lego 100x100, 1500 steps, seeds 0 / 1:
# 31.02 / 31.01 dB -> 31.33 / 31.21; fern 1200 steps 21.74 -> 22.05; centres alone 31.12, 0.04 alone 31.10, 0.08
# alone 31.05, centres at U(+-0.3) 30.91). bench/README.md "The RBF decoder, fourth pass". Contracted scenes keep
# GNF's centres and 0.02, as they keep the shift -5: the blocks photos contracted (150 steps) reached 16.7 dB with
# them, 12.3 with both changes, 15.2 with the centres alone, 9.8 with 0.04 alone.
CONTRACTED_LR_DECODER = 0.02


@dataclass(frozen=True)
class RadianceConfig(ConfigBase, FieldOptions):
    """rbf on posed photos: an RBF radiance field marched through an occupancy grid (module doc of
    ``rbf.radiance``). ``for_scene`` decides what is None from the scene and the device."""

    DEFAULT_SECONDS: ClassVar[float] = 300.0
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = (*FIELD_SHAPES, "grid_res", "contract", "appearance", "refine_poses",
                                                "tail", "projection", "split")

    # scene loading
    downscale: int = option(1, "downscale the posed images by N (area average)", low=1, high=64)
    test_every: int = _test_every(8)
    contract: str | None = option(None, "scene contraction for backgrounds beyond the box: on | off (default: on "
                                        "for photos in world space, off for synthetic and NDC scenes)",
                                  choices=("on", "off"))
    # Per-photo colour maps, off unless asked for: on the four real captures here they lowered the held-out PSNR,
    # whose views are drawn with the mean map (one 900 s / 300 s run each, on -> off: bonsai 23.83 -> 24.24 dB,
    # fox 27.66 -> 28.12 (with the maps at the same steps 27.66), cup 26.84 -> 26.93, tank 17.41 -> 17.43).
    # For photos taken at different exposures (a phone's auto exposure).
    appearance: str = option("off", "per-photo colour correction (exposure, white balance), for photos taken at "
                                    "different exposures: on | off", choices=("on", "off"))
    refine_poses: str = option("off", "train a pose correction per training photo with the field (for poses "
                                      "from structure-from-motion): on | off", choices=("on", "off"))
    # field
    grid: str | None = _grid(None, RADIANCE_GRIDS)  # None: hash on a GPU for world-space scenes, else triplane
    levels: int | None = _levels(None)
    base_res: int = _base_res(16)
    max_res: int | None = _max_res(None)
    features: int | None = _features(None)
    table_log2: int = _table_log2(19)
    init_scale: float = 0.1
    volume_max_res: int = 32
    # 32 units. 64 gave a little more at 300 s (lego 200x200 29.99 -> 30.21 dB, lego 100x100 32.41 -> 32.54; fern at
    # 600 s 23.80 -> 23.91; 128: 27.73, foggy) but start slower: the test suite's 120-step fits of the blocks scene
    # had nothing above the mesh threshold with 64 (bench/README.md, "Colour maps off by default").
    units: int = _units(32)
    kernel: str = _kernel("gaussian")
    decoder: str = _decoder("rbf", ("rbf", "mlp"))
    hidden: int = _hidden(64)
    layers: int = _layers(2)
    log_prec_init: float = LOG_PREC_INIT  # rbf decoder: its units' starting log-precision
    centers_like_features: bool | None = None  # rbf: centres start U(+-init_scale), not U(+-1e-4); None: unless
    # the scene is contracted (see above)
    tail: str = option("on", "rbf decoder: add a linear function of the grid features to its outputs (an RBF "
                             "interpolant's polynomial tail): on | off", choices=("on", "off"))
    projection: int | None = _projection(None)
    # Density and colour from separate RBF decoders (fields.components.rbf.SplitRBFDecoder). lego 200x200, 3000
    # steps, one thread: one decoder 30.11 / 30.13 dB (seeds 0 / 1), split 30.51, the MLP 30.22; 64 units in one
    # layer with density on 32 and colour on 32 (one projection) 29.89. 300 s, the same hour: split 30.83, MLP
    # 30.86 (one decoder: 30.55-30.69); lego 100x100 32.61 against 33.00 (one decoder: 32.58 against 32.91); at
    # 3000 steps on lego 100x100 split 32.29, one 32.26, the MLP 32.49. The fused frame kernel draws it as one
    # decoder (SplitRBFDecoder.as_one). "mlp": RBF density, MLP colour; 300 s, one hour (bench/README.md "seventh
    # pass"): lego 100x100 / 200x200 / fern 32.97 / 30.79 / 22.98 dB, the MLP 32.72 / 30.78 / 23.58, one RBF decoder
    # 32.48 / 30.33 / 23.48, split "on" on fern 22.40. Off by default: both splits lose on fern.
    split: str = option("off", "rbf decoder: density and colour from two RBF decoders, each with --units units "
                               "and its own projection and tail: on | off | mlp (density from the RBF units, colour "
                               "from a ReLU MLP of --hidden x --layers)", choices=("on", "off", "mlp"))
    density_shift: float | None = None  # None: DENSITY_SHIFT[decoder] (contracted scenes: CONTRACTED_DENSITY_SHIFT)
    density_activation: str | None = None  # softplus | exp; None: DENSITY_ACTIVATION[decoder]
    # optimisation
    batch: int | None = _batch(None, "rays (at most)")
    tv: float | None = option(None, "weight of a total-variation prior on the tri-plane's planes (default: 0.01 for "
                                    "forward-facing (NDC) scenes, else 0)", low=0.0, high=100.0)
    target_samples: int | None = None  # field samples per step (None: STEP_SIZES by device)
    lr: float = _lr(0.02)
    lr_decoder: float | None = None  # None: LR_DECODER[decoder]
    lr_final: float = 0.1
    distortion: float | None = option(None, "weight of mip-NeRF 360's distortion loss (default: 0.01 for "
                                            "captures without alpha, 0 with alpha)", low=0.0, high=100.0)
    background: str | None = option(None, "training background: random | black (default: random with alpha or "
                                          "NDC, else black)", choices=("random", "black"))
    # occupancy grid and march
    grid_res: int | None = None  # occupancy cells per side (None: about one per pixel footprint, 32..128)
    grid_full: tuple = (16, 48, 128, 256, 512)  # steps at which every cell is evaluated
    # > 0: every full evaluation replaces the cells' values and one comes every grid_refresh steps after grid_full;
    # 0: full evaluations keep max(0.95 old, new), none after grid_full. None: GRID_REFRESH by scene (with_scene)
    grid_refresh: int | None = None
    grid_every: int = 16  # steps between partial refreshes
    grid_cells: float = 1 / 16  # share of the cells a partial refresh evaluates
    grid_threshold: float = 0.01
    grid_dilation: int = 0
    coarse_step: float = 4.0  # march step factor before the first refresh
    step: float | None = None  # march step (None: 0.7 pixel footprint, at least half a cell)
    early_stop: float = 1e-3
    alpha_thre: float = 1e-3
    # outputs
    eval_rays: int = 4096
    resolution: int = option(256, "marching-cubes resolution of the exported mesh", low=16, high=2048)

    @classmethod
    def from_dict(cls, d: dict):
        """As saved; runs written before the tail and the exp activation had neither, nor spread centres, nor
        fresh grid refreshes."""
        return super().from_dict({"tail": "off", "density_activation": "softplus", "centers_like_features": False,
                                  "grid_refresh": 0, "projection": 0, **(d or {})})

    @classmethod
    def for_scene(cls, scene, device="cpu", **given) -> "RadianceConfig":
        """The config of a fit of ``scene`` on ``device`` (``with_device`` then ``with_scene``); InputError for a
        grid too large to train."""
        cfg = cls(**given).with_device(device, scene).with_scene(scene)
        check_grid_size(cfg.grid_config(), 3)
        if cfg.tv > 0 and cfg.grid != "triplane":
            raise InputError(f"--tv {cfg.tv:g}", f"the total-variation prior smooths tri-plane grids, not --grid "
                             f"{cfg.grid}", "drop --tv or use --grid triplane")
        return cfg

    def with_device(self, device, scene=None) -> "RadianceConfig":
        """Step sizes and feature grid by device, where not set.

        Grid: on a GPU, for a world-space scene (``scene`` given, not NDC) and no --grid, instant-ngp's hash
        grid (16 levels of 2 features, 2^19 entries each; ``GRID_SHAPES``) up to about two texels per pixel
        footprint, 128..2048 (lego 400x400: 1024). Otherwise the tri-plane, 4 levels of 4 features; on a GPU
        its finest level follows the footprint, about one texel per pixel, 128..512 (lego 400x400: 512); the
        CPU keeps 128 (``with_scene``), which its step rate trains in the budgets measured there.
        Measured on an H200, lego 400x400, 180 s (bench/radiance_gpu.py): hash 33.6 dB, tri-plane 31.5 dB.
        """
        from fieldfit.tasks.radiance import box_extent, pixel_footprint

        kind = torch.device(device).type
        batch, samples = STEP_SIZES.get(kind, STEP_SIZES["cpu"])
        world_gpu = kind == "cuda" and scene is not None and not scene.ndc
        grid = self.grid or ("hash" if world_gpu else "triplane")
        levels, features = GRID_SHAPES.get(grid, (4, 4))
        max_res = self.max_res
        if world_gpu and max_res is None:
            footprint = 2 ** np.ceil(np.log2(box_extent(scene) / pixel_footprint(scene)))
            max_res = int(np.clip(2 * footprint, 128, 2048) if grid == "hash" else np.clip(footprint, 128, 512))
        return replace(self, batch=self.batch or batch, target_samples=self.target_samples or samples, grid=grid,
                       levels=self.levels or levels, features=self.features or features, max_res=max_res)

    def with_scene(self, scene) -> "RadianceConfig":
        """Scene-dependent defaults, where not set: the finest grid level is 128, ``NDC_MAX_RES`` for NDC scenes,
        whose box holds the whole image width, and ``CONTRACTED_MAX_RES`` for contracted ones (the notes there)
        (on a GPU ``with_device`` has chosen it for world-space captures). The distortion loss
        (t in marching-space units) is on (0.01) for captures without alpha (real scenes, NDC), where it clears the
        fog a random background alone leaves (fox, fern: 3-8x fewer samples per ray), and off for alpha scenes,
        where it changed nothing measurable (lego). A total-variation prior on the tri-plane's planes (``tv``) is on
        (``NDC_TV``) for NDC scenes: fern's 20 photos leave much of its planes unseen (600 s: 23.72 and 23.63 dB with
        it, 22.93 and 23.50 without); off elsewhere (not measured to help). Scenes without alpha look at every
        occupancy cell afresh every ``GRID_REFRESH`` steps; alpha scenes keep the decaying grid (the note there).

        Training background: a random colour per ray for scenes with alpha (so the field learns their alpha) and
        for NDC scenes (their box reaches infinity, so every ray can turn opaque in it; fern 300 s: 22.9 dB in
        training evaluation with random, 20.6 with black), black for world-space captures without alpha, whose
        rays leave the box: there a random colour is noise the field silences by turning opaque where rays
        start, in front of each camera (fox 300 s: test views 13.6 dB with random, floaters; black: 19.4 dB at
        150 s). Contracted scenes (``tasks.radiance.scene_contraction``) train on random colours, as NDC scenes:
        no ray leaves their space. Per-photo colour maps (``render.appearance``) are off unless asked for (the
        note at ``appearance``).

        Density shift: ``DENSITY_SHIFT`` by decoder (rbf -10, GNF's), ``CONTRACTED_DENSITY_SHIFT`` (-5) where the
        scene is contracted (see the note at ``DENSITY_SHIFT``); activation ``DENSITY_ACTIVATION`` by decoder. The
        RBF decoder's learning rate and starting centres: ``LR_DECODER`` and centres like the features, except in
        contracted scenes (``CONTRACTED_LR_DECODER``, GNF's centres; the note at ``LOG_PREC_INIT``)."""
        from fieldfit.tasks.radiance import scene_contraction

        contracted = scene_contraction(scene, self.contract) is not None
        return replace(
            self, max_res=self.max_res or (NDC_MAX_RES if scene.ndc else CONTRACTED_MAX_RES if contracted else 128),
            contract=self.contract or ("on" if contracted else "off"),
            distortion=self.distortion if self.distortion is not None else (0.0 if scene.has_alpha else 0.01),
            tv=self.tv if self.tv is not None else (NDC_TV if scene.ndc and self.grid == "triplane" else 0.0),
            grid_refresh=self.grid_refresh if self.grid_refresh is not None else
            (0 if scene.has_alpha else GRID_REFRESH),
            background=self.background or ("random" if (scene.has_alpha or scene.ndc or contracted) else "black"),
            lr_decoder=self.lr_decoder or (CONTRACTED_LR_DECODER if contracted and self.decoder == "rbf"
                                           else LR_DECODER[self.decoder]),
            centers_like_features=(not contracted) if self.centers_like_features is None
            else self.centers_like_features,
            density_shift=self.density_shift if self.density_shift is not None else
            (CONTRACTED_DENSITY_SHIFT if contracted else DENSITY_SHIFT[self.decoder]),
            density_activation=self.density_activation or DENSITY_ACTIVATION[self.decoder],
            projection=self.projection if self.projection is not None else (0 if contracted else PROJECTION))


__all__ = ["FIELD_SHAPES", "FieldOptions", "check_grid_size", "dense_grid_params", "field_for_device", "fit_max_res",
           "grid_param_count",
           "GRIDS", "GRID_SHAPES", "IMAGE_GRIDS", "ImageConfig", "LR_DECODER", "RADIANCE_GRIDS", "RadianceConfig",
           "SDFConfig", "STEP_SIZES", "CONTRACTED_DENSITY_SHIFT", "CONTRACTED_LR_DECODER", "DENSITY_ACTIVATION",
           "DENSITY_SHIFT", "GRID_REFRESH", "LEVEL_LR", "LOG_PREC_INIT", "PROJECTION"]
