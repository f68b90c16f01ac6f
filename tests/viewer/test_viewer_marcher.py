"""The viewer's marcher choice on a GPU (viewer/marcher.py): timed trials, then the fastest, per frame size."""

import logging

import numpy as np
import pytest

from fieldfit.viewer.marcher import MarcherChoice


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def settle(choice, n, cost, limit=50):
    """Draw frames of n rays with per-marcher costs (a dict, or a function of (marcher, call)) until decided."""
    picks, calls = [], {}
    for _ in range(limit):
        m = choice.pick(n)
        picks.append(m)
        if choice.settled:
            return m, picks
        calls[m] = calls.get(m, 0) + 1
        choice.record(n, m, cost(m, calls[m]) if callable(cost) else cost[m])
    raise AssertionError(f"no decision after {limit} frames: {picks}")


def test_times_each_candidate_then_keeps_the_fastest_ignoring_the_warm_up():
    c = MarcherChoice(["packed", "rounds", "fused"], trials=2)
    # fused's first frame compiles (slow), then it is the fastest; rounds is always slowest
    cost = lambda m, k: {"packed": 0.020, "rounds": 0.030, "fused": 5.0 if k == 1 else 0.008}[m]  # noqa: E731 - a fake clock
    best, picks = settle(c, 640_000, cost)
    assert best == "fused"
    assert picks[:-1].count("fused") == 3
    assert picks[:-1].count("packed") == 3
    assert c.chosen_for(640_000) == "fused"
    assert c.pick(640_000) == "fused"
    assert c.settled
    # the minimum of the timed frames decides (one slow outlier does not lose a marcher its place)
    c2 = MarcherChoice(["packed", "rounds"], trials=2)
    best, _ = settle(c2, 1000, lambda m, k: {"packed": [0.0, 0.010, 0.050], "rounds": [0.0, 0.020, 0.020]}[m][k - 1])
    assert best == "packed"


def test_frame_sizes_are_decided_separately_and_rays_round_to_powers_of_four():
    c = MarcherChoice(["packed", "rounds"], trials=1)
    assert settle(c, 640_000, {"packed": 0.02, "rounds": 0.03})[0] == "packed"
    assert c.chosen_for(40_000) is None  # a dynamic-resolution frame (scale 1/4) is a new size class
    assert settle(c, 40_000, {"packed": 0.009, "rounds": 0.004})[0] == "rounds"
    assert c.size_class(600_000) == c.size_class(700_000) != c.size_class(160_000)
    assert c.chosen_for(700_000) == "packed"


def test_a_failing_marcher_is_dropped_but_never_the_last():
    c = MarcherChoice(["packed", "fused"], trials=1)
    assert c.pick(100) == "packed"
    c.failed("fused")
    assert settle(c, 100, {"packed": 0.01})[0] == "packed"
    c.failed("packed")
    assert c.candidates == ["packed"]
    with pytest.raises(ValueError, match="at least one candidate"):
        MarcherChoice([])


def test_decisions_are_retimed_only_after_the_weights_changed_and_max_age():
    clock = Clock()
    c = MarcherChoice(["packed", "rounds"], trials=1, max_age_s=30.0, clock=clock)
    assert settle(c, 100, {"packed": 0.01, "rounds": 0.02})[0] == "packed"
    clock.now = 1000.0
    assert c.pick(100) == "packed"
    assert c.settled
    c.weights_changed()  # training while viewing
    clock.now = 1010.0
    assert not (c.pick(100) and c.settled)
    assert c.chosen_for(100) is None
    c2 = MarcherChoice(["packed", "rounds"], trials=1, max_age_s=30.0, clock=clock)
    assert settle(c2, 100, {"packed": 0.01, "rounds": 0.02})[0] == "packed"  # decided at t = 1010
    clock.now = 1015.0
    c2.weights_changed()
    clock.now = 1020.0
    assert c2.pick(100) == "packed"
    assert c2.settled
    clock.now = 1041.0
    assert settle(c2, 100, {"packed": 0.03, "rounds": 0.02})[0] == "rounds"  # retimed on the new weights


@pytest.fixture(scope="module")
def radiance_view(tmp_path_factory):
    from fieldfit.cli import main as cli
    from fieldfit.viewer.registry import open_view

    d = tmp_path_factory.mktemp("viewer_marcher")
    assert cli(["blocks", "--steps", "3", "--resolution", "16", "--out", str(d / "run")]) == 0
    view = open_view(d / "run", "cpu")
    view.model.field.density_shift = 0.0  # 3 steps leave the field empty: give it density
    return view


def test_the_radiance_view_draws_the_same_picture_whichever_marcher_it_times(radiance_view, monkeypatch, caplog):
    from fieldfit.viewer.session import Session

    view = radiance_view
    assert view.choice is None
    assert view.status() == f"march {view.march}"
    assert view.march == view.model.march_mode()
    session = Session(view, overlay=False)
    pinned = session.frame(32, 32).astype(np.int16)
    assert pinned.std() > 5.0
    marchers = view.model.marchers()
    assert "packed" in marchers
    assert "rounds" in marchers
    view.choice = MarcherChoice(marchers, trials=1)
    calls = []
    render = view.model.render

    def spy(camera, mode="colour", march=None, on_device=False):
        calls.append((march, on_device))
        return render(camera, mode, march=march, on_device=on_device)

    monkeypatch.setattr(view.model, "render", spy)
    try:
        used = []
        for _ in range(2 * len(marchers) + 1):
            session.dirty = True
            img = session.frame(32, 32).astype(np.int16)
            used.append(view.choice.last)
            assert np.abs(img - pinned).max() <= 2, view.choice.last  # float rounding, at most
        assert used[:-1] == [m for m in marchers for _ in range(2)]
        assert view.choice.settled
        assert [c[0] for c in calls] == used
        assert all(c[1] for c in calls)
        assert view.status() == f"march {used[-1]}"
        # a marcher that raises (say, a kernel that does not compile) is dropped with a warning; the frame is drawn
        view.choice = MarcherChoice(["fused", "packed"], trials=1)
        monkeypatch.setattr(view.model, "render", lambda camera, mode="colour", march=None, on_device=False:
                            1 / 0 if march == "fused" else render(camera, mode, march=march, on_device=on_device))
        with caplog.at_level(logging.WARNING, logger="fieldfit"):
            img = view.render(session.camera.at(32, 32))
        assert np.abs(img.astype(np.int16) - pinned).max() <= 2
        assert view.choice.candidates == ["packed"]
        assert "fused marcher failed" in caplog.text
        assert view.status() == "march packed (timing)"
        view.choice = MarcherChoice(["fused"], trials=1)  # the last one left: its error reaches the user
        with pytest.raises(ZeroDivisionError):
            view.render(session.camera.at(32, 32))
    finally:
        view.choice = None
