"""fieldfit.tasks: the radiance task's pixels and rays, NDC meshes back to the world, video cameras."""

import math

import numpy as np
import pytest
import torch

from fieldfit.optim import Passes
from fieldfit.render import ndc_rays
from fieldfit.render.paths import orbit_poses, spiral_poses
from fieldfit.render.rays import NDCParams
from fieldfit.scenes import load_scene
from fieldfit.scenes.builtin import blocks_scene_dir
from fieldfit.tasks.radiance import PixelStore, camera_rays, premultiplied
from fieldfit.tasks.views import ndc_to_world, video_cameras


def test_pixel_store_keeps_premultiplied_colour_and_rays():
    scene = load_scene(blocks_scene_dir(), downscale=4)
    i = scene.split("train")[0]
    store = PixelStore(scene, [i])
    f = scene.frames[i].camera
    assert store.count == f.width * f.height
    batch = store.take(np.arange(store.count))
    white = torch.ones(3)
    np.testing.assert_allclose(batch.target(white).numpy().reshape(f.height, f.width, 3), scene.image(i), atol=1e-6)
    rgb, alpha = premultiplied(scene, i)
    assert (rgb <= alpha[..., None] + 1e-6).all()  # premultiplied colours never exceed alpha
    o, d = camera_rays(scene, f)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(len(d)))
    torch.testing.assert_close(batch.dirs, d)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_rays_in_passes_visit_every_pixel_once_a_pass(device):
    scene = load_scene(blocks_scene_dir(), downscale=4)
    store = PixelStore(scene, scene.split("train")[:2])
    assert store.keep_on(device)
    every = store.take(np.arange(store.count))
    key = {tuple(r): k for k, r in enumerate(torch.cat([every.origins, every.dirs], 1).cpu().tolist())}

    def pixels(batch) -> list[int]:  # which stored pixels a batch holds, found from their rays
        return [key[tuple(r)] for r in torch.cat([batch.origins, batch.dirs], 1).cpu().tolist()]

    assert len(key) == store.count  # every pixel's ray is its own
    passes = Passes(store.count, store.device, torch.Generator(device=store.device).manual_seed(0))

    def draw(n):  # as the radiance fit's stepper draws: the order where the pixels live, taken there
        return store.take(passes.next(n))

    n = store.count // 3 + 1  # three batches do not fit in a pass: the third starts the next
    first = pixels(draw(n)) + pixels(draw(n))
    assert len(set(first)) == 2 * n  # none twice in a pass
    third = pixels(draw(n))
    assert len(set(third)) == n
    assert set(third) != set(first[:n])
    assert sorted(pixels(draw(10 * store.count))) == list(range(store.count))  # at most the whole store
    batch = draw(7)
    assert batch.rgb.device.type == device
    assert batch.image.shape == (7,)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_pixel_store_batches_are_the_drawn_pixels_wherever_they_live(device, monkeypatch):
    scene = load_scene(blocks_scene_dir(), downscale=4)
    store = PixelStore(scene, scene.split("train")[:2])
    arrays = (store.origins, store.dirs, store.rgb, store.alpha, store.image)
    assert store.nbytes == sum(a.nbytes for a in arrays)
    assert store.device.type == "cpu"
    if device == "cuda":  # a GPU without room keeps them on the host
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (store.nbytes, 10 * store.nbytes))
        assert not store.keep_on(device)
        assert store.device.type == "cpu"
        monkeypatch.undo()
    assert store.keep_on(device)
    assert store.device.type == device
    idx = np.random.default_rng(5).integers(0, store.count, 1000)  # numpy indices, repeats allowed
    batch = store.take(idx)
    for got, want in zip((batch.origins, batch.dirs, batch.rgb, batch.alpha, batch.image), arrays, strict=True):
        assert got.device.type == device
        np.testing.assert_array_equal(got.cpu().numpy(), want[idx])
    assert store.take(np.zeros(0, np.int64)).rgb.shape == (0, 3)
    if device == "cpu":  # (on a GPU an index out of range is a device-side assert, fatal to the process)
        with pytest.raises((IndexError, RuntimeError)):
            store.take(np.array([store.count]))


def test_ndc_points_map_back_to_the_world():
    class P:  # the scene fields ndc_to_world reads
        ndc_params = NDCParams(400.0, 400.0, 500, 300, 1.0)
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
    assert np.abs(cross).max() < 1e-9
    assert (world[:, 2] < -1.0).all()


def test_camera_paths_look_at_the_scene():
    scene = load_scene(blocks_scene_dir(), downscale=4)
    for poses in (orbit_poses(scene.cameras(), 6), spiral_poses(scene.cameras(), 6)):
        assert len(poses) == 6
        for c2w in poses:
            np.testing.assert_allclose(c2w[:, :3].T @ c2w[:, :3], np.eye(3), atol=1e-9)
    # the orbit looks at the origin (the blocks cameras do) from the cameras' distance
    for c2w in orbit_poses(scene.cameras(), 6):
        assert np.linalg.norm(c2w[:, 3]) == pytest.approx(4.0, rel=0.05)
        p = c2w[:, :3].T @ (-c2w[:, 3])
        assert p[2] < 0
        assert math.hypot(p[0], p[1]) < 1e-6 * abs(p[2]) + 1e-6
    assert video_cameras(scene, "test", 0) == scene.cameras("test")
    orbit = video_cameras(scene, "orbit", 5)
    ref = scene.frames[scene.split("test")[0]].camera
    assert len(orbit) == 5
    assert all((c.width, c.fx, c.distortion) == (ref.width, ref.fx, None) for c in orbit)
