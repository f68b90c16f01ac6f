"""Total variation of feature planes: its value, and its gradient added straight into the planes' gradients.

A fit adds the prior's gradient after its loss's backward (``add_plane_tv_grad``) instead of putting the prior in
the loss: through autograd (a zero-filled gradient and a sum per plane) it cost a fern step 7-10 ms, in place 3-8
(tri-plane up to 256^2, 2 CPU cores; bench/README.md).
"""

import torch


def plane_tv(g: torch.Tensor) -> torch.Tensor:
    """g [F,H,W] -> mean squared difference of vertical neighbours + that of horizontal neighbours (a scalar)."""
    _check(g)
    return ((g[:, 1:, :] - g[:, :-1, :]) ** 2).mean() + ((g[:, :, 1:] - g[:, :, :-1]) ** 2).mean()


@torch.no_grad()
def add_plane_tv_grad(g: torch.Tensor, weight: float) -> None:
    """g.grad += the gradient of ``weight * plane_tv(g)`` (g.grad made if there is none), in place."""
    _check(g)
    if g.grad is None:
        g.grad = torch.zeros_like(g)
    dx = g[:, 1:, :] - g[:, :-1, :]
    cx = 2.0 * weight / dx.numel()
    g.grad[:, 1:, :].add_(dx, alpha=cx)
    g.grad[:, :-1, :].sub_(dx, alpha=cx)
    dy = g[:, :, 1:] - g[:, :, :-1]
    cy = 2.0 * weight / dy.numel()
    g.grad[:, :, 1:].add_(dy, alpha=cy)
    g.grad[:, :, :-1].sub_(dy, alpha=cy)


def _check(g: torch.Tensor) -> None:
    if g.dim() != 3 or g.shape[1] < 2 or g.shape[2] < 2:
        raise ValueError(f"plane_tv: expected a plane [F,H,W] with H, W >= 2, got {tuple(g.shape)}")


__all__ = ["add_plane_tv_grad", "plane_tv"]
