"""dnmp's options (one task: radiance). Fields made with ``option`` are command-line flags; None: decided by
``for_scene`` (the voxel from the pixel footprint, the geometry stage's share from the start shapes)."""

from dataclasses import dataclass
from typing import ClassVar

from fieldfit.config import MAX_BATCH, MAX_LR, ConfigBase, option


@dataclass(frozen=True)
class DNMPConfig(ConfigBase):
    """Deformable neural mesh primitives (METHODS.md 2): one small deformable mesh per occupied voxel, at two voxel
    sizes, rasterized with K layers per pixel and shaded by a small MLP."""

    DEFAULT_SECONDS: ClassVar[float] = 300.0
    # the primitives (where, how many, their start shapes) and the shader's inputs
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = ("voxel", "voxel_px", "shell", "points", "points_max_res", "shapes",
                                                "sh_degree", "rim", "antialias", "k_fine", "k_coarse", "freqs",
                                                "hidden")

    # scene loading
    downscale: int = option(1, "downscale the posed images by N (area average)", low=1, high=64)
    test_every: int = option(8, "every N-th image is a test view when the scene has no split", low=2, high=10**6)
    # where the primitives go
    voxel: float | None = option(None, "fine voxel size in world units (default 3 pixel footprints)", low=0.0,
                                 low_open=True, high=1e12)
    voxel_px: float = 3.0
    shell: int = 1
    points: str = option("auto", "where the primitives come from: auto | scene | carve | rbf | an rbf run folder")
    points_frac: float = option(0.5, "share of the budget for the rbf fit that places the primitives", low=0.0,
                                high=1.0)
    points_max_res: int = 128
    shapes: str = option("density", "primitives start as: density (fitted to the rbf point fit) | sphere",
                         choices=("density", "sphere"))
    # the model
    sh_degree: int | None = option(None, "colour as spherical harmonics of this degree per point (default: an MLP "
                                         "reads the direction)", low=0, high=3)
    rim: bool = option(True, "opacity also reads |normal . view| so outlines can fade: on | off")
    antialias: bool = option(False, "2x2 samples in the pixels along outlines, training and rendering: on | off")
    k_fine: int = 4
    k_coarse: int = 2
    freqs: int = 6
    hidden: int = 64
    # optimisation
    lr: float = option(0.01, "learning rate of the features and MLPs", low=0.0, low_open=True, high=MAX_LR)
    lr_geometry: float = 1e-3
    lr_final: float = 0.1
    batch: int = option(8192, "pixels per radiance-stage step", low=1, high=MAX_BATCH)
    window: int = 48
    geo_frac: float | None = option(None, "share of the budget for the photometric geometry stage (default 0; "
                                          "sphere shapes 0.1)", low=0.0, high=1.0)
    eval_rays: int = 4096
    resolution: int = option(192, "marching-cubes resolution of the exported mesh", low=16, high=2048)

    @classmethod
    def for_scene(cls, scene, **given) -> "DNMPConfig":
        """The voxel (``voxel_px`` pixel footprints) and the geometry stage's share (0.1 for sphere shapes, 0 for
        density shapes: see ``fit``'s module doc) where not given."""
        from fieldfit.tasks.radiance import pixel_footprint

        cfg = cls(**given)
        return cfg.replace(voxel=cfg.voxel or float(cfg.voxel_px) * pixel_footprint(scene),
                           geo_frac=cfg.geo_frac if cfg.geo_frac is not None else
                           (0.1 if cfg.shapes == "sphere" else 0.0))


__all__ = ["DNMPConfig"]
