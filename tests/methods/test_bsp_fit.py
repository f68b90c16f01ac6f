"""fields/bsp.py and methods/bsp_train.py: phase losses, 2D toy fit, CSG recovery, pruning."""

import numpy as np
import pytest
import torch

from fieldfit.fields.bsp import T_THRESHOLD, BSPField, BSPFieldConfig
from fieldfit.methods.bsp import train as bt

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(label_fn, dim, planes, convexes, steps, seed=0, batch=2048, n=40_000):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    pool = bt.make_pool(label_fn, bt.boundary_points(label_fn, dim, 48), n, rng, dim=dim)
    model = BSPField(BSPFieldConfig(dim=dim, planes=planes, convexes=convexes))
    x, f = pool.all()
    model.seed_all(*pool.seeds(), rng)
    fitter = bt.Fitter(model, pool, bt.Schedule(batch=batch), rng)
    for i in range(steps):
        fitter.step(i, i / steps)
    return model, pool, rng


def toy2d(p):
    """An L of two rectangles and a triangle (exactly 3 convexes)."""
    x, y = p[:, 0], p[:, 1]
    a = (np.abs(x + 0.2) < 0.5) & (np.abs(y + 0.4) < 0.2)
    b = (np.abs(x + 0.5) < 0.2) & (np.abs(y) < 0.6)
    c = (y > 0.0) & (y < 0.7 - np.abs(x - 0.35)) & (x > 0)
    return a | b | c


def l_shape(p):
    """Two boxes making an L (3D)."""
    a = np.all(np.abs(p - [-0.2, -0.3, 0.0]) <= [0.5, 0.2, 0.3], axis=1)
    b = np.all(np.abs(p - [-0.5, 0.2, 0.0]) <= [0.2, 0.5, 0.3], axis=1)
    return a | b


def test_losses_are_zero_on_a_perfect_fit_and_bounded_otherwise():
    m = BSPField(BSPFieldConfig(dim=2, planes=4, convexes=1))
    with torch.no_grad():  # the square |x|,|y| <= 0.5 as one convex
        m.normals.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]))
        m.offsets.fill_(-0.5)
        m.T.fill_(1.0)
    x = torch.tensor([[0.0, 0.0], [0.2, -0.3], [0.9, 0.0], [0.0, -0.95]])
    f = torch.tensor([1.0, 1.0, 0.0, 0.0])
    c = m.convex_values(x, 10.0)
    sched = bt.Schedule()
    assert bt.loss_phase0(m.continuous_union(c), f, m, sched).item() == pytest.approx(0.0, abs=1e-7)
    assert bt.loss_phase3(m.member_min_union(x, 10.0), f, m, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    wrong = 1 - f
    assert bt.loss_phase0(m.continuous_union(c), wrong, m, sched).item() == pytest.approx(1.0)
    assert bt.loss_phase3(m.member_min_union(x, 10.0), wrong, m, 0.0).item() > 0.5
    with torch.no_grad():  # T outside [0,1] and not binary: L_T and L_T' see it
        m.T.fill_(1.5)
    assert bt.loss_phase0(m.continuous_union(m.convex_values(x, 10.0)), f, m, sched).item() >= 4 * 0.5
    with torch.no_grad():  # each T_ij is 0.3 from its nearer end; S* = 0 is wrong on 2 points of 4
        m.T.fill_(0.7)
    assert bt.loss_phase3(torch.zeros(4), f, m, 1.0).item() == pytest.approx(0.5 + 4 * 0.3)


def test_member_min_union_is_the_polytopes_with_straight_through_gradients():
    torch.manual_seed(0)
    m = BSPField(BSPFieldConfig(dim=3, planes=32, convexes=4))
    with torch.no_grad():
        m.T.uniform_(0, 1)
    x = torch.rand(5000, 3) * 2 - 1
    s = m.member_min_union(x, 20.0)
    d = torch.relu(20.0 * m.plane_distances(x)).detach()
    member = (m.T > T_THRESHOLD).float()
    dense = d @ (m.T.detach() * member)  # the double-loop-free reference
    assert torch.allclose(s.detach(), dense.min(1).values, atol=1e-5)
    assert torch.equal(m.member_min_union(x, 1e4) <= 0, m.hard_inside(x))
    s.sum().backward()
    onehot = torch.nn.functional.one_hot(dense.argmin(1), 4).float()
    assert torch.allclose(m.T.grad, d.T @ onehot, rtol=1e-4, atol=1e-3)  # every T_ij, members or not
    assert (m.T.grad[member == 0] != 0).any()


def test_inside_depth_matches_a_double_loop():
    torch.manual_seed(1)
    m = BSPField(BSPFieldConfig(dim=2, planes=24, convexes=3))
    with torch.no_grad():
        m.T.copy_((torch.rand(24, 3) < 0.4).float())
        m.offsets.fill_(-0.4)
    x = torch.rand(300, 2) * 2 - 1
    _, depth = m.member_min_union(x, 50.0, with_depth=True)
    h = m.plane_distances(x).detach()
    ref = torch.zeros(300)
    for n in range(300):
        for j in range(3):
            e = max(h[n, i].item() for i in range(24) if m.T[i, j] > T_THRESHOLD)
            ref[n] += max(-e, 0.0)
    assert torch.allclose(depth.detach(), ref, atol=1e-6)
    assert (ref > 0).any()
    depth.sum().backward()
    assert m.offsets.grad.abs().sum() > 0


def test_phases_0_then_3_fit_a_2d_toy_shape():
    model, pool, _ = fit(toy2d, dim=2, planes=64, convexes=16, steps=400)
    probe = torch.rand(40_000, 2) * 2 - 1
    truth = torch.as_tensor(toy2d(probe.numpy()), dtype=torch.float32)
    assert bt.hard_iou(model, probe, truth) > 0.95
    x, f = pool.all()
    report = bt.prune(model, x[f > 0.5])
    assert 3 <= report["convexes"] <= 16
    assert bt.hard_iou(model, probe, truth) > 0.95  # pruning removes nothing that shows


def test_csg_l_shape_is_recovered_as_convex_parts():
    from fieldfit.mesh.convex import convex_polytope
    from fieldfit.mesh.inside import inside
    from fieldfit.mesh.topology import is_watertight, signed_volume
    from fieldfit.methods.bsp.pipeline import extract

    model, pool, _ = fit(l_shape, dim=3, planes=64, convexes=8, steps=300)
    x, f = pool.all()
    report = bt.prune(model, x[f > 0.5])
    v, faces, labels, _ = extract(model)
    assert is_watertight(v, faces)
    true_volume = 2 * (1.0 * 0.4 * 0.6) - 0.4 * 0.2 * 0.6  # two 1 x .4 x .6 boxes overlapping in .4 x .2 x .6
    assert signed_volume(v, faces) == pytest.approx(true_volume, rel=0.05)
    p = np.random.default_rng(1).uniform(-1, 1, (200_000, 3))
    pred, gt = inside(p, v, faces), l_shape(p)
    assert (pred & gt).sum() / (pred | gt).sum() > 0.95
    assert len(set(labels.tolist())) == report["convexes"] <= 8
    for j in torch.nonzero(model.alive).flatten().tolist():  # every convex is a part of the L
        cv, cf = convex_polytope(model.convex_planes(j))
        q = p[inside(p, cv, cf)]
        assert len(q)
        assert np.mean(l_shape(q)) > 0.9


def test_prune_drops_dead_and_covered_convexes():
    m = BSPField(BSPFieldConfig(dim=2, planes=12, convexes=3))
    with torch.no_grad():
        m.normals.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]]).repeat(3, 1))
        m.offsets.copy_(torch.tensor([-0.5] * 4 + [-0.2] * 4 + [-0.5, 10.0, -0.5, -0.5]))  # big, small inside, empty
        m.T.zero_()
        for j in range(3):
            m.T[torch.arange(12) // 4 == j, j] = 1.0
    pts = torch.rand(2000, 2) - 0.5
    report = bt.prune(m, pts)
    assert m.alive.tolist() == [True, False, False]
    assert report == {"convexes": 1, "dead": 1, "redundant": 1, "planes": 4}
