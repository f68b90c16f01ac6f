"""fieldfit.render: the one renderer every method and the viewer draw through.

- ``camera``: the one camera type (pose, intrinsics, distortion), look-at helpers, frustum bounds;
- ``rays``: rays of pixels, NDC (``NDCParams``), ray-box intersection; ``lens``: lens distortion models;
- ``samples``: packed ray samples (``RaySamples``), the one type every sampler returns;
- ``estimators`` (occupancy grid, uniform) and ``samplers`` (ProNeRF's projection-aware sampler);
- ``termination``: the one early-termination rule; ``march``: the packed / rounds / fused marchers;
- ``volrend``: compositing; ``losses``: regularisers on packed weights;
- ``raster``: the K-buffer triangle rasterizer (DNMP and the viewer's mesh views);
- ``paths`` (orbit, spiral) and ``video`` (writing frames); ``metrics`` (PSNR, SSIM, LPIPS).

It takes fields through the contracts of ``fieldfit.fields.base`` and knows nothing of scenes or methods.
"""

from .camera import Camera, frusta_bounds, look_at, look_at_centre, mean_up
from .estimators import OccupancyGrid, UniformSampler
from .lens import distort, undistort
from .metrics import load_lpips, lpips_fn, psnr, ssim
from .rays import NDCParams, image_rays, ndc_rays, ndc_to_world, pixel_rays, ray_aabb
from .samples import RaySamples
from .volrend import RenderOutput, composite, composite_alpha

__all__ = [
    "Camera",
    "NDCParams",
    "OccupancyGrid",
    "RaySamples",
    "RenderOutput",
    "UniformSampler",
    "composite",
    "composite_alpha",
    "distort",
    "frusta_bounds",
    "image_rays",
    "look_at",
    "look_at_centre",
    "load_lpips",
    "lpips_fn",
    "mean_up",
    "ndc_rays",
    "ndc_to_world",
    "pixel_rays",
    "psnr",
    "ray_aabb",
    "ssim",
    "undistort",
]
