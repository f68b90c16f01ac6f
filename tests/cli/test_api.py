"""The Python API: fieldfit.fit and fieldfit.load, and the Model every method's runs load as."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import fieldfit
from fieldfit.errors import InputError
from fieldfit.model import Model


def test_fit_returns_the_loaded_run_and_load_reads_it_back(tmp_path):
    # 60 steps: a full-size image fit's rate ends at 0.005x, so 30 steps train too little to clear 10 dB
    model = fieldfit.fit("rings", method="rbf", steps=60, device="cpu", out=tmp_path / "rings", levels=3, max_res=64)
    assert isinstance(model, Model)
    assert model.task == "image"
    assert model.method == "rbf"
    assert model.run.path == tmp_path / "rings"
    assert model.metrics["psnr"] > 10
    assert model.metrics["steps"] == 60
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
