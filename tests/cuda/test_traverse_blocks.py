"""traverse_occupancy's torch path (``cuda._traverse_torch``): the reference's intervals exactly, bit for bit and
in the same order, with whole blocks of empty steps skipped."""

import pytest
import torch

from fieldfit.cuda import _traverse_torch, traverse_occupancy
from fieldfit.cuda._torch_ref import traverse_occupancy_ref
from fieldfit.cuda._traverse_torch import (
    COARSE,
    MIN_BLOCK,
    coarse_near,
    plan,
    traverse_blocks,
)
from fieldfit.render.rays import ray_aabb


def _scene(seed, dtype, shape, kind, unit_dirs, wide_spans):
    g = torch.Generator().manual_seed(seed)
    if kind == "blob":  # one small occupied box: most blocks are empty
        binary = torch.zeros(shape, dtype=torch.bool)
        c = [int(torch.randint(0, s - 3, (1,), generator=g)) for s in shape]
        binary[c[0] : c[0] + 3, c[1] : c[1] + 2, c[2] : c[2] + 4] = True
    else:  # scattered cells, some of them on the box's faces
        binary = torch.rand(shape, generator=g) < {"sparse": 0.01, "dense": 0.4}[kind]
        binary[0, :, 0] |= torch.rand(shape[1], generator=g) < 0.5
    lo = torch.randn(3, generator=g, dtype=dtype)
    aabb = torch.stack([lo, lo + 1 + 2 * torch.rand(3, generator=g, dtype=dtype)])
    n = 400
    origins = aabb.mean(0) + 2.5 * torch.randn(n, 3, generator=g, dtype=dtype)
    dirs = aabb.mean(0) + 0.3 * torch.randn(n, 3, generator=g, dtype=dtype) - origins
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    if not unit_dirs:  # t in units of |d|
        dirs = dirs * (0.5 + torch.rand(n, 1, generator=g, dtype=dtype))
    dirs[:20, 1] = 0.0  # rays along a grid plane
    t_near, t_far, hit = ray_aabb(origins, dirs, aabb)
    t_min = t_near.clamp_min(0)
    t_max = torch.where(hit & (t_far > t_min), t_far, t_min)
    if wide_spans:  # spans that start and end outside the box
        t_min, t_max = t_min - 0.2, t_max + 0.3
    cell = float(((aabb[1] - aabb[0]) / torch.tensor(shape, dtype=dtype)).min())
    step = 0.4 * cell * float(torch.rand(1, generator=g)) + 0.05 * cell
    m = int(((t_max - t_min).max() / step).ceil()) + 1
    jitter = torch.rand(n, generator=g, dtype=dtype)
    return (origins, dirs, t_min, t_max, binary, aabb), step, m, jitter


CASES = [  # (shape, kind, unit dirs, wide spans, dtype)
    ((32, 32, 32), "blob", True, False, torch.float32),
    ((48, 40, 56), "sparse", False, True, torch.float32),
    ((29, 64, 33), "dense", True, True, torch.float32),  # sizes that are no multiple of COARSE
    ((64, 64, 64), "sparse", True, False, torch.float64),
    ((17, 23, 40), "blob", False, True, torch.float64),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("use_jitter", [False, True], ids=["fixed", "jitter"])
def test_blocks_equal_the_reference(case, use_jitter, monkeypatch):
    shape, kind, unit, wide, dtype = CASES[case]
    args, step, m, jitter = _scene(case, dtype, shape, kind, unit, wide)
    jitter = jitter if use_jitter else None
    assert plan(args[1], args[4], args[5], step)[1] >= MIN_BLOCK  # blocks are taken
    ref = traverse_occupancy_ref(*args, step, m, jitter)
    assert ref[0].numel() > 0
    outs = [traverse_occupancy(*args, step, m, jitter)]  # dense grids go to the reference there (MAX_NEAR)
    monkeypatch.setattr(_traverse_torch, "MAX_NEAR", 1.0)  # blocks for every grid
    outs.append(traverse_blocks(*args, step, m, jitter))
    for got in outs:
        for a, b in zip(got, ref, strict=True):
            assert a.dtype == b.dtype
            assert torch.equal(a, b)


def test_blocks_with_a_step_cap(monkeypatch):
    monkeypatch.setattr(_traverse_torch, "MAX_NEAR", 1.0)
    args, step, m, jitter = _scene(7, torch.float32, (32, 32, 32), "dense", True, False)
    for cap in (1, MIN_BLOCK + 1, m // 3):
        ref = traverse_occupancy_ref(*args, step, cap, jitter)
        got = traverse_blocks(*args, step, cap, jitter)
        assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))


def test_coarse_cells_cover_every_occupied_neighbour():
    binary = torch.zeros(20, 20, 20, dtype=torch.bool)
    binary[9, 0, 19] = True
    near = coarse_near(binary)
    assert near.shape == (5, 5, 5)  # ceil(20 / 4)
    cell = (9 // COARSE, 0, 19 // COARSE)
    expect = torch.zeros_like(near)
    expect[cell[0] - 1 : cell[0] + 2, 0:2, cell[2] - 1 :] = True
    assert torch.equal(near, expect)
    binary[9, 0, 19] = False  # an in-place write: the cached grid is not reused
    assert not coarse_near(binary).any()
    other = torch.ones(20, 20, 20, dtype=torch.bool)  # another tensor of the same shape and version
    assert coarse_near(other).all()


def test_no_rays_and_still_rays():
    args, step, m, jitter = _scene(3, torch.float32, (16, 16, 16), "dense", True, False)
    none = [a[:0] if i < 4 else a for i, a in enumerate(args)]
    out = traverse_blocks(*none, step, m, None)
    assert all(t.numel() == 0 for t in out)
    assert out[2].dtype == torch.int64
    still = list(args)
    still[1] = torch.zeros_like(args[1])
    ref = traverse_occupancy_ref(*still, step, m, None)
    assert all(torch.equal(a, b) for a, b in zip(traverse_blocks(*still, step, m, None), ref, strict=True))
