"""A parent run of blocks, loaded: the blocks' rbf runs (``fieldfit.load``) drawn as one field (``blend``).

The parent's config.json names its blocks by relative paths (``blocks[k].run``: ``blocks/<name>``), with each
block's cell and box and the partition (``axes``, ``edges``, ``margins``); its scene is the whole capture
(``source`` / ``builtin`` with ``config.downscale`` and ``config.test_every``), so its test views are the scene's.
Renders march the blended field through the union grid with the blocks' common step (every block is fitted with
the same step), so a ray that stays inside one cell, away from the overlap bands, gives what that block's own
render gives.
"""

import math

import numpy as np
import torch

from fieldfit.errors import InputError
from fieldfit.model import Occupancy, Rendering
from fieldfit.render.march import MarchConfig, render_rays
from fieldfit.runs import METRICS
from fieldfit.tasks.radiance import camera_rays, eval_background
from fieldfit.tasks.views import SceneModel, export_density_mesh
from fieldfit.trainer import cpu_threads

from .blend import BlendedField, BlockWeights, blocks_grid

GRID_RES = 128  # cells per side of the union grid


def load_blocks(run, config: dict, device) -> list:
    """The blocks' runs (``fieldfit.load``); InputError naming a block that is missing or not finished."""
    from fieldfit.api import load

    out = []
    for b in config["blocks"]:
        path = run.path / b["run"]
        if not (path / METRICS).is_file():
            raise InputError(path, f"block {b['name']} is not fitted yet",
                             "finish it: run the same fieldfit --blocks command again (finished blocks are kept)")
        out.append(load(path, device))
    return out


class BlocksRun(SceneModel):
    """The blended field of a parent run (module doc): renders, test views, videos, points and one mesh."""

    render_modes = ("colour", "depth", "opacity")

    def __init__(self, run, config: dict, device="cpu", scene=None, blocks: list | None = None):
        super().__init__(run, config, device, scene)
        self.blocks = blocks if blocks is not None else load_blocks(run, config, self.device)
        weights = BlockWeights(config["axes"], config["edges"], config["margins"])
        boxes = [np.asarray(b["box"], np.float64) for b in config["blocks"]]
        self.field = BlendedField([b.field for b in self.blocks], [b.grid for b in self.blocks], boxes,
                                  weights).to(self.device)
        self.grid = blocks_grid([b.grid for b in self.blocks], boxes, config["aabb"], GRID_RES, self.device)
        first = self.blocks[0].march
        self.march = MarchConfig(step=min(b.march.step for b in self.blocks), near=first.near, far=first.far,
                                 early_stop=first.early_stop, alpha_thre=first.alpha_thre)

    @property
    def background(self) -> np.ndarray:
        return eval_background(self.scene)

    def march_mode(self) -> str:
        from fieldfit.render.march import march_mode

        return march_mode(self.device, None, self.grid)

    @torch.no_grad()
    def render(self, camera, mode: str = "colour") -> Rendering:
        """The blended field seen from ``camera`` (rays as the blocks' own renders make them)."""
        o, d = camera_rays(self.scene, camera, device=self.device)
        rgb, opacity, depth, n = render_rays(self.field, self.grid, o, d, self.background, self.march, self.device,
                                             mode=self.march_mode())
        h, w = camera.height, camera.width
        opacity = opacity.reshape(h, w)
        t = depth.reshape(h, w) / opacity.clamp_min(1e-10)
        return Rendering(rgb.reshape(h, w, 3), opacity, torch.where(opacity > 0, t, torch.full_like(t, float("nan"))),
                         n)

    def mesh_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The union of the blocks' mesh boxes, inside the scene box."""
        boxes = np.asarray([np.stack(b.mesh_box()) for b in self.blocks])
        aabb = np.asarray(self.config["aabb"], np.float64)
        return np.maximum(boxes[:, 0].min(0), aabb[0]), np.minimum(boxes[:, 1].max(0), aabb[1])

    def mesh_threshold(self) -> float:
        """Density where one marching step has opacity 1/2 (the blocks' rule, at their common step)."""
        return math.log(2.0) / self.march.step

    def export_mesh(self, path, resolution: int | None = None) -> dict:
        """One watertight coloured mesh of the blended density over the union of the blocks (module doc)."""
        lo, hi = self.mesh_box()
        res = int(resolution or self.blocks[0].cfg.resolution)
        with cpu_threads(self.run, self.device):
            return export_density_mesh(self.field.density, lambda x, d: self.field(x, d).rgb, lo, hi,
                                       self.mesh_threshold(), None, path, res, self.device,
                                       occupied_fn=self.grid.occupied)

    def occupancy(self) -> Occupancy:
        """Inside where the blended density exceeds the mesh threshold (for ``export --via bsp``)."""
        lo, hi = self.mesh_box()
        threshold = self.mesh_threshold()

        @torch.no_grad()
        def inside(x):
            x = x.float()
            return self.field.density(x) > threshold

        return Occupancy.of_box(inside, lo, hi, str(self.device))


__all__ = ["BlocksRun", "load_blocks"]
