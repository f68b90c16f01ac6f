"""Dynamic resolution with fake frame times: holds the frame rate while moving, refines when still."""

import pytest

from fieldfit.viewer.resolution import ResolutionController, scaled_size


def _frame_time(scale, fixed=0.004, per_full_frame=0.4):
    """A fake renderer: fixed cost plus cost per pixel (0.4 s for a full-resolution frame)."""
    return fixed + per_full_frame * scale * scale


def _move(ctl, frames, cost=_frame_time):
    for _ in range(frames):
        ctl.moved()
        s = ctl.scale()
        ctl.record(cost(s), s)
    return ctl.scale()


def test_holds_target_fps_while_moving():
    ctl = ResolutionController(target_fps=30)
    s = _move(ctl, 40)
    t = _frame_time(s)
    assert 1 / 30 * 0.8 <= t <= 1 / 30 * 1.25, (s, t)  # within a quantum of the budget
    assert s < 0.5
    # a cheaper renderer gets a higher scale; one that is fast enough gets full resolution
    assert _move(ResolutionController(30), 40, lambda s: _frame_time(s, per_full_frame=0.1)) > s
    assert _move(ResolutionController(30), 40, lambda s: _frame_time(s, per_full_frame=0.01)) == 1.0


def test_adapts_when_the_cost_changes():
    ctl = ResolutionController(target_fps=30)
    slow = _move(ctl, 40, lambda s: _frame_time(s, per_full_frame=1.0))
    fast = _move(ctl, 40, lambda s: _frame_time(s, per_full_frame=0.1))
    assert fast > slow * 2


def test_refines_to_full_scale_when_still_once():
    ctl = ResolutionController(target_fps=30, settle_s=0.2)
    moving = _move(ctl, 30)
    assert moving < 1.0
    assert not ctl.needs_frame()
    ctl.tick(0.1)
    assert ctl.scale() == moving
    assert not ctl.needs_frame()
    ctl.tick(0.15)
    assert ctl.needs_frame()
    assert ctl.scale() == 1.0
    ctl.record(_frame_time(1.0), 1.0)  # the slow full frame does not teach the moving scale
    assert not ctl.needs_frame()
    ctl.moved()
    assert ctl.scale() == moving  # moving again: straight back to the learned scale


def test_pinned_scale_and_limits():
    ctl = ResolutionController(target_fps=30, pinned=0.5)
    assert _move(ctl, 20) == 0.5
    ctl.tick(10)
    assert ctl.scale() == 0.5
    assert not ctl.needs_frame()
    ctl.pin(None)
    assert ctl.scale() == 1.0  # still: full resolution
    ctl.pin(7.0)
    assert ctl.scale() == 1.0
    ctl.pin(0.0)
    assert ctl.scale() == ctl.min_scale
    huge = ResolutionController(target_fps=1000, min_scale=0.1)
    assert 0.1 <= _move(huge, 50) <= 0.1 + huge.quantum  # down to min_scale (within one quantum), never below
    with pytest.raises(ValueError, match="target_fps"):
        ResolutionController(target_fps=0)


def test_scaled_size():
    assert scaled_size(800, 600, 0.5) == (400, 300)
    assert scaled_size(10, 10, 0.01) == (1, 1)


def test_upscale_is_bilinear_within_one_level():
    import numpy as np
    import torch

    from fieldfit.viewer.overlay import upscale

    img = np.random.default_rng(0).integers(0, 256, (13, 7, 3), dtype=np.uint8)
    out = upscale(img, 50, 31)
    ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].double(), size=(31, 50),
                                          mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert out.dtype == np.uint8
    assert out.shape == (31, 50, 3)
    assert out.flags["C_CONTIGUOUS"]
    assert np.abs(out.astype(np.float64) - ref).max() <= 1.0  # uint8 arithmetic rounds differently
    assert upscale(img, 7, 13) is img  # same size: no copy


def test_compose_takes_tensors():
    import numpy as np
    import torch

    from fieldfit.viewer.overlay import compose, upscale
    from fieldfit.viewer.views.base import frame_uint8, to_uint8

    img = np.random.default_rng(1).integers(0, 256, (13, 7, 3), dtype=np.uint8)
    assert np.array_equal(compose(torch.from_numpy(img), 50, 31), upscale(img, 50, 31))  # CPU tensor: numpy path
    rgb = torch.rand(9, 5, 3) * 1.2 - 0.1
    assert isinstance(frame_uint8(rgb), np.ndarray)
    assert np.array_equal(frame_uint8(rgb), to_uint8(rgb))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_frames_are_converted_and_scaled_on_the_gpu():
    import numpy as np
    import torch

    from fieldfit.viewer.overlay import compose
    from fieldfit.viewer.views.base import frame_uint8, to_uint8

    rgb = torch.rand(9, 5, 3) * 1.2 - 0.1
    on_gpu = frame_uint8(rgb.cuda())
    assert on_gpu.is_cuda
    assert np.array_equal(on_gpu.cpu().numpy(), to_uint8(rgb))
    img = np.random.default_rng(1).integers(0, 256, (13, 7, 3), dtype=np.uint8)
    out = compose(torch.from_numpy(img).cuda(), 50, 31, ["status"])
    ref = compose(img, 50, 31, ["status"])
    assert out.dtype == np.uint8
    assert out.shape == ref.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # float vs uint8 bilinear rounding
