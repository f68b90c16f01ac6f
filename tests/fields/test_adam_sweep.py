"""The moments of ``make_adam``'s optimizers stay out of denormal floats and their steps stay Adam's."""

import torch

from fieldfit.optim import SWEEP_EVERY, make_adam, sweep_tiny_moments

TINY = torch.finfo(torch.float32).tiny  # 2^-126, the smallest normal float32


def _denormal(t: torch.Tensor) -> int:
    a = t.abs()
    return int(((a > 0) & (a < TINY)).sum())


def _fit(opt_of, steps: int):
    """A grid whose cells each get one gradient at a different step and none after: their moments decay."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4096))
    opt = opt_of([{"params": [w], "lr": 1e-2}])
    g = torch.randn(4096) * torch.logspace(-6, 0, 4096)
    for step in range(steps):
        w.grad = torch.zeros_like(w)
        if step < 64:  # cells touched in the first 64 steps only, a slice each
            sl = slice(64 * step, 64 * (step + 1))
            w.grad[sl] = g[sl]
        opt.step()
    return w.detach(), opt.state[w]


def test_moments_decay_to_zero_not_to_denormals():
    plain_w, plain = _fit(lambda gr: torch.optim.Adam(gr, betas=(0.9, 0.99), eps=1e-15), 1200)
    w, st = _fit(make_adam, 1200)
    assert _denormal(plain["exp_avg"]) > 1000  # the case is real: plain Adam's first moments are denormal
    assert _denormal(st["exp_avg"]) == 0
    assert _denormal(st["exp_avg_sq"]) == 0
    assert int((st["exp_avg"] == 0).sum()) > 1000
    # the same steps all the same: the ends are far below anything that moves a weight
    torch.testing.assert_close(w, plain_w, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(st["exp_avg_sq"], plain["exp_avg_sq"], rtol=1e-5, atol=1e-35)


def test_the_sweep_keeps_moments_above_its_ends_and_runs_on_step_counts():
    w = torch.nn.Parameter(torch.zeros(6))
    opt = make_adam([{"params": [w], "lr": 1e-2}])
    w.grad = torch.ones(6)
    opt.step()
    st = opt.state[w]
    st["exp_avg"].copy_(torch.tensor([1e-29, -1e-29, 1e-31, -1e-31, 2e-38, 0.0]))
    st["exp_avg_sq"].copy_(torch.tensor([1e-35, 1e-20, 1e-37, 5e-37, 1e-39, 0.0]))
    before = {k: st[k].clone() for k in ("exp_avg", "exp_avg_sq")}
    w.grad = torch.zeros(6)
    opt.step()  # step 2: no sweep
    assert st["exp_avg"][2] != 0
    assert st["exp_avg_sq"][2] != 0
    st["exp_avg"].copy_(before["exp_avg"])
    st["exp_avg_sq"].copy_(before["exp_avg_sq"])
    sweep_tiny_moments(opt)
    assert st["exp_avg"].tolist() == before["exp_avg"][:2].tolist() + [0.0] * 4
    assert st["exp_avg_sq"][:2].tolist() == before["exp_avg_sq"][:2].tolist()
    assert st["exp_avg_sq"][2:].tolist() == [0.0] * 4
    # the optimizer's own sweep comes when its step count reaches a multiple of SWEEP_EVERY
    st["exp_avg"].fill_(1e-37)
    for _ in range(SWEEP_EVERY - 3):
        opt.step()
    assert int(st["step"]) == SWEEP_EVERY - 1
    assert (st["exp_avg"] != 0).all()
    opt.step()
    assert (st["exp_avg"] == 0).all()
