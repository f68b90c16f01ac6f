"""Per-photo colour correction for real captures: exposure and white balance differ from photo to photo.

Each training photo i has an affine map of colours, c' = A_i c + b_i (A_i [3,3], b_i [3]; identity at the
start), applied to the colour of every sample of its rays before the loss, so the field keeps one set of
colours and the photos' differences go to their maps. Applied per sample and composited, the map of a ray
with premultiplied colour C and opacity a is A_i C + a b_i: the background a fit composites on (random colours
for scenes with alpha) is not mapped. Views that were not trained on (test views, paths, the viewer)
are drawn with the mean map over the training photos, as nerfstudio's nerfacto draws them with the mean
appearance embedding; no test image is used to tune anything.
"""

import torch
from torch import nn


class Appearance(nn.Module):
    """Affine colour maps of ``n`` photos: parameter ``affine`` [n,3,4] = [A | b]."""

    def __init__(self, n: int):
        super().__init__()
        eye = torch.eye(3, 4).expand(int(n), 3, 4).clone()
        self.affine = nn.Parameter(eye)

    @staticmethod
    def _on(m: torch.Tensor, rgb: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        clear = (1.0 - opacity).unsqueeze(-1)
        premult = rgb - clear * background
        return (m[..., :3] @ premult.unsqueeze(-1)).squeeze(-1) + opacity.unsqueeze(-1) * m[..., 3] + clear * background

    def forward(self, rgb: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor,
                image: torch.Tensor) -> torch.Tensor:
        """Colours [R,3] of rays of photos ``image`` [R] (int) as those photos saw them, from the rays' colours
        [R,3] composited on ``background`` ([3] or [R,3]) with their opacities [R]."""
        return self._on(self.affine[image], rgb, opacity, background)

    def mean(self, rgb: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """``forward`` through the mean map (views no photo was trained on)."""
        return self._on(self.affine.mean(0).to(rgb.dtype), rgb, opacity, background.to(rgb.dtype))


__all__ = ["Appearance"]
