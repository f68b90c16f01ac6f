"""ProNeRF end to end: the sampler learns where an analytic sphere's surface is; the CLI fits `blocks`."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from fieldfit.fields.base import FieldOutput
from fieldfit.fields.pronerf import RefineNet, SamplerNet
from fieldfit.methods.common import make_adam
from fieldfit.methods.pronerf import DEFAULTS
from fieldfit.methods.pronerf_model import ProNeRFModel, SourceViews
from fieldfit.methods.pronerf_train import Stepper
from fieldfit.methods.radiance_data import PixelStore, frame_rays
from fieldfit.render import RaySamples, composite
from fieldfit.scenes import Frame, Scene
from fieldfit.scenes.procedural import look_at

RADIUS, SIZE, N = 0.6, 24, 8


class SphereField(nn.Module):
    """A textured sphere of radius 0.6 at the origin with a soft (0.02) edge."""

    def density(self, x):
        return 80.0 * torch.sigmoid((RADIUS - x.norm(dim=-1)) / 0.02)

    def forward(self, x, d):
        return FieldOutput(self.density(x), 0.5 + 0.4 * torch.sin(4.0 * x + torch.tensor([0.0, 2.0, 4.0])))


class MemoryScene(Scene):
    """A Scene whose images are arrays (no files): premultiplied colour and alpha."""

    images: dict = None

    def _decode(self, i):
        return self.images[i]


def sphere_scene() -> MemoryScene:
    fov = 0.6
    f = SIZE / (2 * math.tan(fov / 2))
    frames = []
    for k in range(16):
        az, el = 2 * math.pi * k / 16, 0.5 * math.sin(3.0 * k)
        eye = 3.0 * np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        frames.append(Frame(None, SIZE, SIZE, f, f, SIZE / 2, SIZE / 2, look_at(eye)[:3], name=f"v{k}"))
    scene = MemoryScene("sphere", ".", "builtin", frames, {"train": [k for k in range(16) if k % 4],
                                                          "test": [k for k in range(16) if k % 4 == 0]},
                        np.array([[-1.0] * 3, [1.0] * 3]), 1.5, 4.5, has_alpha=True)
    field = SphereField()
    scene.images = {}
    for i, fr in enumerate(frames):  # dense reference renders of the analytic field
        o, d = frame_rays(scene, fr)
        t = torch.linspace(1.5, 4.5, 513)
        s = RaySamples.from_batched(t[:-1].expand(o.shape[0], 512), t[1:].expand(o.shape[0], 512))
        out = field(s.positions(o, d), d[s.ray_indices])
        res = composite(out.density, out.rgb, s)
        scene.images[i] = (res.rgb.reshape(SIZE, SIZE, 3).numpy(), res.opacity.reshape(SIZE, SIZE).numpy())
    return scene


def surface_t(o, d):
    """[R] first hit of the sphere along unit rays (nan on a miss)."""
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - RADIUS**2)
    return torch.where(disc > 0, -b - torch.sqrt(disc.clamp_min(0)), torch.full_like(b, math.nan))


def near_surface_fraction(model, scene) -> float:
    """Fraction of the final samples within 0.1 of the surface, over test rays that hit the sphere."""
    fracs = []
    with torch.no_grad():
        for i in scene.split("test"):
            o, d = frame_rays(scene, scene.frames[i])
            ts = surface_t(o, d)
            hit = torch.isfinite(ts)
            views = torch.tensor(model.sources.nearest(scene.frames[i].c2w[:, 3], 4))
            _, prop = model.render(o[hit], d[hit], torch.zeros(3), views)
            fracs.append(((prop["t"] - ts[hit, None]).abs() < 0.1).float().mean().item())
    return float(np.mean(fracs))


def test_sampler_concentrates_samples_at_the_sphere_surface():
    torch.manual_seed(0)
    scene = sphere_scene()
    model = ProNeRFModel(SphereField(), SamplerNet(6, N), RefineNet(6, N, 4), scene.aabb, 1.5, 4.5, pe_freqs=0)
    train = scene.split("train")
    model.sources = SourceViews(scene, train)
    before = near_surface_fraction(model, scene)
    opt = make_adam([{"params": list(model.sampler.parameters()) + list(model.refiner.parameters()), "lr": 3e-3}])
    extra = {**DEFAULTS, "batch": 256, "explore_batch": 256, "stage1": 1.0}
    stepper = Stepper(model, opt, PixelStore(scene, train), [SIZE * SIZE] * len(train), extra, np.zeros(3), "cpu", 0)
    steps = 300
    for i in range(steps):
        stepper(i, i / steps)
    after = near_surface_fraction(model, scene)
    print(f"near-surface fraction: {before:.3f} untrained, {after:.3f} after {steps} steps")
    # uniform samples over a ray's ~2 units inside the box: about 0.2 / 2 of them near the surface;
    # on these unseen test rays a trained sampler puts about 0.3 there
    assert before < 0.12, before
    assert after > 0.22 and after > 2.5 * before, (before, after)


class NaNField(SphereField):
    def forward(self, x, d):
        out = super().forward(x, d)
        return FieldOutput(out.density * float("nan"), out.rgb)


def test_divergence_stops_with_a_message_and_leaves_the_weights_finite():
    scene = sphere_scene()
    model = ProNeRFModel(NaNField(), SamplerNet(6, N), RefineNet(6, N, 4), scene.aabb, 1.5, 4.5)
    train = scene.split("train")
    model.sources = SourceViews(scene, train)
    opt = make_adam([{"params": list(model.sampler.parameters()) + list(model.refiner.parameters()), "lr": 3e-3}])
    extra = {**DEFAULTS, "batch": 64, "explore_batch": 64, "stage1": 1.0, "max_bad_steps": 5}
    stepper = Stepper(model, opt, PixelStore(scene, train), [SIZE * SIZE] * len(train), extra, np.zeros(3), "cpu", 0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        for i in range(5):
            stepper(2 * i, 0.0)  # exploitation steps: the NaN reaches every gradient
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


DOWNSCALE = 2


@pytest.fixture(scope="module")
def blocks_run(tmp_path_factory):
    from fieldfit.cli import main

    out = tmp_path_factory.mktemp("pronerf") / "blocks"
    rc = main(["blocks", "--method", "pronerf", "--steps", "80", "--downscale", str(DOWNSCALE), "--levels", "2",
               "--max-res", "32", "--samples", "8", "--out", str(out)])
    assert rc == 0
    return out


def test_cli_fit_on_blocks(blocks_run):
    from fieldfit.scenes import load_scene
    from fieldfit.scenes.builtin import blocks_scene_dir

    m = json.loads((blocks_run / "metrics.json").read_text())
    scene = load_scene(blocks_scene_dir(), downscale=DOWNSCALE)
    assert m["samples_per_ray"] == 8 and m["render_ms_per_frame"] > 0 and m["test"]["views"] == len(scene.split("test"))
    mean = np.mean([scene.image(i).reshape(-1, 3) for i in scene.split("train")], axis=(0, 1))
    base = np.mean([-10 * np.log10(np.mean((scene.image(i) - mean) ** 2)) for i in scene.split("test")])
    assert m["test"]["psnr"] > base + 3.0, (m["test"]["psnr"], base)
    cfg = json.loads((blocks_run / "config.json").read_text())
    # the source images are referenced, not copied
    assert cfg["source"] == "blocks" and len(cfg["source_views"]["images"]) == len(scene.split("train"))
    copied = [p for p in blocks_run.rglob("*.png") if p.parent.name != "renders" and p.name != "curve.png"]
    assert not copied
    assert len(list((blocks_run / "renders").glob("test_*.png"))) == len(scene.split("test"))


def test_eval_and_viewer_on_the_run(blocks_run):
    from fieldfit.cli import main
    from fieldfit.runs import Run
    from fieldfit.viewer.registry import open_view

    before = json.loads((blocks_run / "metrics.json").read_text())["test"]["psnr"]
    assert main(["eval", str(blocks_run), "--device", "cpu"]) == 0
    after = json.loads((blocks_run / "metrics.json").read_text())["test"]["psnr"]
    assert abs(after - before) < 1e-3  # the checkpoint renders what the fit rendered
    view = open_view(Run.open(blocks_run))
    cam = view.home(4 / 3)
    for mode in view.modes:
        img = view.render(cam, 20, 15, mode)
        assert img.shape == (15, 20, 3) and img.dtype == np.uint8
    assert img.std() > 0


def test_bad_samples_is_an_input_error(tmp_path, capsys):
    from fieldfit.cli import main

    assert main(["blocks", "--method", "pronerf", "--samples", "1", "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert "--samples 1" in capsys.readouterr().err
