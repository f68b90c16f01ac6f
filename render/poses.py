"""Per-photo pose corrections trained with the field (``--refine-poses``): an SE(3) correction of each training
camera, applied to its rays.

Convention: photo j's correction is a rotation vector w_j and a translation t_j in world coordinates; a ray
(o, d) of that photo becomes (o + t_j, R(w_j) d), i.e. the camera turns about its own centre and moves by t_j
(R: Rodrigues' formula). The corrections start at zero (the given poses). Gauge: a rotation or translation shared
by every camera is indistinguishable from moving the scene, so after each step ``center_`` removes the mean
correction (the photos keep their average pose; without this the whole rig drifts and views rendered at given
poses, such as the test views, no longer line up). Test views are rendered at their given poses, as nerfstudio's
camera optimizer evaluates (no test-time pose fitting).
"""

import torch
from torch import nn


def rotation(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N,3,3] of rotation vectors w [N,3] (axis times angle; exact at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # [N,1,1]
    theta = theta2.clamp_min(1e-24).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)  # sin(t)/t
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-24))  # (1-cos t)/t^2
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


class PoseCorrections(nn.Module):
    """SE(3) corrections of ``n`` photos: parameter ``delta`` [n,6] = (rotation vector, translation)."""

    def __init__(self, n: int):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(int(n), 6))

    def forward(self, origins: torch.Tensor, dirs: torch.Tensor, image: torch.Tensor):
        """Rays [R,3] of photos ``image`` [R] (int), corrected: (origins, unit directions)."""
        d = self.delta[image.long()].to(dirs.dtype)
        turned = (rotation(d[:, :3]) @ dirs.unsqueeze(-1)).squeeze(-1)
        return origins + d[:, 3:], turned

    @torch.no_grad()
    def center_(self) -> None:
        """Remove the correction every photo shares (the gauge, module doc)."""
        if self.delta.shape[0] > 1:
            self.delta.sub_(self.delta.mean(0, keepdim=True))

    def sizes(self) -> tuple[float, float]:
        """(mean rotation in degrees, mean translation length) of the corrections."""
        d = self.delta.detach()
        return float(d[:, :3].norm(dim=1).mean()) * 57.29577951308232, float(d[:, 3:].norm(dim=1).mean())


__all__ = ["PoseCorrections", "rotation"]
