"""render_fused: the one-kernel frame (march + RBF field on a hash grid or tri-plane + compositing) vs its reference.

The reference (cuda/_fused_ref.py) is checked against the renderer's own path
(render.march.render_rounds and render, float32, to the tolerances below); the Triton kernel
against the reference, float32 both:
    rgb, opacity:  atol 2e-5      depth: atol 2e-5 * max depth      evaluations: equal
(the kernel sums optical depth in float32, the reference in float64; a sample whose
transmittance sits on the early-stop threshold could flip, which these seeds do not hit).
render_rounds evaluates whole rounds, so it may evaluate a few samples more than the reference.
The op has no backward: frames are drawn without gradient.
Fields with the decoder's linear tail and the exp density activation (the rbf defaults), and with its projection of
the features, are checked the same way, and the reference's field against RadianceRBF's own forward.
"""

import dataclasses

import pytest
import torch

from conftest import DEVICES, assert_close
from fieldfit.cuda import render_fused
from fieldfit.cuda._fused_ref import field_ref, render_fused_ref
from fieldfit.fields.components.encodings import GridConfig
from fieldfit.fields.components.sh import sh_bases
from fieldfit.fields.gaussian_rbf import FieldConfig
from fieldfit.fields.radiance_rbf import EXP_CAP, RadianceRBF
from fieldfit.render import OccupancyGrid
from fieldfit.render.march import MarchConfig, fusable, march_mode, render, render_rays, render_rounds
from fieldfit.render.march import render_fused as march_fused


class Marched(torch.nn.Module):
    """A field and its occupancy grid, moved and saved together (what render.march's functions take)."""

    def __init__(self, field, grid):
        super().__init__()
        self.field, self.grid = field, grid


def _model(levels=3, units=6, table_log2=8, occupied=0.5, shift=0.0, scale=3.0, seed=0, kernel="gaussian",
           grid="hash", tail=False, activation="softplus", project=0, split=False):
    """A small random RBF radiance model (hash grid, or tri-plane with volumes for its two coarse levels)
    whose rays mix opaque, partly filled and empty ones; ``tail``: its decoder has a (random) linear tail;
    ``project``: its units read a (random) projection of the features to that many dimensions; ``split``: density
    and colour from two decoders (each as described)."""
    torch.manual_seed(seed)
    if grid == "hash":
        grid = GridConfig(kind="hash", levels=levels, base_res=4, max_res=40, features=2, table_log2=table_log2,
                          init_scale=1.0)
    else:
        grid = GridConfig(kind="triplane", levels=levels, base_res=4, max_res=24, features=3, volume_max_res=10,
                          init_scale=1.0)
    field = RadianceRBF(FieldConfig(grid=grid, units=units, kernel=kernel, tail=tail, project=project, split=split),
                        [[-1.0] * 3, [1.0] * 3], density_shift=shift, density_scale=scale,
                        density_activation=activation)
    with torch.no_grad():
        for dec in (field.decoder.density, field.decoder.colour) if split else (field.decoder,):
            dec.rbf.centers.normal_(0, 0.7)
            dec.rbf.log_prec.normal_(-1, 0.3)
            dec.head.weight.normal_(0, 1.0)
            dec.head.bias.normal_(0, 0.5)
            if tail:
                dec.tail.weight.normal_(0, 0.5)
            if project:  # z = P F about as large as the features
                dec.project.weight.normal_(0, field.encoding.out_dim**-0.5)
    occ = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=8, dilation=0)
    occ.binary.copy_(torch.rand(8, 8, 8) < occupied)
    return Marched(field, occ).eval()


def _rays(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = 2.5 * o / o.norm(dim=-1, keepdim=True)
    d = torch.rand(n, 3, generator=g) * 1.6 - 0.8 - o
    d[: max(n // 8, 1)] = o[: max(n // 8, 1)]  # pointing away: these rays miss the box
    return o, d / d.norm(dim=-1, keepdim=True)


BG = torch.tensor([0.2, 0.3, 0.4])


def _compare(got, want, name=""):
    """rgb and opacity to 2e-5 absolute, depth to 2e-5 of the largest depth."""
    for what, a, b in zip(("rgb", "opacity", "depth"), got[:3], want[:3], strict=True):
        top = float(b.abs().max()) or 1.0
        assert_close(a, b, rtol=0.0, atol_rel=2e-5 if what == "depth" else 2e-5 / top, name=f"{name} {what}")


@pytest.mark.parametrize("grid", ["hash", "triplane"])
@pytest.mark.parametrize("cfg", [MarchConfig(step=0.05, early_stop=1e-3, alpha_thre=1e-3),
                                 MarchConfig(step=0.05, early_stop=1e-3, alpha_thre=0.0),
                                 MarchConfig(step=0.05, early_stop=0.0, alpha_thre=0.0)],
                         ids=["stop", "stop-all-alphas", "no-stop"])
def test_reference_draws_the_renderers_image(cfg, grid):
    model = _model(grid=grid)
    o, d = _rays(300)
    want = render_rounds(model.field, model.grid, o, d, BG, cfg)
    got = march_fused(model.field, model.grid, o, d, BG, cfg)
    _compare(got, want, "fused ref vs render_rounds")
    assert got[3] <= want[3]  # rounds may evaluate the rest of a round past the stop
    res, _ = render(model.field, model.grid, o, d, BG, cfg)  # the packed renderer, which test renders use on a GPU
    assert_close(got[0], res.rgb, rtol=0.0, atol_rel=2e-5, name="fused ref vs render")
    assert 0.0 <= float(want[1].min())
    assert float(want[1].max()) > 0.99
    assert float(want[1][:37].min()) == 0.0


def test_render_rays_fused_keeps_each_pixels_colour():
    # render_rays sorts rays by span for the other marchers and puts them back; the fused one takes them in
    # the given order: either way each pixel gets its own ray's colour
    model = _model()
    o, d = _rays(200, seed=5)
    cfg = MarchConfig(step=0.05, early_stop=1e-3, alpha_thre=1e-3)
    fused = render_rays(model.field, model.grid, o, d, BG, cfg, "cpu", chunk=64, mode="fused")
    packed = render_rays(model.field, model.grid, o, d, BG, cfg, "cpu", chunk=64, mode="packed")
    assert float(packed[1].min()) < 0.01
    assert float(packed[1].max()) > 0.9
    torch.testing.assert_close(fused[0], packed[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(fused[1], packed[1], atol=2e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["mixed", "opaque", "empty", "no-stop", "all-alphas", "dense-levels", "unrolled-16",
                                  "triplane", "triplane-opaque", "triplane-channels-first", "tail-exp",
                                  "triplane-tail-exp", "proj-tail-exp", "proj-12-of-16", "triplane-proj-tail-exp",
                                  "triplane-proj-20", "split-proj-tail-exp", "triplane-split-tail-exp"])
def test_kernel_matches_reference(device, case, monkeypatch):
    from fieldfit.cuda import _fused_triton

    if case == "unrolled-16":  # the other launch shape bench/frame_gpu.py tries: levels unrolled, 16-ray blocks
        monkeypatch.setattr(_fused_triton, "BLOCK", 16)
        monkeypatch.setattr(_fused_triton, "WARPS", 4)
        monkeypatch.setattr(_fused_triton, "UNROLL_LEVELS", True)
    if case == "tail-exp":  # one program of 16 lanes for the 21 rays: lanes take new rays, rewriting their tail rows
        monkeypatch.setattr(_fused_triton, "BLOCK", 16)
        monkeypatch.setattr(_fused_triton, "WARPS", 4)
        monkeypatch.setattr(_fused_triton, "programs", lambda n, dev: 1)
    kw = {"opaque": dict(shift=4.0, scale=30.0), "empty": dict(shift=-30.0),
          "dense-levels": dict(table_log2=16, kernel="inverse_quadratic"), "triplane": dict(grid="triplane"),
          "triplane-opaque": dict(grid="triplane", shift=4.0, scale=30.0),
          "triplane-channels-first": dict(grid="triplane"), "tail-exp": dict(tail=True, activation="exp"),
          "triplane-tail-exp": dict(grid="triplane", tail=True, activation="exp"),
          # projections (D = 6 hash features, 16 with 8 levels, 33 tri-plane ones): J = 4 < D, J = 12 (not a power
          # of two, units padded to 16), J = 20 (padded to 32)
          "proj-tail-exp": dict(project=4, tail=True, activation="exp"), "proj-12-of-16": dict(levels=8, project=12),
          "triplane-proj-tail-exp": dict(grid="triplane", project=12, tail=True, activation="exp"),
          "triplane-proj-20": dict(grid="triplane", project=20),
          # split decoders as one (SplitRBFDecoder.as_one): 2 x 6 units on 2 x 4 projected dimensions, or 2 x 6 on
          # the 33 features
          "split-proj-tail-exp": dict(split=True, project=4, tail=True, activation="exp"),
          "triplane-split-tail-exp": dict(grid="triplane", split=True, tail=True, activation="exp")}.get(case, {})
    model = _model(**kw).to(device)  # with the kernels on, .to() lays the tri-plane out channels-last
    assert (model.field.fused_parts().proj_w is not None) == ("proj" in case)
    if case.startswith("triplane"):
        planes = model.field.encoding.planes
        if case == "triplane-channels-first":
            model.field.encoding.lay_out(False)
        assert planes[0].is_contiguous() == (case == "triplane-channels-first")
    cfg = MarchConfig(step=0.2, early_stop=0.0 if case == "no-stop" else 1e-3,
                      alpha_thre=0.0 if case in ("no-stop", "all-alphas") else 1e-3)
    n = 21  # not a multiple of the block (32; 16 unrolled); n // 8 = 2 rays miss the box
    o, d = (t.to(device) for t in _rays(n))
    got = march_fused(model.field, model.grid, o, d, BG.to(device), cfg)
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    want = march_fused(model.field, model.grid, o, d, BG.to(device), cfg)
    _compare(got, want, case)
    assert got[3] == want[3]  # the same field evaluations: each occupied sample once, none past the stop
    if case.endswith("opaque"):
        assert float(got[1][n // 8:].min()) > 0.99
    if case == "empty":
        assert float(got[1].max()) < 1e-6
        assert torch.allclose(got[0], BG.to(device).expand(n, 3))


@pytest.mark.slow
@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_lane_refill_schedules_draw_the_same_frame(device, monkeypatch):
    # programs take rays from one queue, and a lane whose ray is done takes the next once REFILL lanes are done:
    # whatever the schedule (one program draining 24 rays refilling each lane at once, two refilling 8 at a
    # time, or blocks of 32 without refill), every ray is computed alike: the frames are equal, bit for bit.
    # (The grid's part of the kernel does not see the schedule: the hash grid stands for both.)
    from fieldfit.cuda import _fused_triton

    model = _model().to(device)
    cfg = MarchConfig(step=0.2, early_stop=1e-3, alpha_thre=1e-3)
    o, d = (t.to(device) for t in _rays(24, seed=3))
    frames = {}
    for programs, refill in ((1, 1), (2, 8), (4, 32)):
        monkeypatch.setattr(_fused_triton, "programs", lambda n, dev, p=programs: p)
        monkeypatch.setattr(_fused_triton, "REFILL", refill)
        frames[programs, refill] = march_fused(model.field, model.grid, o, d, BG.to(device), cfg)
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    want = march_fused(model.field, model.grid, o, d, BG.to(device), cfg)
    first = frames[1, 1]
    _compare(first, want, "one program, refill 1")
    assert first[3] == want[3]
    for key, got in frames.items():
        for a, b in zip(got[:3], first[:3], strict=True):
            assert torch.equal(a, b), key
        assert got[3] == first[3], key


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_empty_input(device):
    model = _model().to(device)
    z = torch.zeros(0, 3, device=device)
    rgb, opacity, depth, evals = march_fused(model.field, model.grid, z, z, BG.to(device), MarchConfig(step=0.1))
    assert rgb.shape == (0, 3)
    assert opacity.shape == depth.shape == (0,)
    assert evals == 0


def _args(model, n=4):
    o, d = _rays(n)
    parts = model.field.fused_parts()
    t = torch.zeros(n)
    return [o, d, torch.ones(n, 16), t, t + 1.0, model.grid.binary, model.grid.aabb, 0.1, 10, parts, BG, 1e-3, 0.0]


def test_arguments_are_checked_by_name():
    model = _model()
    args = _args(model)
    bad = list(args)
    bad[0] = args[0].double()
    with pytest.raises(TypeError, match="'origins'"):
        render_fused(*bad)
    bad = list(args)
    bad[2] = torch.ones(4, 9)
    with pytest.raises(ValueError, match="'field.head_w'"):  # 9 SH bases do not fit a head of 1 + 3*16 rows
        render_fused(*bad)
    bad = list(args)
    bad[10] = torch.zeros(4)
    with pytest.raises(ValueError, match="'background'"):
        render_fused(*bad)
    bad = list(args)
    bad[11] = 1.5
    with pytest.raises(ValueError, match="early_stop"):
        render_fused(*bad)
    bad = list(args)
    bad[9] = dataclasses.replace(args[9], tail_w=torch.zeros(49, 5))  # the features are 3 levels x 2
    with pytest.raises(ValueError, match="'field.tail_w'"):
        render_fused(*bad)
    bad[9] = dataclasses.replace(args[9], proj_w=torch.zeros(4, 5))  # [J, D]: D is 6
    with pytest.raises(ValueError, match="'field.proj_w'"):
        render_fused(*bad)
    bad[9] = dataclasses.replace(args[9], proj_w=torch.zeros(4, 6))  # the 6 units' centres are [6, 6], not [6, 4]
    with pytest.raises(ValueError, match="'field.centers'"):
        render_fused(*bad)
    bad[9] = dataclasses.replace(args[9], density_activation="relu")
    with pytest.raises(ValueError, match="softplus"):
        render_fused(*bad)
    # the reference and the dispatching op agree on valid arguments
    for a, b in zip(render_fused(*args)[:3], render_fused_ref(*args)[:3], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("split", [False, True], ids=["one", "split"])
@pytest.mark.parametrize("project", [0, 5], ids=["no-proj", "proj-5"])
@pytest.mark.parametrize("grid", ["hash", "triplane"])
def test_reference_field_is_the_fields_forward_with_a_tail_and_exp(grid, project, split):
    # the fused reference reads the tail, the activation and the projection from fused_parts as RadianceRBF applies
    # them: the same density and colour at random points, half of them past the exp cap (the density shift set so
    # that the median raw density lands on it); project 5: fewer dimensions than the features (6 hash, 33
    # tri-plane); split: two decoders given as one (SplitRBFDecoder.as_one)
    model = _model(grid=grid, tail=True, activation="exp", project=project, split=split)
    field = model.field
    g = torch.Generator().manual_seed(2)
    x = torch.rand(500, 3, generator=g) * 2.2 - 1.1  # a few outside the box: they read its border
    d = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    with torch.no_grad():
        field.density_shift = EXP_CAP - float(field.decoder.outputs(field.features(x), slice(0, 1)).median())
    parts = field.fused_parts()
    assert parts is not None
    assert parts.tail_w is not None
    assert parts.density_activation == "exp"
    assert (parts.proj_w is not None) == bool(project)
    density, rgb = field_ref(x, sh_bases(d, parts.sh_degree), parts)
    with torch.no_grad():
        out = field(x, d)
    torch.testing.assert_close(density, out.density, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(rgb, out.rgb, rtol=0.0, atol=1e-6)
    capped = field.density_scale * torch.exp(torch.tensor(EXP_CAP))
    assert bool((out.density == capped).any())
    assert bool((out.density < capped).any())
    without = dataclasses.replace(parts, tail_w=None)  # the tail matters: without it the field differs
    assert float((field_ref(x, sh_bases(d, parts.sh_degree), without)[1] - rgb).abs().max()) > 0.01
    if project:  # so does the projection: its rows swapped, the field differs
        swapped = dataclasses.replace(parts, proj_w=parts.proj_w.flip(0))
        assert float((field_ref(x, sh_bases(d, parts.sh_degree), swapped)[1] - rgb).abs().max()) > 0.01


def test_models_without_a_fused_path_are_refused():
    field = RadianceRBF(FieldConfig(grid=GridConfig(kind="dense", levels=2, max_res=16, features=2), units=4),
                        [[-1.0] * 3, [1.0] * 3])
    model = Marched(field, OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=4))
    assert not fusable(model.field)
    assert fusable(_model().field)
    assert fusable(_model(grid="triplane").field)
    assert fusable(_model(tail=True, activation="exp").field)  # the rbf defaults
    assert fusable(_model(project=4).field)
    with pytest.raises(ValueError, match="FIELDFIT_MARCH"):
        march_fused(model.field, model.grid, *_rays(3), BG, MarchConfig(step=0.1))


def test_gpu_frames_default_to_the_fused_marcher_where_it_applies(monkeypatch):
    # march_mode only names a device: no CUDA is needed to check the choice
    from fieldfit.cuda import _dispatch

    monkeypatch.delenv("FIELDFIT_MARCH", raising=False)
    monkeypatch.delenv("FIELDFIT_KERNELS", raising=False)
    monkeypatch.setattr(_dispatch, "triton_available", lambda: True)
    dense = RadianceRBF(FieldConfig(grid=GridConfig(kind="dense", levels=2, max_res=16, features=2), units=4),
                        [[-1.0] * 3, [1.0] * 3])
    assert march_mode("cuda", _model().field) == "fused"
    assert march_mode("cuda", _model(grid="triplane").field) == "fused"
    assert march_mode("cuda", dense) == "packed"
    assert march_mode("cuda") == "packed"
    assert march_mode("cpu", _model().field) == "rounds"  # a CPU runs the fused path as its (slower) reference
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")  # no kernels: the fused path would be the reference too
    assert march_mode("cuda", _model().field) == "packed"
    monkeypatch.setenv("FIELDFIT_MARCH", "rounds")
    assert march_mode("cuda", _model().field) == "rounds"
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    monkeypatch.delenv("FIELDFIT_MARCH")
    monkeypatch.delenv("FIELDFIT_KERNELS")
    assert march_mode("cuda", _model().field) == "packed"
