"""``optim.Passes``: the batch order of image and radiance fits, every item once a pass."""

import torch

from fieldfit.optim import Passes


def test_passes_visit_every_item_once_a_pass():
    gen = torch.Generator().manual_seed(0)
    passes = Passes(10, "cpu", gen)
    first = torch.cat([passes.next(3) for _ in range(3)])  # 9 of the 10, none twice
    assert first.unique().numel() == 9
    second = torch.cat([passes.next(3) for _ in range(3)])  # the fourth batch does not fit: a new pass, a new order
    assert second.unique().numel() == 9
    assert not torch.equal(first, second)
    assert passes.next(100).sort().values.tolist() == list(range(10))  # at most every item once
    again = Passes(10, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([again.next(3) for _ in range(3)]), first)  # the generator decides the order
