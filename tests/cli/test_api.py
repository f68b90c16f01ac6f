"""The Python API: fieldfit.fit and fieldfit.load, and the Model every method's runs load as."""

import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import fieldfit
from fieldfit.errors import InputError
from fieldfit.model import Model


def test_fit_returns_the_loaded_run_and_load_reads_it_back(tmp_path):
    model = fieldfit.fit("rings", method="rbf", steps=30, device="cpu", out=tmp_path / "rings", levels=3, max_res=64)
    assert isinstance(model, Model)
    assert model.task == "image"
    assert model.method == "rbf"
    assert model.run.path == tmp_path / "rings"
    assert model.metrics["psnr"] > 10
    assert model.metrics["steps"] == 30
    saved = json.loads((tmp_path / "rings" / "config.json").read_text())
    assert saved["format"] == 2
    assert saved["config"]["levels"] == 3
    assert saved["config"]["max_res"] == 64
    again = fieldfit.load(tmp_path / "rings", device="cpu")
    uv = torch.tensor([[0.0, 0.0], [0.5, -0.5]])
    torch.testing.assert_close(again.rgb(uv), model.rgb(uv))
    img = again.render()
    png = iio.imread(tmp_path / "rings" / "reconstruction.png")
    assert img.rgb.shape == png.shape
    np.testing.assert_allclose((img.rgb.numpy() * 255 + 0.5).astype(np.uint8), png, atol=1)


def test_options_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="--units.*not an option of --method bsp") as e:
        fieldfit.fit("csg", method="bsp", steps=5, out=tmp_path / "a", units=8)
    assert "--convexes" in e.value.fix
    with pytest.raises(InputError, match="--time-budget"):
        fieldfit.fit("csg", time_budget=-3, out=tmp_path / "b")
    with pytest.raises(InputError, match="--max-res big"):
        fieldfit.fit("csg", steps=5, out=tmp_path / "c", max_res="big")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_resume_and_a_shape_run_through_the_api(tmp_path):
    out = tmp_path / "csg"
    model = fieldfit.fit("csg", steps=100, out=out, train_points=20000, levels=3, max_res=32, resolution=32,
                         iou_points=20000)
    assert model.task == "sdf"
    assert model.metrics["steps"] == 100
    more = fieldfit.fit("csg", steps=130, resume=out)
    assert more.metrics["steps"] == 130
    assert "resumed from step 100" in (out / "log").read_text()
    figures = more.export_mesh(tmp_path / "part.ply", resolution=32)
    assert figures["watertight"] is True
    assert (tmp_path / "part.ply").is_file()
    with pytest.raises(InputError, match="no scene cameras"):
        more.cameras()


def test_a_radiance_run_renders_its_test_views_as_the_fit_did(tmp_path):
    out = tmp_path / "blocks"
    model = fieldfit.fit("blocks", method="rbf", steps=60, out=out, downscale=2, levels=2, max_res=32, resolution=32)
    cam = model.cameras("test")[0]
    img = model.render(cam)
    png = iio.imread(out / "renders" / "test_000.png")
    np.testing.assert_allclose((img.rgb.numpy() * 255 + 0.5).astype(np.uint8), png, atol=1)
    assert img.samples > 0
    hit = img.opacity > 0.9
    assert bool(hit.any())
    assert bool(torch.isfinite(img.depth[hit]).all())
    assert bool(torch.isnan(img.depth[img.opacity == 0]).all())
    small = model.render(cam.resized(16, 12), mode="normals")
    assert small.rgb.shape == (12, 16, 3)
    assert small.normals.shape == (12, 16, 3)
    solid = small.opacity > 0.5
    torch.testing.assert_close(small.normals[solid].norm(dim=-1), torch.ones(int(solid.sum())), atol=1e-4, rtol=0)


def test_load_refuses_what_is_not_a_run_of_this_version(tmp_path):
    with pytest.raises(InputError, match="not a run folder"):
        fieldfit.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"task": "image", "method": "rbf", "options": {}}))
    with pytest.raises(InputError, match="older fieldfit"):
        fieldfit.load(tmp_path)


def test_fit_trains_with_denormals_flushed_and_restores_the_mode(tmp_path, monkeypatch):
    import fieldfit.methods.rbf.image as image
    from fieldfit.trainer import denormals_flushed

    seen = []
    loop = image.fit_loop

    def spy(*args, **kwargs):
        seen.append(denormals_flushed())
        return loop(*args, **kwargs)

    monkeypatch.setattr(image, "fit_loop", spy)
    assert not denormals_flushed()
    fieldfit.fit("rings", steps=2, device="cpu", out=tmp_path / "rings", levels=2, max_res=16)
    assert seen == [True]
    assert not denormals_flushed()


def test_flushed_denormals_nests_and_restores():
    from fieldfit.trainer import denormals_flushed, flushed_denormals

    with flushed_denormals():
        assert denormals_flushed()
        with flushed_denormals():
            pass
        assert denormals_flushed()  # an inner block leaves the outer one's mode
    assert not denormals_flushed()


def test_torch_threads_started_inside_inherit_the_flush():
    # the command line enters flushed_denormals before torch's first parallel op: every worker thread flushes
    code = ("import torch\nfrom fieldfit.trainer import flushed_denormals\nwith flushed_denormals():\n"
            "    f32 = torch.full((1 << 20,), 1e-39)\n    f64 = torch.full((1 << 20,), 1e-39, dtype=torch.float64)\n"
            "    print(torch.get_num_threads(), torch.count_nonzero(f32 * 1.0).item(), "
            "torch.count_nonzero(f64 * 1.0).item())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["2", "0", "1048576"]  # float32 denormals gone on both threads; 1e-39 is normal in float64
