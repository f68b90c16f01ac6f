"""Grid memory layout and host copies on the kernels' path.

- The dense and tri-plane encodings keep their grids channels-last where the Triton kernels read them
  (set on ``.to()`` and checked per forward) and channels-first for the torch reference; the values,
  features and gradients do not depend on the layout, and a gradient comes back laid out as its grid.
- A resumed optimizer's state is laid out as its parameter (fused Adam refuses differing strides).
- The lookups make no tensor from host data per call once warm: on a GPU each would be a copy and a
  device sync (the entry tables, hash levels and march step are cached or filled on the device).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import DEVICES
from fieldfit import cuda as kernels
from fieldfit.fields.components.encodings import DenseGrid, GridConfig, TriPlane


def _channels_last(g: torch.Tensor) -> bool:
    return not g.is_contiguous() and g.movedim(0, -1).is_contiguous()


def _encodings():
    torch.manual_seed(0)
    cfg = GridConfig(levels=2, base_res=4, max_res=7, features=3, volume_max_res=4, init_scale=1.0)
    return {"dense3d": DenseGrid(3, cfg), "dense2d": DenseGrid(2, cfg), "triplane": TriPlane(cfg)}


def _features_and_grads(enc, x):
    enc.zero_grad(set_to_none=True)
    out = enc(x)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), [p.grad.clone() for p in enc.parameters()]


@pytest.mark.parametrize("kind", ["dense3d", "dense2d", "triplane"])
@pytest.mark.parametrize("device", DEVICES)
def test_encodings_sit_channels_last_where_the_kernels_read_them(kind, device, monkeypatch):
    enc = _encodings()[kind]
    x = (torch.rand(29, enc.dim if kind != "triplane" else 3, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    want, want_grads = _features_and_grads(enc, x)  # the torch reference, channels-first grids
    assert all(p.is_contiguous() for p in enc.parameters())
    monkeypatch.setenv("FIELDFIT_KERNELS", "triton")
    enc.to(device)
    assert all(_channels_last(p) for p in enc.parameters())
    got, grads = _features_and_grads(enc, x.to(device))
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-6)
    for p, g, w in zip(enc.parameters(), grads, want_grads, strict=True):
        assert g.stride() == p.stride()
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-5)
    monkeypatch.setenv("FIELDFIT_KERNELS", "torch")
    enc.to(device)  # back on the reference: channels-first again, same values
    assert all(p.is_contiguous() for p in enc.parameters())
    torch.testing.assert_close(enc(x.to(device)).detach().cpu(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_forward_lays_out_grids_that_did_not_move(device):
    """A module used where the kernels run without ``.to()`` (built there) gets its layout on first use."""
    enc = _encodings()["dense3d"]
    for p in enc.parameters():  # moved without .to()
        p.data = p.data.to(device)
    enc(torch.zeros(3, 3, device=device))
    assert all(_channels_last(p) for p in enc.parameters())


def test_resumed_optimizer_state_is_laid_out_as_its_parameter(tmp_path):
    from fieldfit.optim import make_adam
    from fieldfit.runs import Run, model_state
    from fieldfit.trainer import resume_state

    def model():
        torch.manual_seed(0)
        enc = _encodings()["triplane"]
        enc.lay_out(True)  # as on a GPU
        return enc

    enc = model()
    opt = make_adam([{"params": enc.parameters(), "lr": 0.01}])
    for p in enc.parameters():
        p.grad = torch.randn_like(p)  # laid out as p, as the kernels' gradients are
    opt.step()
    run = Run.create(tmp_path / "r")
    tensors, meta = model_state(enc, opt)()
    run.save_checkpoint(tensors, {**meta, "step": 1, "elapsed": 1.0})  # written channels-first (contiguous)
    enc2 = model()
    opt2 = make_adam([{"params": enc2.parameters(), "lr": 0.01}])
    resume_state(run, enc2, opt2, "cpu")
    for p, p2 in zip(enc.parameters(), enc2.parameters(), strict=True):
        assert p2.stride() == p.stride()
        assert torch.equal(p2, p)
        for name in ("exp_avg", "exp_avg_sq"):
            s, s2 = opt.state[p][name], opt2.state[p2][name]
            assert s2.stride() == p2.stride(), name
            assert torch.equal(s2, s), name


class _HostTensors(TorchDispatchMode):
    """Counts tensors made from host data (``torch.tensor`` and kin): on a GPU, a copy and a device sync each."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.startswith("lift_fresh"):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.usefixtures("triton_kernels")
@pytest.mark.parametrize("device", DEVICES)
def test_warm_lookups_make_no_tensors_from_host_data(device):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(20, 3, generator=g) * 2 - 1).to(device)
    enc = _encodings()["triplane"].to(device)
    table = torch.rand(3, 64, 2, generator=g).to(device)
    box = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device)
    binary = torch.ones(4, 4, 4, dtype=torch.bool, device=device)
    t0, t1 = torch.zeros(20, device=device), torch.full((20,), 3.0, device=device)

    def calls():
        enc(x).sum().backward()
        kernels.hash_grid(x, table, [2, 4, 8])
        kernels.traverse_occupancy(x * 2, -x, t0, t1, binary, box, 0.1, 64)

    calls()  # warm: the first call may make and cache what it needs
    with _HostTensors() as counter:
        calls()
    assert counter.count == 0
