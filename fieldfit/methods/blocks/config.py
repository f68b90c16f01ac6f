"""The options of a fit in blocks (``fieldfit SCENE --blocks AxB``; the blocks' own field options are rbf's)."""

from dataclasses import dataclass
from typing import ClassVar

from fieldfit.config import ConfigBase, option

from .partition import MIN_SHARE


@dataclass(frozen=True)
class BlocksConfig(ConfigBase):
    """A world-space scene cut into A x B overlapping blocks, each an rbf run, blended into one (``blocks.blend``)."""

    DEFAULT_SECONDS: ClassVar[float] = 600.0  # in all, split evenly over the blocks
    SHAPE_OPTIONS: ClassVar[tuple[str, ...]] = ("grid", "overlap", "min_share", "train")

    grid: str = option("2x2", "blocks along the wider and the narrower horizontal axis, AxB")
    overlap: float = option(0.15, "how far each block's box reaches past its cell, as a share of the cell's side "
                                  "(neighbours share twice that)", low=0.0, high=0.5, low_open=True)
    min_share: float = option(MIN_SHARE, "a camera trains every block that fills at least this share of its image",
                              low=0.0, high=1.0, low_open=True)
    train: str = option("together", "together: one optimiser over every block through the blended field (each "
                                     "ray trains the blocks its samples fall in); apart: each block alone on the "
                                     "photos that see it, one after another", choices=("together", "apart"))
    downscale: int = option(1, "downscale the posed images by N (area average)", low=1, high=64)
    test_every: int = option(8, "every Nth image is a test view (formats without a test split)", low=2, high=10**6)

    @classmethod
    def from_dict(cls, d: dict):
        """As saved; parents written before ``train`` existed were trained apart."""
        return super().from_dict({"train": "apart", **(d or {})})
