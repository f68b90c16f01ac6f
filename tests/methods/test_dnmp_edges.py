"""DNMP outline supersampling (methods/dnmp/edges.py): which pixels, their sub-sample fragments, and shading them."""

import numpy as np
import pytest
import torch

from fieldfit.fields.dnmp import PrimitiveLevel
from fieldfit.methods.dnmp.autoencoder import train_autoencoder


@pytest.fixture(scope="module")
def scene_model():
    from fieldfit.methods.dnmp.model import DNMPModel
    from fieldfit.render.camera import Camera

    _, dec, code = train_autoencoder(steps=20, batch=32, seed=0)
    g = torch.Generator().manual_seed(5)
    fine = PrimitiveLevel(torch.rand(30, 3, generator=g) - 0.5, 0.25, code, feat_dim=4)
    coarse = PrimitiveLevel(torch.rand(6, 3, generator=g) - 0.5, 0.5, code, feat_dim=4)
    for lv in (fine, coarse):
        with torch.no_grad():
            lv.latents.add_(0.3 * torch.randn(lv.latents.shape, generator=g))
            lv.features.normal_(generator=g)
    model = DNMPModel(dec, [fine, coarse], [3, 2], 4, 8)
    model.freeze()
    c2w = torch.tensor([[1.0, 0, 0, 0.1], [0, 1, 0, -0.05], [0, 0, 1, 4.0]], dtype=torch.float64)
    return model, Camera(c2w, 50.0, 50.0, 20.5, 19.0, 41, 37)


def test_edge_pixels_ring_the_outline():
    from fieldfit.methods.dnmp.edges import edge_pixels

    hit = torch.zeros(7, 8, dtype=torch.bool)
    hit[2:4, 3:6] = True
    got = torch.zeros(7 * 8, dtype=torch.bool)
    got[edge_pixels(hit.reshape(-1), 8, 7)] = True
    want = torch.zeros(7, 8, dtype=torch.bool)
    want[1:5, 2:7] = True  # the block grown by one pixel: both sides of its outline
    assert torch.equal(got.reshape(7, 8), want)
    assert edge_pixels(torch.ones(56, dtype=torch.bool), 8, 7).numel() == 0


def test_subpixel_fragments_match_a_full_double_resolution_raster(scene_model):
    from fieldfit.methods.dnmp.edges import edge_pixels, rasterize_subpixels
    from fieldfit.methods.dnmp.model import rasterize_levels
    from fieldfit.render.camera import Camera

    model, cam = scene_model
    hit = (rasterize_levels(model, cam).face >= 0).any(1)
    edges = edge_pixels(hit, cam.width, cam.height)
    assert 20 < edges.numel() < hit.numel() // 2
    got = rasterize_subpixels(model, cam, edges)
    big = Camera(cam.c2w, 2 * cam.fx, 2 * cam.fy, 2 * cam.cx, 2 * cam.cy, 2 * cam.width, 2 * cam.height)
    ref = rasterize_levels(model, big)  # every face, every sample of the doubled image
    x, y = edges % cam.width, edges // cam.width
    rows = torch.stack([(2 * y + dy) * 2 * cam.width + 2 * x + dx for dy in (0, 1) for dx in (0, 1)], -1).reshape(-1)
    assert torch.equal(got.face, ref.face[rows])
    torch.testing.assert_close(got.bary, ref.bary[rows])
    torch.testing.assert_close(got.depth, ref.depth[rows])
    covered = (got.face >= 0).any(1).reshape(-1, 4).float().mean(1)
    assert ((covered > 0) & (covered < 1)).any()  # partly covered pixels exist: the point of the exercise


def test_shading_averages_each_pixels_samples(scene_model):
    from fieldfit.methods.dnmp.edges import SUB, edge_pixels, rasterize_subpixels
    from fieldfit.methods.dnmp.model import LayerBatch, rasterize_levels, shade
    from fieldfit.methods.dnmp.render import render_image

    model, cam = scene_model
    hit = (rasterize_levels(model, cam).face >= 0).any(1)
    edges = edge_pixels(hit, cam.width, cam.height)
    frags = rasterize_subpixels(model, cam, edges)
    dirs = torch.nn.functional.normalize(torch.randn(cam.width * cam.height, 3), dim=-1)
    bg = torch.tensor([0.3, 0.6, 0.1])
    assert torch.equal(frags.owner, torch.arange(edges.numel()).repeat_interleave(SUB))
    rows = LayerBatch(frags.face, frags.bary, frags.depth)  # the same samples, each its own pixel
    per_row, op_row = shade(model, rows, dirs[edges].repeat_interleave(SUB, 0), bg)
    avg, op = shade(model, frags, dirs[edges], bg)
    torch.testing.assert_close(avg, per_row.reshape(-1, SUB, 3).mean(1))
    torch.testing.assert_close(op, op_row.reshape(-1, SUB).mean(1))
    plain, _ = render_image(model, cam, dirs, bg)
    model.antialias = True
    try:
        smooth, _ = render_image(model, cam, dirs, bg)
    finally:
        model.antialias = False
    inner = torch.ones(dirs.shape[0], dtype=torch.bool)
    inner[edges] = False
    torch.testing.assert_close(smooth[inner], plain[inner])  # only outline pixels change
    torch.testing.assert_close(smooth[edges], avg.clamp(0, 1))
    assert (smooth[edges] - plain[edges]).abs().max() > 1e-3


def test_cache_lookup_gives_the_rendered_colours(scene_model, monkeypatch):
    """Training pixels drawn through the fragment cache shade exactly as render_image draws them."""
    from types import SimpleNamespace

    from fieldfit.methods.dnmp import train as dnmp_train
    from fieldfit.methods.dnmp.model import shade
    from fieldfit.methods.dnmp.render import render_image

    model, cam = scene_model
    frame = SimpleNamespace(camera=cam)
    scene = SimpleNamespace(frames=[frame, frame])
    dirs = torch.nn.functional.normalize(torch.randn(cam.width * cam.height, 3), dim=-1)
    bg = torch.tensor([0.3, 0.6, 0.1])
    model.antialias = True
    try:
        cache = dnmp_train.FragmentCache(model, scene, [0, 1])
        want, _ = render_image(model, cam, dirs, bg)
        pixels = np.random.default_rng(0).integers(0, 2 * cam.width * cam.height, 500)
        layers = cache.lookup(pixels)
        rgb, _ = shade(model, layers, dirs[torch.from_numpy(pixels % (cam.width * cam.height))], bg)
    finally:
        model.antialias = False
    assert layers.owner is not None
    assert layers.face.shape[0] > 500
    torch.testing.assert_close(rgb.clamp(0, 1), want[torch.from_numpy(pixels % (cam.width * cam.height))],
                               atol=2e-3, rtol=0)  # the cache keeps barycentrics in float16


def test_on_off_options_are_checked_before_any_work(tmp_path, capsys):
    from fieldfit.cli import main
    from fieldfit.config import config_flags
    from fieldfit.errors import InputError
    from fieldfit.methods.dnmp.config import DNMPConfig

    flags = config_flags(DNMPConfig)
    assert flags["rim"].parse("on")
    assert flags["rim"].parse(True)
    assert not flags["antialias"].parse("off")
    with pytest.raises(InputError, match="--antialias"):
        flags["antialias"].parse("maybe")
    out = tmp_path / "run"
    assert main(["blocks", "--method", "dnmp", "--antialias", "maybe", "--steps", "5", "--out", str(out)]) != 0
    err = capsys.readouterr()
    assert "--antialias" in err.out + err.err
    assert "on or off" in err.out + err.err
    assert not (out / "checkpoint.safetensors").exists()
