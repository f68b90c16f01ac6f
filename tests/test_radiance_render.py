"""fieldfit.methods.radiance_*: marching with early termination, distortion loss, rays, camera paths."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fieldfit.fields.base import FieldOutput
from fieldfit.methods.radiance_data import PixelStore, frame_rays, premultiplied
from fieldfit.methods.radiance_eval import ndc_to_world
from fieldfit.methods.radiance_paths import orbit_poses, path_frames, spiral_poses
from fieldfit.methods.radiance_render import (MarchConfig, RadianceModel, distortion_loss, march_mode,
                                               render_rays)
from fieldfit.render import OccupancyGrid, RaySamples, ndc_rays
from fieldfit.scenes import load_scene
from fieldfit.scenes.builtin import blocks_scene_dir

CENTRE = torch.tensor([0.1, -0.1, 0.05])


class Sphere(nn.Module):
    """Analytic radiance field: a dense red ball of radius 0.4 (a soft shell of density)."""

    def density(self, x):
        return 200.0 * torch.sigmoid(200.0 * (0.4 - (x - CENTRE).norm(dim=-1)))

    def forward(self, x, d):
        return FieldOutput(self.density(x), torch.tensor([1.0, 0.0, 0.0]).expand(x.shape[0], 3))


def sphere_model(res=32):
    model = RadianceModel(Sphere(), OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=res, dilation=1))
    model.update_grid(0, 0.02)
    return model


def rays(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.tensor([0.0, 0.0, 3.0]).expand(n, 3).contiguous()
    target = (torch.rand(n, 3, generator=g) - 0.5) * 1.4
    d = target - o
    return o, d / d.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("grow", [1, 2])  # rounds of a fixed size (CPU) or doubling (GPU)
@pytest.mark.parametrize("early_stop,alpha_thre", [(1e-4, 0.0), (1e-3, 1e-3), (0.0, 1e-2)])
def test_march_matches_the_estimators_early_termination(early_stop, alpha_thre, grow):
    model = sphere_model()
    o, d = rays()
    cfg = MarchConfig(step=0.01, early_stop=early_stop, alpha_thre=alpha_thre)
    near, far = torch.zeros(len(o)), torch.full((len(o),), 10.0)
    cand = model.grid.sample(o, d, near, far, cfg.step)
    ours = model._terminate(o, d, cand, cfg, per_round=4, grow=grow)  # several rounds per ray
    ref = model.grid.sample(o, d, near, far, cfg.step, density_fn=model.field.density,
                            early_stop_eps=early_stop, alpha_thre=alpha_thre)
    torch.testing.assert_close(ours.t_starts, ref.t_starts)
    torch.testing.assert_close(ours.ray_indices, ref.ray_indices)
    assert ours.n_samples < (0.5 if early_stop > 0 else 1.0) * cand.n_samples
    # march = the same, on the box of the occupied cells
    assert model.march(o, d, cfg, stratified=False).n_samples == pytest.approx(ours.n_samples, rel=0.05)


def test_render_sees_the_ball_and_skips_empty_space():
    model = sphere_model()
    o, d = rays()
    rgb, opacity, n = render_rays(model, o, d, torch.ones(3), MarchConfig(step=0.01), "cpu")
    oc = o - CENTRE
    b = (oc * d).sum(-1)
    hit = (b * b - (oc * oc).sum(-1) + 0.36**2) > 0  # well inside the radius 0.4
    miss = (b * b - (oc * oc).sum(-1) + 0.45**2) < 0  # well outside
    assert bool((opacity[hit] > 0.99).all()) and bool((opacity[miss] < 0.01).all())
    torch.testing.assert_close(rgb[hit], torch.tensor([1.0, 0.0, 0.0]).expand(int(hit.sum()), 3), atol=0.02, rtol=0)
    assert n / len(o) < 40  # a ray crossing the box would take 200 steps of 0.01


class Cloud(Sphere):
    """A translucent ball with structure: density and colour vary along every ray."""

    def density(self, x):
        r = (x - CENTRE).norm(dim=-1)
        return 8.0 * (1.5 + torch.sin(9.0 * x).sum(-1)).clamp_min(0) * (r < 0.5)

    def forward(self, x, d):
        return FieldOutput(self.density(x), torch.sigmoid(4.0 * x + d))


@pytest.mark.parametrize("first", [1, 8])  # one sample a round (many rounds) or 8, 16, 16, ...
@pytest.mark.parametrize("early_stop,alpha_thre", [(1e-4, 0.0), (1e-2, 2e-2), (0.0, 0.0)])
def test_render_rounds_matches_render(early_stop, alpha_thre, first):
    model = RadianceModel(Cloud(), OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=24, dilation=0))
    model.update_grid(0, 0.02)
    assert 0.02 < model.grid.occupied_fraction() < 0.5  # carved: rounds skip empty cells
    o, d = rays(400)
    cfg = MarchConfig(step=0.01, early_stop=early_stop, alpha_thre=alpha_thre)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref, samples = model.render(o, d, bg, cfg)
    most = 16 if first > 1 else 1  # 8, 16, 16, ... or one sample every round
    rgb, opacity, depth, evals = model.render_rounds(o, d, bg, cfg, first=first, most=most)
    assert 0.05 < float(ref.opacity.mean()) < 0.95 and float(ref.opacity.max()) > 0.99  # translucent and opaque rays
    torch.testing.assert_close(rgb, ref.rgb, atol=2e-5, rtol=0)
    torch.testing.assert_close(opacity, ref.opacity, atol=2e-5, rtol=0)
    torch.testing.assert_close(depth, ref.depth, atol=1e-4, rtol=0)
    candidates = model.march(o, d, MarchConfig(step=cfg.step, early_stop=0.0), stratified=False).n_samples
    assert samples.n_samples <= evals <= candidates
    if first == 1 and alpha_thre == 0:  # one sample a round: none evaluated past an opaque point
        assert evals == samples.n_samples


def test_render_modes_give_one_image(monkeypatch):
    model = sphere_model()
    o, d = rays()
    cfg = MarchConfig(step=0.01, early_stop=1e-3, alpha_thre=1e-3)
    a = render_rays(model, o, d, torch.ones(3), cfg, "cpu", chunk=128, mode="packed")
    b = render_rays(model, o, d, torch.ones(3), cfg, "cpu", chunk=128, mode="rounds")
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
    assert march_mode("cpu") == "rounds" and march_mode("cpu", model) == "rounds"
    monkeypatch.setenv("FIELDFIT_MARCH", "rounds")
    assert march_mode("cuda") == "rounds"
    monkeypatch.setenv("FIELDFIT_MARCH", "fast")
    with pytest.raises(ValueError, match="FIELDFIT_MARCH"):
        march_mode("cpu")


def test_distortion_loss_matches_a_naive_double_loop():
    g = torch.Generator().manual_seed(0)
    ts = torch.sort(torch.rand(3, 5, generator=g) * 4, dim=-1).values
    te = ts + 0.1 + torch.rand(3, 5, generator=g) * 0.2
    keep = torch.rand(3, 5, generator=g) > 0.3
    s = RaySamples.from_batched(ts, te, keep)
    w = torch.rand(s.n_samples, generator=g, dtype=torch.float64).requires_grad_(True)
    total = 0.0
    for r in range(3):
        sel = s.ray_indices == r
        ww, m, dd = w[sel], s.t_mids[sel].double(), s.deltas[sel].double()
        total = total + (ww[:, None] * ww[None] * (m[:, None] - m[None]).abs()).sum() + (ww * ww * dd).sum() / 3
    torch.testing.assert_close(distortion_loss(w, s), total / 3)
    distortion_loss(w, s).backward()
    assert torch.isfinite(w.grad).all()
    assert float(distortion_loss(torch.zeros(0), RaySamples.empty(2))) == 0.0


def test_pixel_store_keeps_premultiplied_colour_and_rays():
    scene = load_scene(blocks_scene_dir(), downscale=4)
    i = scene.split("train")[0]
    store = PixelStore(scene, [i])
    f = scene.frames[i]
    assert store.count == f.width * f.height
    batch = store.take(np.arange(store.count))
    white = torch.ones(3)
    np.testing.assert_allclose(batch.target(white).numpy().reshape(f.height, f.width, 3), scene.image(i), atol=1e-6)
    rgb, alpha = premultiplied(scene, i)
    assert (rgb <= alpha[..., None] + 1e-6).all()  # premultiplied colours never exceed alpha
    o, d = frame_rays(scene, f)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(len(d)))
    torch.testing.assert_close(batch.dirs, d)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_pixel_store_batches_are_the_drawn_pixels_wherever_they_live(device, monkeypatch):
    scene = load_scene(blocks_scene_dir(), downscale=4)
    store = PixelStore(scene, scene.split("train")[:2])
    arrays = (store.origins, store.dirs, store.rgb, store.alpha)
    assert store.nbytes == sum(a.nbytes for a in arrays) and store.device.type == "cpu"
    if device == "cuda":  # a GPU without room keeps them on the host
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (store.nbytes, 10 * store.nbytes))
        assert not store.keep_on(device) and store.device.type == "cpu"
        monkeypatch.undo()
    assert store.keep_on(device) and store.device.type == device
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    batch = store.sample(1000, a)
    idx = b.integers(0, store.count, 1000)  # the same draws as before the store could move: same batches
    for got, want in zip((batch.origins, batch.dirs, batch.rgb, batch.alpha), arrays):
        assert got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), want[idx])
    assert store.take(np.zeros(0, np.int64)).rgb.shape == (0, 3)
    if device == "cpu":  # (on a GPU an index out of range is a device-side assert, fatal to the process)
        with pytest.raises((IndexError, RuntimeError)):
            store.take(np.array([store.count]))


def test_ndc_points_map_back_to_the_world():
    class P:  # the scene fields ndc_to_world reads
        class ndc_params:
            fx, fy, width, height, near_plane = 400.0, 400.0, 500, 300, 1.0
        metadata = {"bounds": np.array([[1.5, 10.0]])}

    o = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64).expand(4, 3)
    d = torch.tensor([[0.05, 0.02, -1.0], [0.0, 0.1, -1.0], [-0.1, 0.0, -1.0], [0.02, -0.03, -1.0]],
                     dtype=torch.float64)
    o_ndc, d_ndc = ndc_rays(o, d, 300, 500, 400.0, 1.0)
    t = torch.tensor([0.2, 0.5, 0.7, 0.9], dtype=torch.float64)[:, None]
    world = ndc_to_world((o_ndc + t * d_ndc).numpy(), P)
    # the mapped points lie on the original rays, in front of the near plane
    rel = world - o.numpy()
    cross = np.cross(rel, d.numpy())
    assert np.abs(cross).max() < 1e-9 and (world[:, 2] < -1.0).all()


def test_camera_paths_look_at_the_scene():
    scene = load_scene(blocks_scene_dir(), downscale=4)
    for poses in (orbit_poses(scene, 6), spiral_poses(scene, 6)):
        assert len(poses) == 6
        for c2w in poses:
            np.testing.assert_allclose(c2w[:, :3].T @ c2w[:, :3], np.eye(3), atol=1e-9)
    # the orbit looks at the origin (the blocks cameras do) from the cameras' distance
    for c2w in orbit_poses(scene, 6):
        assert np.linalg.norm(c2w[:, 3]) == pytest.approx(4.0, rel=0.05)
        p = c2w[:, :3].T @ (-c2w[:, 3])
        assert p[2] < 0 and math.hypot(p[0], p[1]) < 1e-6 * abs(p[2]) + 1e-6
    frames = path_frames(scene, "test", 0)
    assert [f.name for f in frames] == [scene.frames[i].name for i in scene.split("test")]
