"""fieldfit.render: cameras and rays, samplers/estimators, volume compositing, image metrics.

Takes plain tensors and knows nothing of the field it draws or of scenes.
"""

from .estimators import OccupancyGrid, UniformSampler
from .metrics import lpips_fn, psnr, ssim
from .rays import distort, image_rays, ndc_rays, pixel_rays, ray_aabb, undistort
from .samples import RaySamples
from .volrend import RenderOutput, composite, composite_alpha

__all__ = [
    "OccupancyGrid",
    "RaySamples",
    "RenderOutput",
    "UniformSampler",
    "composite",
    "composite_alpha",
    "distort",
    "image_rays",
    "lpips_fn",
    "ndc_rays",
    "pixel_rays",
    "psnr",
    "ray_aabb",
    "ssim",
    "undistort",
]
