"""bsp's options (one task: shapes). Fields made with ``option`` are command-line flags."""

from dataclasses import dataclass
from typing import ClassVar

from fieldfit.config import MAX_BATCH, MAX_LR, MAX_POINTS, ConfigBase, option

PLANES_PER_CONVEX = 8  # planes = 8 x convexes unless given (512 for 64 convexes)


@dataclass(frozen=True)
class BSPConfig(ConfigBase):
    """A shape as a union of ``convexes`` convexes cut by shared planes (BSP-Net, METHODS.md 4)."""

    DEFAULT_SECONDS: ClassVar[float] = 300.0
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = ("convexes", "planes")

    convexes: int = option(64, "convexes of the decomposition (unused ones are pruned)", low=1, high=4096)
    planes: int | None = option(None, "planes the convexes share (default 8 per convex)", low=4,
                                high=1 << 16)
    batch: int = option(4096, "points per optimisation step", low=1, high=MAX_BATCH)
    lr: float | None = option(None, "learning rate of the planes (default 1e-2)", low=0.0, low_open=True,
                                 high=MAX_LR)
    train_points: int = option(400_000, "labelled training points (uniform and near the surface)", low=1000,
                               high=MAX_POINTS)
    threads: int = option(1, "torch CPU threads while fitting (a BSP step is many small kernels: one thread is "
                             "fastest on a busy 2-core machine)", low=1, high=1024)
    iou_points: int = option(1_000_000, "Monte-Carlo points of the IoU measurement (standard error < 1e-3 at 1M)",
                             low=1000, high=MAX_POINTS)
    probe_points: int = 100_000
    checkpoint: bool = True  # write checkpoints while fitting (export --via bsp does not)

    @classmethod
    def for_shape(cls, **given) -> "BSPConfig":
        cfg = cls(**given)
        return cfg.replace(planes=cfg.planes or PLANES_PER_CONVEX * cfg.convexes)


__all__ = ["BSPConfig", "PLANES_PER_CONVEX"]
