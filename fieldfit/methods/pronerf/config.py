"""pronerf's options (one task: radiance). Fields made with ``option`` are command-line flags.

Field defaults, measured on fern (images_8) after 500 steps at 12 samples per ray, test PSNR: rbf's RadianceRBF
with its ReLU-MLP decoder (64 x 2) 20.26 dB against 18.89 with the Gaussian RBF decoder (32 units; 64 units
19.01), but at the full 1200 s the two meet (RBF 22.59 dB, MLP 22.51), so the field keeps its RBF decoder by
default (``--decoder mlp`` for the MLP); 128-wide MLP 20.69 but 1.3x slower steps; max_res 512 (5 levels) 19.93;
grid lr 0.04 18.87. Sampler and refiner 4 x 64 wide: 20.86 against 20.27 at 4 x 128, and cheaper (they see only
a ray's 6 Pluecker numbers; narrower nets generalise better to new views).
"""

from dataclasses import dataclass
from typing import ClassVar

from fieldfit.config import MAX_BATCH, MAX_LR, MAX_RES, ConfigBase, option
from fieldfit.methods.rbf.config import FIELD_SHAPES, KERNELS, RADIANCE_GRIDS, FieldOptions, check_grid_size


@dataclass(frozen=True)
class ProNeRFConfig(ConfigBase, FieldOptions):
    """A sampler network places ``samples`` samples per ray from colours re-projected into nearby training views;
    the radiance field is queried only there."""

    DEFAULT_SECONDS: ClassVar[float] = 300.0
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = (*FIELD_SHAPES, "field", "nerf_hidden", "nerf_layers", "nerf_freqs",
                                                "samples", "views", "sampler_hidden", "sampler_layers", "pe_freqs")

    # scene loading
    downscale: int = option(1, "downscale the posed images by N (area average)", low=1, high=64)
    test_every: int = option(8, "every N-th image is a test view when the scene has no split", low=2, high=10**6)
    # the field: rbf's radiance field (same options as rbf) or a small NeRF MLP
    field: str = option("rbf", "the radiance field: rbf (rbf's RBF field) | nerf (an MLP NeRF)",
                        choices=("rbf", "nerf"))
    grid: str = option("triplane", "feature grid of the rbf field", choices=RADIANCE_GRIDS)
    levels: int = option(4, "grid levels", low=1, high=32)
    base_res: int = option(16, "coarsest grid resolution", low=2, high=MAX_RES)
    max_res: int = option(256, "finest grid resolution", low=2, high=MAX_RES)
    features: int = option(4, "features per grid level", low=1, high=64)
    table_log2: int = option(19, "hash table size (log2)", low=8, high=30)
    init_scale: float = 0.1
    volume_max_res: int = 32
    units: int = option(32, "RBF units K", low=1, high=4096)
    kernel: str = option("gaussian", "RBF kernel", choices=KERNELS)
    decoder: str = option("rbf", "decoder of the rbf field: rbf | mlp", choices=("rbf", "mlp"))
    hidden: int = option(64, "mlp decoder width", low=1, high=4096)
    layers: int = option(2, "mlp decoder hidden layers", low=1, high=64)
    density_shift: float = -5.0
    lr: float = option(0.02, "learning rate of the field's grid", low=0.0, low_open=True, high=MAX_LR)
    lr_decoder: float = 0.02
    lr_final: float = 0.1
    nerf_hidden: int = 128
    nerf_layers: int = 4
    nerf_freqs: int = 10
    lr_nerf: float = 5e-3
    # the sampler and refiner
    samples: int = option(12, "samples per ray (ProNeRF: 8, 12 or 32)", low=2, high=128)
    views: int = option(4, "source views each ray's candidates are projected into", low=1, high=16)
    pool: int = 12  # the nearest views a training ray draws its source views from
    sampler_hidden: int = 64
    sampler_layers: int = 4
    pe_freqs: int = 0
    lr_sampler: float = 1e-3
    offset_scale: float = 0.005  # x the box's mean extent
    # schedule
    batch: int = option(2048, "rays per step", low=1, high=MAX_BATCH)
    explore_batch: int = 1024
    explore_samples: int = 48
    explore_uniform: int = 8
    jitter: float = 0.2
    stage1: float = 0.5
    distill: float = 1.0
    distill_floor: float = 0.1
    distortion: float = 0.0
    max_bad_steps: int = 20
    eval_rays: int = 4096
    chunk: int = 4096
    resolution: int = option(256, "marching-cubes resolution of the exported mesh", low=16, high=2048)

    @classmethod
    def for_scene(cls, scene=None, device="cpu", **given) -> "ProNeRFConfig":
        """The config of a fit; InputError for an rbf field whose grid is too large to train."""
        cfg = cls(**given)
        if cfg.field == "rbf":
            check_grid_size(cfg.grid_config(), 3)
        return cfg


__all__ = ["ProNeRFConfig"]
