"""bench/_terminate_single_pass.py (an experiment bench/gpu_profile.py times on a GPU) keeps exactly the
samples of the training march's early termination in rounds (RadianceModel._terminate)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _terminate_single_pass import terminate_single_pass  # noqa: E402

from fieldfit.methods import rbf_radiance as rr  # noqa: E402
from fieldfit.methods.radiance_data import PixelStore, load_radiance_scene  # noqa: E402
from fieldfit.scenes.inputs import classify  # noqa: E402


def test_single_pass_keeps_the_samples_of_the_rounds():
    extra = rr.device_defaults(dict(rr.DEFAULTS), "cpu")
    inp = classify("blocks")
    scene = load_radiance_scene(inp, extra)
    extra = rr.scene_defaults(scene, extra)
    model, march = rr.build_model(rr.run_config(scene, inp, extra, 0), "cpu")
    batch = PixelStore(scene, scene.split("train")).sample(512, np.random.default_rng(0))
    o, d = batch.origins, batch.dirs
    cand = model.candidates(o, d, march)

    def density(x):  # an opaque ball, a faint shell (alpha below the threshold), a thin fog around them
        r = x.norm(dim=-1)
        return torch.where(r < 0.4, 200.0, torch.where(r < 0.7, 0.01, 1.0))

    model.field.density = density
    a = model._terminate(o, d, cand, march)
    b = terminate_single_pass(model, o, d, cand, march)
    tau = density(cand.positions(o, d)) * cand.deltas
    faint = (1.0 - torch.exp(-tau)) < march.alpha_thre
    assert 0 < faint.sum() and 0 < a.n_samples < cand.n_samples - faint.sum()  # both rules dropped samples
    assert torch.equal(a.t_starts, b.t_starts) and torch.equal(a.ray_indices, b.ray_indices)
