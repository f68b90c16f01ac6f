"""``optim.Passes``: the batch order of image and radiance fits, every item once a pass."""

import pytest
import torch

from fieldfit.optim import Passes, ShuffledRows


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


def test_shuffled_rows_are_the_passes_batches():
    uv = torch.arange(20.0).view(10, 2)
    rgb = torch.arange(30.0).view(10, 3) * -1
    rows = ShuffledRows((uv, rgb), torch.Generator().manual_seed(0))
    passes = Passes(10, "cpu", torch.Generator().manual_seed(0))
    for _ in range(7):  # across passes: each pass's copies are taken in that pass's order
        idx = passes.next(4)
        a, b = rows.rows(4)
        assert torch.equal(a, uv[idx])
        assert torch.equal(b, rgb[idx])
    assert rows.rows(100)[0].shape == (10, 2)  # at most every row once
    with pytest.raises(ValueError, match="share their first dimension"):
        ShuffledRows((uv, rgb[:9]))
