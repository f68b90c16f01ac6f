"""bench/_terminate_single_pass.py (an experiment bench/gpu_profile.py times on a GPU) keeps exactly the
samples of the training march's early termination in rounds (fieldfit.render.termination.terminate)."""

import sys

import numpy as np
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from _terminate_single_pass import terminate_single_pass

from fieldfit.methods.rbf.config import RadianceConfig
from fieldfit.methods.rbf.radiance import build_model, run_config
from fieldfit.render.march import candidates
from fieldfit.render.termination import terminate
from fieldfit.scenes.inputs import classify
from fieldfit.tasks.radiance import PixelStore, load_radiance_scene


def test_single_pass_keeps_the_samples_of_the_rounds():
    inp = classify("blocks")
    scene = load_radiance_scene(inp)
    cfg = RadianceConfig.for_scene(scene, "cpu")
    model, march = build_model(run_config(scene, inp, cfg, 0), "cpu")
    store = PixelStore(scene, scene.split("train"))
    batch = store.take(np.random.default_rng(0).integers(0, store.count, 512))
    o, d = batch.origins, batch.dirs
    cand = candidates(model.grid, o, d, march)

    def density(x):  # an opaque ball, a faint shell (alpha below the threshold), a thin fog around them
        r = x.norm(dim=-1)
        return torch.where(r < 0.4, 200.0, torch.where(r < 0.7, 0.01, 1.0))

    a = terminate(density, o, d, cand, march.early_stop, march.alpha_thre)
    b = terminate_single_pass(density, o, d, cand, march.early_stop, march.alpha_thre)
    tau = density(cand.positions(o, d)) * cand.deltas
    faint = (1.0 - torch.exp(-tau)) < march.alpha_thre
    assert 0 < faint.sum()
    assert 0 < a.n_samples < cand.n_samples - faint.sum()
    assert torch.equal(a.t_starts, b.t_starts)
    assert torch.equal(a.ray_indices, b.ray_indices)
