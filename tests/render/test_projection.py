"""Projection of points into cameras and colour gathering (render/projection.py, SourceViews)."""

import math

import numpy as np
import torch

from fieldfit.render import ndc_rays, pixel_rays
from fieldfit.render.projection import fill_invalid, gather_colours, project
from fieldfit.render.rays import ndc_to_world


def _c2w(angle: float, axis, t) -> torch.Tensor:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    return torch.tensor(np.concatenate([rot, np.asarray(t, np.float64)[:, None]], 1))


FX, FY, CX, CY = 80.0, 90.0, 41.0, 29.5


def test_known_points_land_on_their_pixels():
    c2w = _c2w(0.7, (0.3, 1.0, -0.2), (0.5, -1.0, 2.0))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g, dtype=torch.float64) * torch.tensor([82.0, 59.0])
    z = 0.5 + 5 * torch.rand(200, generator=g, dtype=torch.float64)
    # camera-space points at depth z behind pixel xy (OpenGL: looking along -z, y up), to the world
    cam = torch.stack([(xy[:, 0] - CX) / FX * z, -(xy[:, 1] - CY) / FY * z, -z], -1)
    world = cam @ c2w[:, :3].t() + c2w[:, 3]
    pix, depth = project(world, c2w, FX, FY, CX, CY)
    assert torch.allclose(pix, xy, atol=1e-9)
    assert torch.allclose(depth, z, atol=1e-9)
    # the same through the renderer's own rays: o + t d projects back onto its pixel
    o, d = pixel_rays(xy, FX, FY, CX, CY, c2w)
    pix2, depth2 = project(o + d * 3.0, c2w, FX, FY, CX, CY)
    assert torch.allclose(pix2, xy, atol=1e-9)
    assert (depth2 > 0).all()
    # per-point cameras give the same answer; points behind the camera have depth <= 0
    pix3, _ = project(world, c2w.expand(200, 3, 4), FX, FY, CX, CY)
    assert torch.allclose(pix3, xy, atol=1e-9)
    _, behind = project((c2w[:, 3] + 2.0 * c2w[:, 2])[None], c2w, FX, FY, CX, CY)  # +z is behind an OpenGL camera
    assert behind.item() < 0


def test_ndc_points_map_back_onto_the_world_ray_and_pixel():
    """LLFF: rays mapped to NDC (as radiance_data does: unit NDC directions); a point at NDC
    distance t converted back with ndc_to_world lies on the original ray, at camera depth
    near / (1 - t') (t' the NeRF NDC parameter), and projects onto the ray's pixel."""
    W, H, focal, near = 64, 48, 55.0, 1.0
    c2w = _c2w(0.1, (0.2, 1.0, 0.1), (0.1, -0.05, 0.2))  # a camera close to the reference frame
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(100, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H], dtype=torch.float64)
    o, d = pixel_rays(xy, focal, focal, W / 2, H / 2, c2w)
    on, dn = ndc_rays(o, d, H, W, focal, near)
    tp = 0.9 * torch.rand(100, generator=g, dtype=torch.float64)  # NeRF's NDC parameter t'
    x_ndc = on + tp[:, None] * dn
    world = ndc_to_world(x_ndc, focal, focal, W, H, near)
    assert torch.allclose(-world[:, 2], near / (1 - tp), rtol=1e-9)  # ProNeRF's z = 1 / (1 - t)
    rel = world - o
    assert torch.allclose(torch.cross(rel, d, dim=-1), torch.zeros_like(rel), atol=1e-8)  # on the ray
    pix, depth = project(world, c2w, focal, focal, W / 2, H / 2)
    assert torch.allclose(pix, xy, atol=1e-7)
    assert (depth > 0).all()
    # unit NDC directions (the marching space): the same points at t = t' |d'|
    unit = dn / dn.norm(dim=-1, keepdim=True)
    world_u = ndc_to_world(on + (tp * dn.norm(dim=-1))[:, None] * unit, focal, focal, W, H, near)
    assert torch.allclose(world_u, world, atol=1e-8)


def test_gather_reads_the_chosen_view_bilinearly():
    h, w = 12, 16
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    ramp = torch.stack([xs / w, ys / h, 0.25 + 0 * xs], 0)  # linear in the pixel position
    images = torch.stack([ramp, 1 - ramp], 1)  # [3, 2 views, H, W]
    sizes = torch.tensor([[w, h], [w, h]])
    g = torch.Generator().manual_seed(4)
    xy = torch.rand(300, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0]) + 0.5  # between pixel centres
    view = torch.randint(0, 2, (300,), generator=g)
    col, valid = gather_colours(images, view, xy, sizes, torch.ones(300))
    expect = torch.stack([xy[:, 0] / w, xy[:, 1] / h, torch.full((300,), 0.25)], -1)
    expect = torch.where(view[:, None] == 0, expect, 1 - expect)
    assert valid.all()
    assert torch.allclose(col, expect, atol=1e-5)
    # outside the image or behind the camera: invalid and zero
    bad = torch.tensor([[-3.0, 5.0], [5.0, 40.0], [5.0, 5.0]])
    col, valid = gather_colours(images, torch.zeros(3, dtype=torch.long), bad, sizes, torch.tensor([1.0, 1.0, -1.0]))
    assert not valid.any()
    assert (col == 0).all()


def test_invalid_views_take_the_mean_of_the_valid_ones():
    col = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0], [0, 0, 1.0]]])
    valid = torch.tensor([[True, True, False, False]])
    out = fill_invalid(col, valid)
    assert torch.allclose(out[0, 2], torch.tensor([0.5, 0.5, 0.0]))
    assert torch.allclose(out[0, 3], out[0, 2])
    assert torch.equal(out[0, :2], col[0, :2])
    assert (fill_invalid(col, torch.zeros_like(valid)) == 0).all()
