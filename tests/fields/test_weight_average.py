"""``optim.WeightAverage``: the moving average a fit's results use, its ramp, and its place in checkpoints."""

import pytest
import torch

from fieldfit.optim import WeightAverage, make_adam
from fieldfit.runs import Run, load_model, model_state
from fieldfit.trainer import History, resume_state, save


def test_the_average_follows_its_ramp_then_its_decay():
    w = torch.nn.Linear(3, 2)
    avg = WeightAverage(w, 0.99)
    assert not any(p.requires_grad for p in avg.module.parameters())
    expect = w.weight.detach().clone()
    for n in range(1000):  # the ramp reaches 0.99 at the 891st update
        with torch.no_grad():
            w.weight.add_(torch.randn_like(w.weight))
        rate = 1.0 - min(0.99, (1.0 + n) / (10.0 + n))
        assert avg.rate() == pytest.approx(rate)
        expect = expect + rate * (w.weight.detach() - expect)
        avg.update()
    torch.testing.assert_close(avg.module.weight, expect)
    assert avg.rate() == pytest.approx(0.01)  # the ramp has reached the decay
    avg.reset()
    torch.testing.assert_close(avg.module.weight, w.weight.detach())
    assert avg.updates == 0
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(w, 1.0)


def test_the_average_of_noisy_steps_lies_nearer_the_optimum():
    """Adam at a constant rate on a noisy least-squares problem: its last weights jitter about the optimum; their
    average does not."""
    torch.manual_seed(0)
    x = torch.randn(2048, 8)
    truth = torch.randn(8, 1)
    y = x @ truth
    model = torch.nn.Linear(8, 1, bias=False)
    opt = make_adam([{"params": model.parameters(), "lr": 0.02}])
    avg = WeightAverage(model, 0.99)
    for _ in range(1500):
        idx = torch.randint(0, 2048, (16,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx] + 0.3 * torch.randn(16, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg.update()
    last = float((model.weight.detach().t() - truth).norm())
    averaged = float((avg.module.weight.t() - truth).norm())
    assert averaged < 0.5 * last, (averaged, last)


def _trained(steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = make_adam([{"params": model.parameters(), "lr": 0.05}])
    avg = WeightAverage(model, 0.9)
    for _ in range(steps):
        loss = model(torch.randn(8, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg.update()
    return model, opt, avg


def test_a_checkpoint_shows_the_average_and_resumes_the_trained_weights(tmp_path):
    model, opt, avg = _trained(30)
    run = Run.create(tmp_path / "run")
    save(run, model_state(model, opt, avg), 30, 1.0, History())
    # loading the run (what render, view and eval do) gives the average
    shown = torch.nn.Linear(4, 3)
    load_model(run, shown)
    torch.testing.assert_close(shown.weight, avg.module.weight)
    assert not torch.allclose(shown.weight, model.weight)
    # a resumed fit goes on from the trained weights, its average from the saved one
    again, opt2, fresh = _trained(0, seed=1)  # another model, not trained yet
    step, _, _ = resume_state(run, again, opt2, "cpu", fresh)
    assert step == 30
    torch.testing.assert_close(again.weight, model.weight)
    torch.testing.assert_close(fresh.module.weight, avg.module.weight)
    assert fresh.updates == avg.updates == 30
    torch.testing.assert_close(opt2.state[again.weight]["exp_avg"], opt.state[model.weight]["exp_avg"])


def test_a_checkpoint_without_an_average_starts_one_from_its_weights(tmp_path):
    model, opt, _ = _trained(5)
    run = Run.create(tmp_path / "run")
    save(run, model_state(model, opt), 5, 1.0, History())
    again = torch.nn.Linear(4, 3)
    avg = WeightAverage(again, 0.9)
    resume_state(run, again, make_adam([{"params": again.parameters(), "lr": 0.05}]), "cpu", avg)
    torch.testing.assert_close(again.weight, model.weight)
    torch.testing.assert_close(avg.module.weight, model.weight)
    assert avg.updates == 0
