"""Pose corrections (render.poses): the rotation formula, the gauge, and photos whose poses are off finding them
again through the renderer's gradients, with the field held fixed."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from fieldfit.fields.base import FieldOutput
from fieldfit.render import OccupancyGrid
from fieldfit.render.camera import look_at
from fieldfit.render.march import MarchConfig, render
from fieldfit.render.poses import PoseCorrections, rotation
from fieldfit.render.rays import image_rays


def test_rotation_is_rodrigues_and_exact_at_zero():
    w = torch.tensor([[0.0, 0, 0], [1e-6, -2e-6, 0], [0.3, -0.2, 0.9], [3.0, 0.1, -0.4]], dtype=torch.float64)
    got = rotation(w)
    want = torch.from_numpy(Rotation.from_rotvec(w.numpy()).as_matrix())
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.equal(rotation(torch.zeros(1, 3)), torch.eye(3)[None])


def test_zero_corrections_leave_rays_and_center_removes_the_shared_part():
    poses = PoseCorrections(3)
    o, d = torch.randn(5, 3), torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    image = torch.tensor([0, 1, 2, 1, 0])
    o2, d2 = poses(o, d, image)
    assert torch.equal(o2, o)
    assert torch.allclose(d2, d, atol=1e-7)
    with torch.no_grad():
        poses.delta.copy_(torch.tensor([[0.1, 0, 0, 1, 0, 0], [0.2, 0, 0, 2, 0, 0], [0.3, 0, 0, 3, 0, 0]]))
    poses.center_()
    assert torch.allclose(poses.delta.mean(0), torch.zeros(6), atol=1e-7)
    assert torch.allclose(poses.delta[:, 0], torch.tensor([-0.1, 0.0, 0.1]), atol=1e-7)


class Ball(torch.nn.Module):
    """A soft ball of radius 0.5 whose colour changes with position (so that a pose is seen in the picture)."""

    def density(self, x):
        return 60.0 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 40.0)

    def forward(self, x, d):
        return FieldOutput(density=self.density(x), rgb=0.5 + 0.5 * torch.sin(4.0 * x + torch.tensor([0.0, 1, 2])))


def test_photos_with_wrong_poses_find_them_with_the_field_fixed():
    torch.manual_seed(0)
    field, box = Ball(), [[-1.0, -1, -1], [1, 1, 1]]
    grid = OccupancyGrid(box, resolution=8, warmup_steps=0)
    march = MarchConfig(step=0.02, near=0.0, far=10.0, early_stop=0.0, alpha_thre=0.0)
    rays, images = [], []
    n, size = 6, 20
    for j in range(n):
        a = 2 * np.pi * j / n
        c2w = torch.tensor(look_at([2.2 * np.cos(a), 2.2 * np.sin(a), 0.6], [0, 0, 0], [0, 0, 1]), dtype=torch.float32)
        o, d = image_rays(size, size, 30.0, 30.0, size / 2, size / 2, c2w)
        rays.append((o, d))
        images.append(torch.full((size * size,), j))
    o, d, image = torch.cat([r[0] for r in rays]), torch.cat([r[1] for r in rays]), torch.cat(images)
    bg = torch.zeros(3)
    with torch.no_grad():
        seen, _ = render(field, grid, o, d, bg, march)
    assert float(seen.opacity.mean()) > 0.2  # the ball fills part of every picture
    truth = PoseCorrections(n)  # the true poses are the given ones corrected by ``truth``
    with torch.no_grad():
        truth.delta.copy_(torch.cat([torch.randn(n, 3) * 0.035, torch.randn(n, 3) * 0.04], 1))  # about 2 deg
        truth.center_()
        given_o, given_d = o - truth.delta[image, 3:], (rotation(-truth.delta[image, :3]) @ d[..., None])[..., 0]
    poses = PoseCorrections(n)
    opt = torch.optim.Adam(poses.parameters(), lr=3e-3)

    def loss():
        co, cd = poses(given_o, given_d, image)
        out, _ = render(field, grid, co, cd, bg, march)
        return torch.nn.functional.mse_loss(out.rgb, seen.rgb)

    start = float(loss().detach())
    for _ in range(60):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
        poses.center_()
    end = float(loss().detach())

    def miss(co, cd):  # how far the rays pass from the true ones where they cross the ball
        return float(((co + 2.2 * cd) - (o + 2.2 * d)).norm(dim=1).mean())

    with torch.no_grad():
        before, after = miss(given_o, given_d), miss(*poses(given_o, given_d, image))
    assert end < 0.2 * start, (start, end)
    assert after < 0.3 * before, (before, after)
