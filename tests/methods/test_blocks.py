"""Large scenes in blocks (fieldfit SCENE --blocks AxB): the partition, the blend across seams, the block scenes,
the parent run (render, eval, mesh) and the command line. One tiny fit of the street in 2 blocks serves the run
tests."""

import json
import os

import numpy as np
import pytest
import torch

from conftest import run_main
from fieldfit.errors import InputError
from fieldfit.fields.base import FieldOutput
from fieldfit.methods.blocks.blend import BlendedField, BlockWeights, axis_weights
from fieldfit.methods.blocks.partition import parse_grid, partition
from fieldfit.render import OccupancyGrid
from fieldfit.render.camera import Camera, look_at
from fieldfit.render.march import MarchConfig, render_rays
from fieldfit.scenes import load_scene
from fieldfit.scenes.builtin import street_scene_dir

pytestmark = pytest.mark.usefixtures("one_thread")
FIT = ["--blocks", "2x1", "--steps", "60", "--lr", "0.1", "--downscale", "2", "--levels", "2", "--max-res", "32",
       "--resolution", "32"]  # 30 steps a block at a high rate: each must draw something (the rbf shift is -10)
APART = [*FIT[:2], "--steps", "120", *FIT[4:], "--train", "apart"]  # 60 steps a block: density above the mesh level


@pytest.fixture(scope="module")
def street():
    return load_scene(street_scene_dir())


# -- the street ---------------------------------------------------------------------------------------------------
def test_street_scene_is_world_space_and_split_along_the_street(street):
    from fieldfit.scenes.procedural import street_buildings, street_inside

    lo, hi = street.aabb
    assert street.kind == "builtin"
    assert street.has_alpha
    assert (hi - lo)[0] > (hi - lo)[1] > (hi - lo)[2]  # long, wider than tall
    boxes, _ = street_buildings()
    assert len(boxes) >= 12
    assert np.all(boxes[:, 0] >= lo)
    assert np.all(boxes[:, 1] <= hi)
    assert street_inside(boxes.mean(1)).all()  # each building's centre is inside
    assert not street_inside(np.array([[0.0, 0.0, 0.2], [0.0, 0.0, 1.45]])).any()  # above the road, the sky
    test_x = [street.frames[i].camera.position[0] for i in street.split("test")]
    assert len(test_x) >= 5
    assert np.ptp(test_x) > 0.6 * (hi - lo)[0]
    a = street.alpha(street.split("test")[0])
    assert 0.2 < a.mean() < 1.0  # buildings against a transparent sky


# -- partition ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(2, 2), (4, 1)])
def test_partition_covers_the_scene_and_every_camera(street, grid):
    plan = partition(street, grid, 0.15)
    assert plan.axes == (0, 1)  # along the street, then across it
    lo, hi = street.aabb
    cells = np.asarray([b.cell for b in plan.blocks])
    assert np.isclose(np.prod(cells[:, 1] - cells[:, 0], axis=1).sum(), np.prod(hi - lo))  # cells tile the box
    assert np.allclose(cells[:, 0].min(0), lo)
    assert np.allclose(cells[:, 1].max(0), hi)
    for b in plan.blocks:
        assert np.all(b.box[0] <= b.cell[0] + 1e-12)
        assert np.all(b.box[1] >= b.cell[1] - 1e-12)
        assert np.all(b.box[0] >= lo - 1e-12)
        assert np.all(b.box[1] <= hi + 1e-12)
        assert np.allclose(b.box[:, 2], [lo[2], hi[2]])  # the scene's full height
    for split in ("train", "test"):
        owned = set().union(*(getattr(b, split) for b in plan.blocks))
        assert owned == set(street.split(split))


def test_overlap_is_the_share_of_a_cell_past_each_inner_edge(street):
    plan = partition(street, (4, 1), 0.2)
    side = (street.aabb[1, 0] - street.aabb[0, 0]) / 4
    for left, right in zip(plan.blocks, plan.blocks[1:], strict=False):
        shared = left.box[1, 0] - right.box[0, 0]
        assert shared == pytest.approx(2 * 0.2 * side)
        assert left.box[1, 0] - left.cell[1, 0] == pytest.approx(0.2 * side)


def test_a_camera_that_sees_no_block_goes_to_the_nearest(street):
    from dataclasses import replace

    from fieldfit.scenes.base import Frame

    cam = street.frames[0].camera
    up = cam.with_pose(look_at([2.9, 0.4, 3.0], [2.9, 0.4, 9.0], [1.0, 0.0, 0.0]))  # above the box, looking up
    extra = replace(street, frames=[*street.frames, Frame(up)],
                    splits={"train": [*street.split("train"), len(street.frames)], "test": street.split("test")})
    plan = partition(extra, (4, 1), 0.15)
    new = len(street.frames)
    assert [b.name for b in plan.blocks if new in b.train] == ["b3_0"]  # x = 2.9: the last of four cells
    before = partition(street, (4, 1), 0.15)
    for b, was in zip(plan.blocks, before.blocks, strict=True):  # the other cameras are given out as before
        assert [i for i in b.train if i != new] == was.train


@pytest.mark.parametrize("text", ["2by2", "0x2", "2x", "17x1", "x"])
def test_bad_grid_is_refused(text):
    with pytest.raises(InputError, match="--blocks"):
        parse_grid(text)


# -- the blend ----------------------------------------------------------------------------------------------------
def test_weights_are_a_continuous_partition_of_unity():
    weights = BlockWeights((0, 1), [np.array([-2.0, 0.0, 1.0, 3.0]), np.array([-1.0, 0.5, 1.0])], (0.3, 0.2))
    x = torch.rand(20000, 3, dtype=torch.float64) * torch.tensor([7.0, 3.0, 1.0]) - torch.tensor([3.5, 1.5, 0.0])
    w = weights(x)
    assert w.shape == (20000, 6)
    assert torch.allclose(w.sum(1), torch.ones(20000, dtype=torch.float64))
    assert (w >= 0).all()
    eps = 1e-4
    steps = weights(x + torch.tensor([eps, eps, 0.0], dtype=torch.float64)) - w
    assert steps.abs().max() <= eps / (2 * 0.2) + eps / (2 * 0.3) + 1e-9  # Lipschitz: no jump anywhere
    u = axis_weights(torch.tensor([-1.0, -0.31, -0.3, 0.0, 0.3, 0.5], dtype=torch.float64), [-2.0, 0.0, 1.0, 3.0],
                     0.3)
    assert u[0].tolist() == [1.0, 0.0, 0.0]  # inside cell 0, away from the band
    assert u[1, 0] == 1.0
    assert u[2, 0] == 1.0
    assert u[3].tolist() == [0.5, 0.5, 0.0]  # on the edge: halfway
    assert u[4].tolist() == [0.0, 1.0, 0.0]
    assert u[5, 2] == 0.0
    assert weights(torch.zeros(0, 3, dtype=torch.float64)).shape == (0, 6)  # a chunk with no samples left
    assert u[5, 1] == 1.0


class Slab(torch.nn.Module):
    """A toy field: opaque below z = 0, one colour."""

    def __init__(self, colour):
        super().__init__()
        self.colour = torch.tensor(colour)

    def density(self, x):
        return torch.where(x[:, 2] < 0.0, 40.0, 0.0)

    def forward(self, x, d):
        return FieldOutput(self.density(x), self.colour.expand(len(x), 3))


def two_slabs():
    edges, margin = [np.array([-2.0, 0.0, 2.0]), np.array([-1.0, 1.0])], 0.4
    aabb = np.array([[-2.0, -1.0, -0.5], [2.0, 1.0, 0.5]])
    boxes = [aabb.copy(), aabb.copy()]
    boxes[0][1, 0], boxes[1][0, 0] = margin, -margin
    grids = [OccupancyGrid(b, resolution=8, warmup_steps=0) for b in boxes]
    field = BlendedField([Slab((1.0, 0.0, 0.0)), Slab((0.0, 0.0, 1.0))], grids, boxes,
                         BlockWeights((0, 1), edges, (margin, 1.0)))
    return field, OccupancyGrid(aabb, resolution=16, warmup_steps=0), margin


def test_a_render_across_a_seam_blends_the_two_blocks():
    field, grid, margin = two_slabs()
    xs = torch.linspace(-1.0, 1.0, 81)
    o = torch.stack([xs, torch.zeros_like(xs), torch.full_like(xs, 0.45)], 1)
    d = torch.tensor([[0.0, 0.0, -1.0]]).expand(len(xs), 3).contiguous()
    rgb, opacity, _, _ = render_rays(field, grid, o, d, torch.zeros(3), MarchConfig(step=0.01), "cpu")
    assert torch.allclose(opacity, torch.ones_like(opacity), atol=1e-3)
    w_left = ((margin - xs) / (2 * margin)).clamp(0, 1)  # block 0's weight along the row
    expect = torch.stack([w_left, torch.zeros_like(xs), 1 - w_left], 1)
    assert torch.allclose(rgb, expect, atol=2e-3)
    assert (rgb[:, 0] + rgb[:, 2]).sub(1).abs().max() < 2e-3  # weights sum to 1 on every pixel
    assert rgb[:, 0].diff().abs().max() <= 0.025 / (2 * margin) + 2e-3  # no jump across the seam


def test_a_block_holds_no_density_outside_its_box_or_its_occupied_cells():
    field, _, margin = two_slabs()
    field.grids[1].binary.zero_()  # block 1 saw nothing
    x = torch.tensor([[-1.0, 0.0, -0.2], [0.0, 0.0, -0.2], [1.0, 0.0, -0.2]])
    sigma = field.density(x)
    assert sigma.tolist() == pytest.approx([40.0, 20.0, 0.0])  # block 0 alone; half of it on the seam; nothing


class Fog(torch.nn.Module):
    """A toy field: density exp(a) everywhere, colour sigmoid(b); a and b learnable."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(3))

    def density(self, x):
        return self.a.exp().expand(len(x))

    def forward(self, x, d):
        return FieldOutput(self.density(x), torch.sigmoid(self.b).expand(len(x), 3))


def test_a_sample_trains_only_the_blocks_that_hold_it():
    """Trained together, the loss at a sample reaches block k in proportion to its blend weight."""
    _, _, margin = two_slabs()
    fields = [Fog(), Fog()]
    toy, _, _ = two_slabs()
    field = BlendedField(fields, list(toy.grids), toy.boxes.numpy(), toy.weights)
    for x0, w0 in ((-1.0, 1.0), (1.0, 0.0), (0.1, (margin - 0.1) / (2 * margin))):
        for f in fields:
            f.zero_grad()
        field.density(torch.tensor([[x0, 0.0, 0.0]])).sum().backward()
        grads = [0.0 if f.a.grad is None else float(f.a.grad) for f in fields]
        assert grads == pytest.approx([w0, 1.0 - w0], abs=1e-6)  # d sigma / d a_k = w_k exp(a_k), a_k = 0


def test_together_refreshes_each_blocks_grid_then_their_union():
    from types import SimpleNamespace

    from fieldfit.methods.blocks.together import Together

    toy, union, _ = two_slabs()
    seen = []

    def model(k):
        def update_grid(step, step_size, n_cells, threshold, decay):
            seen.append((k, n_cells))
            toy.grids[k].binary.fill_(k == 0)  # block 1 found nothing

        return SimpleNamespace(grid=toy.grids[k], update_grid=update_grid)

    together = Together(toy, union, [model(0), model(1)], [b.numpy() for b in toy.boxes])
    together.update_grid(100, 0.01, n_cells=union.binary.numel() // 4)
    assert seen == [(0, toy.grids[0].binary.numel() // 4), (1, toy.grids[1].binary.numel() // 4)]
    x = torch.tensor([[-1.5, 0.0, 0.0], [1.5, 0.0, 0.0]])
    assert union.occupied(x).tolist() == [True, False]
    assert set(together.state_dict()) >= {"grid.binary", "field.boxes", "field.grids.1.binary"}
    assert not any(k.startswith("_models") for k in together.state_dict())


# -- one tiny fit in blocks -----------------------------------------------------------------------------------------
def fit_blocks(tmp_path_factory, args):
    out = tmp_path_factory.mktemp("blocks") / "parent"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = run_main("street", *args, "--out", out)
    finally:
        torch.set_num_threads(n)
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """Two blocks trained together (the default)."""
    return fit_blocks(tmp_path_factory, FIT)


@pytest.fixture(scope="module")
def apart(tmp_path_factory):
    """Two blocks trained apart, one after the other (the mesh test's fit too: the mesh is made from the blended
    field either way)."""
    return fit_blocks(tmp_path_factory, APART)


def test_blocks_trained_together_write_a_parent_of_block_runs(parent, street):
    out, r = parent
    assert "trained together for 60 steps" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["train"] == "together"
    for b in cfg["blocks"]:
        child = json.loads((out / b["run"] / "config.json").read_text())
        assert child["method"] == "rbf"
        assert child["march"]["step"] == cfg["step"]
        assert np.allclose(child["aabb"], b["box"])
        m = json.loads((out / b["run"] / "metrics.json").read_text())
        assert m["trained"] == "together"
        assert m["steps"] == 60
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"] == "together"
    assert metrics["steps"] == 60
    assert metrics["test"]["views"] == len(street.split("test"))
    assert metrics["params"] == sum(b["params"] for b in metrics["blocks"])
    assert (out / "metrics.csv").is_file()


def test_blocks_trained_together_go_on_from_the_parents_checkpoint(parent):
    out, _ = parent
    before = json.loads((out / "metrics.json").read_text())["test"]["psnr"]
    r = run_main("street", *FIT, "--out", out)  # the budget is spent: nothing more to train
    assert r.returncode == 0, r.stderr
    assert "resumed from step 60" in r.stdout
    assert json.loads((out / "metrics.json").read_text())["test"]["psnr"] == pytest.approx(before, abs=1e-4)
    r = run_main("street", *APART, "--out", out)
    assert r.returncode == 2
    assert "holds the blocks of another" in r.stderr


def test_old_parents_read_as_trained_apart():
    from fieldfit.methods.blocks.config import BlocksConfig

    assert BlocksConfig.from_dict({"grid": "2x1"}).train == "apart"
    assert BlocksConfig.from_dict(BlocksConfig().to_dict()).train == "together"


def test_an_old_parent_goes_on_apart(apart):
    out, _ = apart
    cfg = json.loads((out / "config.json").read_text())
    del cfg["config"]["train"]  # as written before --train existed
    (out / "config.json").write_text(json.dumps(cfg))
    r = run_main("street", *APART, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "finished before, kept" in r.stdout


def test_fit_in_blocks_apart_writes_a_parent_of_block_runs(apart):
    out, r = apart
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "blocks"
    assert cfg["task"] == "radiance"
    assert [b["run"] for b in cfg["blocks"]] == ["blocks/b0_0", "blocks/b1_0"]
    assert "60 steps per block" in r.stdout
    assert "block 1/2 b0_0" in r.stdout
    assert "block 2/2 b1_0" in r.stdout
    for b in cfg["blocks"]:
        child = json.loads((out / b["run"] / "config.json").read_text())
        assert child["method"] == "rbf"
        assert child["march"]["step"] == cfg["step"]
        assert np.allclose(child["aabb"], b["box"])
    metrics = json.loads((out / "metrics.json").read_text())
    street = load_scene(street_scene_dir())
    assert metrics["test"]["views"] == len(street.split("test"))
    assert len(list((out / "renders").glob("test_*.png"))) == len(street.split("test"))
    assert metrics["params"] == sum(b["params"] for b in metrics["blocks"])


def test_block_scene_keeps_its_views_and_box(parent, street):
    out, _ = parent
    cfg = json.loads((out / "config.json").read_text())
    b = cfg["blocks"][1]
    part = load_scene(out / b["scene_dir"])
    assert np.allclose(part.aabb, b["box"])
    assert len(part.split("train")) == len(b["train"])
    assert len(part.split("test")) == len(b["test"])
    k = b["train"][3]
    assert np.array_equal(part.image(3), street.image(k))
    assert np.array_equal(part.frames[3].camera.c2w, street.frames[k].camera.c2w)


def looking_down(x: float, y: float, z: float = 0.3) -> Camera:
    """A 6x6 camera at (x, y, z) looking straight down with a narrow lens (every ray stays near x, y)."""
    return Camera(look_at([x, y, z], [x, y, -1.0], [1.0, 0.0, 0.0]), 60.0, 60.0, 3.0, 3.0, 6, 6)


@pytest.mark.parametrize("how", ["parent", "apart"])
def test_parent_render_inside_a_block_is_that_blocks_render(how, request):
    import fieldfit

    out, _ = request.getfixturevalue(how)
    model = fieldfit.load(out, "cpu")
    cfg = model.config
    for k, b in enumerate(cfg["blocks"]):
        cell = np.asarray(b["cell"])
        x = cell[:, 0].mean()  # the middle of the cell: far from any band
        cam = looking_down(x, 0.0)
        mine, theirs = model.render(cam), model.blocks[k].render(cam)
        assert float(theirs.opacity.mean()) > 0.05  # the block drew something there
        assert torch.allclose(mine.rgb, theirs.rgb, atol=1e-5)
        assert torch.allclose(mine.opacity, theirs.opacity, atol=1e-5)


def test_eval_of_the_parent(parent):
    out, _ = parent
    before = json.loads((out / "metrics.json").read_text())["test"]["psnr"]
    r = run_main("eval", out)
    assert r.returncode == 0, r.stderr
    assert f"test.psnr {before:.4g}" in r.stdout  # the same renders from the checkpoints
    assert json.loads((out / "metrics.json").read_text())["test"]["psnr"] == pytest.approx(before)


@pytest.mark.slow
def test_one_watertight_mesh_of_the_blocks(apart, tmp_path):
    from fieldfit.mesh.weld import load_welded, reload_report

    out, _ = apart
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["watertight"] is True
    mesh = tmp_path / "street.ply"
    r = run_main("export", out, "--mesh", mesh, "--resolution", "40")
    assert r.returncode == 0, r.stderr
    assert "watertight True" in r.stdout
    for how, report in reload_report(mesh).items():  # as other tools load it: welded, closed, outward
        assert report["ok"], (how, report)
    v, _ = load_welded(mesh, 0.0)
    assert v[:, 0].min() < -1.0
    assert v[:, 0].max() > 1.0


def test_the_same_out_again_keeps_finished_blocks_and_resumes_the_others(apart):
    out, _ = apart
    done = out / "blocks" / "b0_0" / "checkpoint.safetensors"
    stamp = os.stat(done).st_mtime_ns
    (out / "blocks" / "b1_0" / "metrics.json").unlink()  # as if stopped before its end
    r = run_main("street", *APART, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "block 1/2 b0_0: finished before, kept" in r.stdout
    assert "block 2/2 b1_0" in r.stdout
    assert "resumed for 60 steps" in r.stdout
    assert os.stat(done).st_mtime_ns == stamp
    assert (out / "blocks" / "b1_0" / "metrics.json").is_file()
    r = run_main("street", *APART[:-3], "48", "--train", "apart", "--overlap", "0.2", "--out", out)  # another partition
    assert r.returncode == 2
    assert "holds the blocks of another" in r.stderr


def test_a_block_that_fails_is_named_in_one_line(apart):
    out, _ = apart
    child = out / "blocks" / "b1_0"
    (child / "metrics.json").unlink()
    (child / "checkpoint.safetensors").write_bytes(b"not a checkpoint")
    r = run_main("street", *APART, "--out", out)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("fieldfit: error: block 2/2 b1_0: failed:")
    assert "checkpoint" in r.stderr


@pytest.mark.parametrize(("args", "what"), [(["--blocks", "2by2"], "--blocks 2by2"),
                                            (["--blocks", "2x1", "--overlap", "0.7"], "--overlap"),
                                            (["--blocks", "2x1", "--method", "dnmp"], "--method dnmp"),
                                            (["--blocks", "2x1", "--contract", "on"], "--contract on")])
def test_bad_blocks_arguments_are_one_line(tmp_path, args, what):
    r = run_main("street", *args, "--steps", "2", "--out", tmp_path / "p")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert what in r.stderr


def test_blender_json_bounds_are_read_and_checked(tmp_path):
    src = street_scene_dir()
    os.symlink(src / "train", tmp_path / "train")
    meta = json.loads((src / "transforms_train.json").read_text())
    (tmp_path / "transforms_train.json").write_text(json.dumps({**meta, "aabb": [[-1, -2, -3], [1, 2, 3]]}))
    scene = load_scene(tmp_path)
    assert scene.aabb.tolist() == [[-1, -2, -3], [1, 2, 3]]
    assert (scene.near, scene.far) == (meta["near"], meta["far"])
    (tmp_path / "transforms_train.json").write_text(json.dumps({**meta, "aabb": [[1, 0, 0], [0, 1, 1]]}))
    with pytest.raises(InputError, match="bounds out of order") as e:
        load_scene(tmp_path)
    assert e.value.path.endswith("transforms_train.json")


def test_a_damaged_block_json_is_named(tmp_path):
    from fieldfit.scenes.subset import write_block_scene

    folder = write_block_scene(tmp_path / "b", "street", [0, 1, 2], [3], [[-1, -1, 0], [1, 1, 1]], 0.05, 10.0)
    assert len(load_scene(folder).frames) == 4
    (folder / "block.json").write_text(json.dumps({"fieldfit_block": 1, "scene": "street", "train": [0, 999],
                                                   "test": [], "aabb": [[0, 0, 0], [1, 1, 1]], "near": 0, "far": 1}))
    with pytest.raises(InputError, match="999") as e:
        load_scene(folder)
    assert e.value.path.endswith("block.json")
    (folder / "block.json").write_text(json.dumps({"fieldfit_block": 1, "scene": "street"}))
    with pytest.raises(InputError, match="not a block description"):
        load_scene(folder)


def test_street_large_is_the_same_street_seen_more(tmp_path, monkeypatch):
    from fieldfit.scenes import builtin

    monkeypatch.setattr(builtin, "STREET_LARGE", (3, (32, 24)))  # small here; 64 positions of 128x96 for real
    assert builtin.BUILTIN["street_large"].task == "radiance"
    big = load_scene(builtin.street_scene_dir(tmp_path, large=True))
    small = load_scene(street_scene_dir())
    assert big.root != small.root
    assert len(big.frames) == 4 * 3
    assert (big.frames[0].camera.width, big.frames[0].camera.height) == (32, 24)
    assert np.allclose(big.aabb, small.aabb)
    np.testing.assert_allclose(big.frames[0].camera.c2w, small.frames[0].camera.c2w)  # the first place is shared
