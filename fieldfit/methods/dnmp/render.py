"""Whole DNMP frames: every pixel of a camera rasterized, shaded and composited; with ``antialias``, the pixels
along outlines supersampled 2x2 (``edges``)."""

import torch

from fieldfit.render.camera import Camera

from .edges import edge_pixels, rasterize_subpixels
from .model import DNMPModel, LayerBatch, rasterize_levels, shade


@torch.no_grad()
def render_image(model: DNMPModel, cam: Camera, dirs: torch.Tensor, background, chunk: int = 1 << 15):
    """(rgb [H*W,3] clamped, opacity [H*W]) of a whole image; ``dirs`` [H*W,3] are its unit ray directions.

    ``background`` is a colour [3] (numpy or tensor), or None for the model's background MLP. Everything runs on
    the model's device (``dirs`` and ``background`` are moved there); the results are on it too.
    """
    dev = model.device
    dirs = dirs.to(dev)
    layers = rasterize_levels(model, cam)
    n = dirs.shape[0]
    hit = (layers.face >= 0).any(1)
    bg = model.background(dirs) if background is None else \
        torch.as_tensor(background, device=dev).float().expand(n, 3)
    rgb, opacity = bg.clone(), torch.zeros(n, device=dev)
    edges = None
    if model.antialias:
        edges = edge_pixels(hit, cam.width, cam.height)
        hit[edges] = False
    idx = hit.nonzero().squeeze(-1)
    for s in range(0, idx.numel(), chunk):
        i = idx[s:s + chunk]
        sub = LayerBatch(layers.face[i], layers.bary[i].float(), layers.depth[i].float())
        rgb[i], opacity[i] = shade(model, sub, dirs[i], bg[i])
    if edges is not None and edges.numel():
        rgb[edges], opacity[edges] = shade(model, rasterize_subpixels(model, cam, edges), dirs[edges], bg[edges])
    return rgb.clamp(0, 1), opacity


__all__ = ["render_image"]
