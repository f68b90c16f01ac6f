"""Row-sparse training of the per-vertex features: a gather that hands its gradient to a lazy Adam.

A batch touches a few percent of the vertices. Autograd would build a dense gradient of the whole
feature table every step and Adam would update every row (most of a step's time on the CPU);
torch's sparse gradients + SparseAdam cost as much again in coalescing. Here ``RowFeatures.gather``
records (rows, gradient) in its backward, and ``RowAdam.step`` sums them per unique row and
applies Adam to those rows only (lazy Adam: untouched rows keep their moments; bias correction by
the global step, as torch.optim.SparseAdam). The tables must require grad (so that autograd
runs the gather's backward); their ``.grad`` stays None, so no other optimizer should hold them.
The moments live beside their tables (same device), and the update never leaves that device.
In a distributed fit (``fieldfit.dist``) each table's row gradients are summed over the ranks in a dense table
(one all-reduce of the table's size per step) and averaged; the rows any rank touched are updated.
"""

import torch

from fieldfit import dist


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, rows, sink):
        ctx.rows, ctx.sink = rows, sink
        return table.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        ctx.sink.append((ctx.rows, grad))
        return None, None, None


class RowAdam:
    """Adam on the rows of 2-D tables that were gathered through ``gather`` since the last step."""

    def __init__(self, tables: list[torch.Tensor], lr: float, betas=(0.9, 0.99), eps: float = 1e-15):
        self.tables = tables
        self.param_groups = [{"lr": lr, "base_lr": lr}]
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.m = [torch.zeros_like(t) for t in tables]
        self.v = [torch.zeros_like(t) for t in tables]
        self.sinks: list[list] = [[] for _ in tables]
        self.t = 0

    def gather(self, i: int, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` [N] of table i: [N,C], differentiable (a table-free gradient path when training)."""
        t = self.tables[i]
        if not torch.is_grad_enabled():
            return t.index_select(0, rows)
        return _Gather.apply(t, rows, self.sinks[i])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for s in self.sinks:
            s.clear()

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        lr = self.param_groups[0]["lr"]
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for table, m, v, sink in zip(self.tables, self.m, self.v, self.sinks, strict=True):
            if dist.active():
                uniq, g = _ranks_rows(table, sink)
                sink.clear()
                if not uniq.numel():
                    continue
            elif not sink:
                continue
            else:
                rows = torch.cat([r for r, _ in sink])
                grads = torch.cat([g for _, g in sink])
                uniq, inv = torch.unique(rows, return_inverse=True)
                g = torch.zeros(uniq.numel(), table.shape[1], dtype=grads.dtype, device=table.device).index_add_(
                    0, inv, grads)
            mr = m.index_select(0, uniq).mul_(self.b1).add_(g, alpha=1 - self.b1)
            vr = v.index_select(0, uniq).mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            m.index_copy_(0, uniq, mr)
            v.index_copy_(0, uniq, vr)
            table.index_add_(0, uniq, -lr * (mr / c1) / ((vr / c2).sqrt() + self.eps))
            sink.clear()


def _ranks_rows(table: torch.Tensor, sink: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows any rank touched [U], their gradient averaged over the ranks [U,C]) of one table."""
    dense = torch.zeros_like(table)
    touched = torch.zeros(table.shape[0], dtype=torch.uint8, device=table.device)
    for rows, grad in sink:
        dense.index_add_(0, rows, grad.to(dense.dtype))
        touched[rows] = 1
    dist.sum_(dense)
    dist.max_(touched)
    uniq = touched.nonzero().squeeze(1)
    return uniq, dense.index_select(0, uniq) / dist.world()


__all__ = ["RowAdam"]
