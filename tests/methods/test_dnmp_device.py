"""dnmp on any device (methods/dnmp): the Triton kernels give the torch reference's fragments and colours along the
whole rendering and training path, every tensor dnmp creates is made on a device it names, and a CUDA fit trains and
renders on the GPU."""

import ast
import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import fieldfit.methods.dnmp as dnmp_package
from conftest import DEVICES, requires_cuda

DNMP = Path(dnmp_package.__file__).resolve().parent
TORCH = Path(torch.__file__).resolve().parent
# tensor factories: each of their calls in dnmp's modules must say where the tensor goes
FACTORIES = {"arange", "as_tensor", "empty", "eye", "full", "linspace", "ones", "rand", "randint", "randn", "randperm",
             "tensor", "zeros"}


class _Scene:
    """The parts of a ``scenes.Scene`` that PixelStore, FragmentCache and the steppers read: views of the test
    primitives with random photos and alphas."""

    ndc, background, has_alpha, source = False, None, True, "test scene"

    def __init__(self, cams):
        self.frames = [SimpleNamespace(camera=c) for c in cams]
        rng = np.random.default_rng(0)
        self._rgb = [rng.random((c.height, c.width, 3)).astype(np.float32) for c in cams]
        self._alpha = [rng.random((c.height, c.width)).astype(np.float32) for c in cams]

    def split(self, name=None):
        return list(range(len(self.frames)))

    def image(self, i):
        return self._rgb[i]

    def alpha(self, i):
        return self._alpha[i]


@pytest.fixture(scope="module")
def small():
    """(model on the CPU, camera): 3 + 1 primitives filling a third of a 20x16 view, outline supersampling on (the
    Triton interpreter takes about 3 s per rasterized frame of it)."""
    from fieldfit.fields.dnmp import PrimitiveLevel
    from fieldfit.methods.dnmp.autoencoder import train_autoencoder
    from fieldfit.methods.dnmp.model import DNMPModel
    from fieldfit.render.camera import Camera

    _, dec, code = train_autoencoder(steps=20, batch=32, seed=0)
    g = torch.Generator().manual_seed(5)
    fine = PrimitiveLevel(torch.tensor([[-0.3, 0.0, 0.0], [0.25, 0.1, 0.2], [0.0, -0.2, -0.3]]), 0.4, code,
                          feat_dim=4)
    coarse = PrimitiveLevel(torch.tensor([[0.1, 0.1, -0.4]]), 0.8, code, feat_dim=4)
    for lv in (fine, coarse):
        with torch.no_grad():
            lv.latents.add_(0.3 * torch.randn(lv.latents.shape, generator=g))
            lv.features.normal_(generator=g)
    model = DNMPModel(dec, [fine, coarse], [2, 1], 4, 8)
    model.antialias = True
    c2w = np.array([[1.0, 0, 0, 0.0], [0, 1, 0, 0.0], [0, 0, 1, 3.0]])
    return model, Camera(c2w, 32.0, 32.0, 10.0, 8.0, 20, 16)


def _spy(monkeypatch, module, name: str):
    """Wrap ``module.name`` to record the device of its first argument at each call; returns the list."""
    seen = []
    original = getattr(module, name)

    def wrapped(first, *args, **kwargs):
        seen.append(first.device)
        return original(first, *args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return seen


def _render_and_train(model, cam, scene, device):
    """Every dnmp rendering/training step on ``model`` moved to ``device``: fragments, shading of every pixel, a
    whole image (with supersampled outlines), the fragment cache and a lookup, one radiance step (its loss and the
    gradients it left in the optimizers' first moments)."""
    from fieldfit.methods.dnmp.config import DNMPConfig
    from fieldfit.methods.dnmp.model import rasterize_levels, shade
    from fieldfit.methods.dnmp.render import render_image
    from fieldfit.methods.dnmp.rows import RowAdam
    from fieldfit.methods.dnmp.train import FragmentCache, RadianceStepper, camera_dirs
    from fieldfit.optim import make_adam
    from fieldfit.tasks.radiance import PixelStore

    m = copy.deepcopy(model).to(device)
    m.freeze()
    dirs = camera_dirs(scene, cam)  # on the host: render_image moves them
    bg = torch.tensor([0.3, 0.6, 0.1], device=device)
    layers = rasterize_levels(m, cam)
    with torch.no_grad():
        rgb, opacity = shade(m, layers, dirs.to(device), bg)
    image, image_opacity = render_image(m, cam, dirs, bg)
    cache = FragmentCache(m, scene, scene.split("train"))
    looked = cache.lookup(np.random.default_rng(1).integers(0, cache.total, 300))
    store = PixelStore(scene, scene.split("train"))
    mlps = [*m.shader.parameters(), *m.background.parameters()]
    adam = make_adam([{"params": mlps, "lr": 0.01}])
    feats = RowAdam([lv.features for lv in m.levels], 0.01)
    stepper = RadianceStepper(m, (adam, feats), store, scene, DNMPConfig(batch=256), 0, cache)
    torch.manual_seed(0)  # the random backgrounds of the alpha scene
    loss = stepper(0, 0.0)["loss"]
    grads = [t.detach().cpu() for t in feats.m] + \
        [adam.state[p]["exp_avg"].detach().cpu() for p in m.shader.parameters()]  # (alpha scene: no background MLP)
    return SimpleNamespace(layers=layers, rgb=rgb, opacity=opacity, image=image, image_opacity=image_opacity,
                           cache=cache, looked=looked, loss=float(loss), grads=grads, model=m)


@pytest.mark.parametrize("device", DEVICES)
def test_triton_kernels_give_the_reference_fragments_and_colours(device, small, monkeypatch):
    """The path a GPU takes (the Triton K-buffer rasterizer and compositing kernels; on the CPU through Triton's
    interpreter) draws the same fragments and colours as the torch reference, through rasterize_levels, shade,
    render_image, FragmentCache.lookup and a RadianceStepper step."""
    pytest.importorskip("triton")
    from fieldfit.cuda import _composite_triton, _raster_triton

    model, cam = small
    scene = _Scene([cam])
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    want = _render_and_train(model, cam, scene, "cpu")
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    raster_calls = _spy(monkeypatch, _raster_triton, "forward")
    composite_calls = _spy(monkeypatch, _composite_triton, "forward")
    got = _render_and_train(model, cam, scene, device)

    kind = torch.device(device).type
    assert len(raster_calls) >= 5
    assert all(d.type == kind for d in raster_calls)
    assert composite_calls
    assert all(d.type == kind for d in composite_calls)
    for t in (got.layers.face, got.rgb, got.image, got.cache.face, got.looked.face, got.looked.owner):
        assert t.device.type == kind
    assert got.model.device.type == kind
    assert got.cache.on_device
    # the interpreter computes in float32 exactly as the reference; compiled GPU code may order near-equal depths
    # differently at a few pixels (fragments compared there) and round the last bits of colours
    exact = kind == "cpu"
    face = got.layers.face.cpu()
    assert (want.layers.face >= 0).sum() > 100
    if exact:
        assert torch.equal(face, want.layers.face)
    else:
        assert (face != want.layers.face).float().mean() <= 0.01
    same = (face == want.layers.face).all(1)
    tol = {"atol": 1e-6, "rtol": 1e-5} if exact else {"atol": 1e-4, "rtol": 1e-3}
    torch.testing.assert_close(got.layers.bary.cpu()[same], want.layers.bary[same], **tol)
    torch.testing.assert_close(got.rgb.cpu()[same], want.rgb[same], **tol)
    torch.testing.assert_close(got.opacity.cpu()[same], want.opacity[same], **tol)
    assert same.float().mean() > 0.98
    if exact:
        torch.testing.assert_close(got.image.cpu(), want.image, **tol)
        torch.testing.assert_close(got.image_opacity.cpu(), want.image_opacity, **tol)
        assert torch.equal(got.cache.face.cpu(), want.cache.face)
        assert torch.equal(got.looked.face.cpu(), want.looked.face)
        assert torch.equal(got.looked.owner.cpu(), want.looked.owner)
        torch.testing.assert_close(got.looked.bary.cpu(), want.looked.bary, atol=0, rtol=0)
    else:
        assert (got.image.cpu() - want.image).abs().gt(1e-3).float().mean() < 0.02
    assert want.looked.owner is not None
    assert want.looked.face.shape[0] > 300
    assert np.isfinite(want.loss)
    assert abs(got.loss - want.loss) <= (1e-6 if exact else 1e-2) * max(1.0, want.loss)
    for g, w in zip(got.grads, want.grads, strict=True):
        assert w.abs().max() > 0
        torch.testing.assert_close(g, w, atol=(1e-6 if exact else 1e-2) * float(w.abs().max()), rtol=1e-4)


# -- every tensor dnmp makes is made on a device it names -------------------------------------------------------------
def test_every_tensor_factory_in_dnmp_names_its_device():
    """Static half of the audit: each ``torch.<factory>(...)`` call in dnmp's modules passes ``device=`` (the
    model's or an input's; "cpu" only for host-side data by design). The mesh auto-encoder is trained on the host,
    cached, and moved with the model (``pipeline.build_model``), so it is left out."""
    missing = []
    for path in sorted(DNMP.glob("*.py")):
        if path.name == "autoencoder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.func.attr in FACTORIES and not any(k.arg == "device" for k in node.keywords)):
                missing.append(f"{path.name}:{node.lineno} torch.{node.func.attr}")
    assert not missing, "tensor factories without device=: " + ", ".join(missing)


class _FactoryAudit(TorchFunctionMode):
    """Runtime half: every tensor factory that dnmp's own code calls while this mode is on, where it was called and
    whether it named a device (a ``torch.zeros(...)`` without one would be made on the CPU next to a CUDA model)."""

    def __init__(self):
        super().__init__()
        self.named, self.unnamed = set(), []

    @staticmethod
    def _call_site():
        """'file.py:line' of the dnmp line that called the factory, or None when that caller is not dnmp's code (the
        test, torch's own Python functions, fieldfit's other packages)."""
        frame = sys._getframe(2)
        while frame is not None and Path(frame.f_code.co_filename).name in ("overrides.py", "_device.py") \
                and TORCH in Path(frame.f_code.co_filename).resolve().parents:
            frame = frame.f_back
        if frame is None:
            return None
        path = Path(frame.f_code.co_filename).resolve()
        return f"{path.name}:{frame.f_lineno}" if path.parent == DNMP else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in FACTORIES:
            site = self._call_site()
            if site is not None:
                (self.named.add(site) if "device" in kwargs else self.unnamed.append(f"{site} torch.{func.__name__}"))
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def quick_weights(tmp_path_factory):
    """A quickly trained mesh auto-encoder in a private FIELDFIT_CACHE (its quality does not matter here)."""
    from fieldfit.methods.dnmp import autoencoder as dnmp_ae

    root = tmp_path_factory.mktemp("dnmp_device_cache")
    enc, dec, code = dnmp_ae.train_autoencoder(steps=300, batch=256)
    dnmp_ae.save(root / dnmp_ae.FILE, enc, dec, code)
    return root


@pytest.mark.slow
def test_a_fit_creates_every_dnmp_tensor_on_a_named_device(quick_weights, tmp_path, monkeypatch):
    """A whole fit (rbf point fit, density shapes, geometry stage with windows, outline supersampling, fragment cache,
    radiance stage, test renders, mesh), a resumed one, the loaded run's render and occupancy, and alpha carving,
    with every tensor factory of dnmp's code audited: none may rely on the default device."""
    import fieldfit
    from fieldfit.cli import main
    from fieldfit.methods.dnmp.points import carve_points
    from fieldfit.scenes import load_scene
    from fieldfit.scenes.builtin import blocks_scene_dir

    monkeypatch.setenv("FIELDFIT_CACHE", str(quick_weights))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    audit = _FactoryAudit()
    with audit:
        assert main(["blocks", "--method", "dnmp", "--device", "cpu", "--steps", "8", "--downscale", "4",
                     "--geo-frac", "0.5", "--antialias", "on", "--batch", "512", "--resolution", "24",
                     "--out", str(out)]) == 0
        assert main(["--resume", str(out), "--steps", "10"]) == 0
        model = fieldfit.load(out, "cpu")
        cam = model.cameras("test")[0]
        img = model.render(cam)
        occ = model.occupancy()
        inside = occ.inside(torch.as_tensor(np.asarray(occ.center), dtype=torch.float64)[None])
        scene = load_scene(blocks_scene_dir(), downscale=4)
        pts = carve_points(scene, 0.05)
    assert not audit.unnamed, "tensor factories without a device: " + ", ".join(sorted(set(audit.unnamed)))
    files = {site.split(":")[0] for site in audit.named}
    assert files >= {"model.py", "edges.py", "render.py", "train.py", "shapes.py", "points.py", "mesh.py", "rows.py",
                     "pipeline.py"}, files  # the audit saw every module's factories at work
    assert len(audit.named) > 40
    assert img.rgb.device == model.device == torch.device("cpu")
    assert inside.shape == (1,)
    assert len(pts) > 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 10


# -- on a GPU --------------------------------------------------------------------------------------------------------
@requires_cuda
def test_a_cuda_fit_trains_and_renders_on_the_gpu(quick_weights, tmp_path, monkeypatch):
    """``--device cuda``: the rasterizer gets CUDA tensors (the Triton K-buffer kernel), the fit ends with sane
    metrics, and ``fieldfit.load(run, "cuda")`` renders on the GPU what the CPU renders of the same checkpoint."""
    import fieldfit
    from fieldfit.cli import main
    from fieldfit.cuda import _raster_triton

    monkeypatch.setenv("FIELDFIT_CACHE", str(quick_weights))
    monkeypatch.delenv("FIELDFIT_KERNELS", raising=False)
    raster_calls = _spy(monkeypatch, _raster_triton, "forward")
    out = tmp_path / "run"
    assert main(["blocks", "--method", "dnmp", "--device", "cuda", "--steps", "20", "--out", str(out)]) == 0
    assert raster_calls
    assert all(d.type == "cuda" for d in raster_calls)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20
    assert np.isfinite(metrics["test"]["psnr"])
    assert metrics["test"]["psnr"] > 10
    assert metrics["peak_mb_per_1k_pixels"] >= 0
    assert metrics["watertight"] is True

    gpu = fieldfit.load(out, "cuda")
    assert gpu.model.device.type == "cuda"
    assert all(t.device.type == "cuda" for t in gpu.model.state_dict().values())
    cam = gpu.cameras("test")[0]
    n = len(raster_calls)
    img = gpu.render(cam)
    assert len(raster_calls) > n  # drawn by the kernel
    assert img.rgb.device.type == "cuda"
    assert img.opacity.device.type == "cuda"
    assert img.rgb.shape == (cam.height, cam.width, 3)
    assert torch.isfinite(img.rgb).all()
    ref = fieldfit.load(out, "cpu").render(cam)
    diff = (img.rgb.cpu() - ref.rgb).abs()
    assert diff.gt(1e-3).float().mean() < 0.02  # the same checkpoint: the same picture, up to rounding at a few pixels
    assert float(diff.mean()) < 2e-3
