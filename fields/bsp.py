"""BSP field of ONE shape: planes -> convexes (plane-to-convex matrix T) -> union (METHODS.md 4).

Notation, for points x [N,D] (D = 3, or 2 for the toy tests):
    h = x n^T + d           [N,P]  signed distance to each of P planes (unit normals), > 0 outside
    D = relu(k h)           [N,P]  k = sharpness = 1 / width of the soft band (scheduled)
    C = D T                 [N,K]  C_j = 0 exactly inside convex j (K convexes)
    phase 0 (continuous):   S  = clamp(clamp(1 - C, 0, 1) W, 0, 1)   1 = inside
    phase 3 (discrete):     S* = min_j C_j                           0 = inside
A convex's explicit polytope is {x : h_i(x) <= 0 for every plane i with T_ij > T_THRESHOLD}.

Parameterisation, and why (one shape, no encoder):
- BSP-Net decodes P planes from a shape latent with an MLP so that one network serves 35k shapes.
  For a single shape there is nothing to share, so the decoder would only re-parameterise the
  P x 4 numbers it outputs; we optimise the planes (normals, offsets) and T directly, like the
  paper's T (already a free weight). Each parameter then gets its own Adam step size, a step
  costs two small matmuls, and pruning or re-seeding a convex edits rows, not a network.
- Normals are normalised in the forward pass, so h is a true distance and the band width 1/k
  is in unit-frame lengths. The paper's planes get sharp only by growing their coefficients;
  here k follows a schedule (wide band for early gradients, thin at the end, where the fitted
  surface must sit within about one band width of the true one).
- Convexes start inside the shape (k-means seeds, each owning its share of the planes
  as a small polytope around its seed, T = 1 on its own planes and 0 elsewhere) instead of
  N(0, 0.02) noise: minutes on a CPU instead of days on a GPU, and no all-empty collapse
  (METHODS.md 4.6, #6 #9). Planes stay shared through T, which is free to pick up others.
- T_THRESHOLD is 0.5, not the paper's 0.01: T starts binary here and Adam moves every entry by
  about lr per step whatever its gradient's size, so after a few steps of weak, noisy gradient
  thousands of entries sit just above 0.01; at 0.01 each would be a cut in the mesh (measured
  on spot.obj: mesh IoU 0.05 against 0.87 at 0.5). The midpoint is where L_T' splits 0 from 1.
  It is used for training (phase 3), pruning, extraction and evaluation alike.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

T_THRESHOLD = 0.5  # plane i bounds convex j when T_ij > 0.5 (paper: 0.01; see above)


@dataclass
class BSPFieldConfig:
    dim: int = 3
    planes: int = 512
    convexes: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BSPFieldConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def sphere_directions(n: int, dim: int) -> np.ndarray:
    """n well-spread unit vectors [n,dim] (Fibonacci sphere in 3D, equal angles in 2D)."""
    i = np.arange(n) + 0.5
    if dim == 2:
        a = 2 * math.pi * i / n
        return np.stack([np.cos(a), np.sin(a)], 1)
    z = 1 - 2 * i / n
    r, phi = np.sqrt(np.maximum(1 - z * z, 0)), math.pi * (3 - math.sqrt(5)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> np.ndarray:
    """k centres [k,D] of x [N,D] (k <= N) by Lloyd's iterations from a random start."""
    pts = torch.as_tensor(x, dtype=torch.float32)
    c = pts[torch.as_tensor(rng.choice(len(x), k, replace=False))]
    for _ in range(iters):
        near = torch.cdist(pts, c).argmin(1)
        total = torch.zeros_like(c).index_add_(0, near, pts)
        count = torch.bincount(near, minlength=k).float()[:, None]
        c = torch.where(count > 0, total / count.clamp_min(1), c)
    return c.numpy().astype(np.float64)


class BSPField(nn.Module):
    """Planes (normals [P,D], offsets [P]), plane-to-convex matrix T [P,K] and union weights W [K]."""

    def __init__(self, cfg: BSPFieldConfig):
        super().__init__()
        self.cfg = cfg
        p, k, d = cfg.planes, cfg.convexes, cfg.dim
        self.normals = nn.Parameter(torch.randn(p, d))
        self.offsets = nn.Parameter(torch.zeros(p))
        self.T = nn.Parameter(torch.randn(p, k) * 0.02)  # BSP-Net's init; seed_all replaces it
        self.W = nn.Parameter(torch.ones(k))
        self.register_buffer("alive", torch.ones(k, dtype=torch.bool))  # pruned convexes are False

    def owner(self) -> torch.Tensor:
        """[P] the convex that owns each plane at seeding (plane i -> convex i mod K)."""
        return torch.arange(self.cfg.planes, device=self.T.device) % self.cfg.convexes

    # -- forward ------------------------------------------------------------------------------
    def plane_distances(self, x: torch.Tensor) -> torch.Tensor:
        """h [N,P]: signed distances of x [N,D] to the planes, positive outside."""
        n = self.normals / self.normals.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return x @ n.T + self.offsets

    def convex_values(self, x: torch.Tensor, sharpness: float) -> torch.Tensor:
        """C [N,K] = relu(k h) T (phase 0); 0 inside a convex, >= 1 well outside. Pruned: 1e3."""
        c = torch.relu(sharpness * self.plane_distances(x)) @ self.T
        return torch.where(self.alive, c, torch.full_like(c, 1e3))

    def member_min_union(self, x: torch.Tensor, sharpness: float, with_depth: bool = False):
        """S* [N] = min_j C_j (phase 3), C summing member planes only (T_ij > T_THRESHOLD).

        The forward pass sees exactly the polytopes the mesh will have (a T_ij of 0.005 would
        still cut at sharpness 500). Only each point's nearest convex carries a gradient, so C
        is found without autograd and S* rebuilt for that convex alone: O(N P) backward instead
        of O(N P K). Straight-through: non-member T_ij count as 0 in the value but get
        d S*/d T_ij = D_i, so planes still join and leave convexes.

        with_depth: also return depth [N] = sum over the convexes j containing x of
        -max_{i in j} h_i(x) (how deep x is inside each), differentiable in the planes.
        """
        h = self.plane_distances(x)
        d = torch.relu(sharpness * h)  # [N,P]
        member = self.T > T_THRESHOLD
        t = torch.where(member, self.T, self.T - self.T.detach())  # value: T on members, else 0
        usable = self.alive & member.any(0)  # a convex with no plane is empty, as in the mesh
        with torch.no_grad():
            c = torch.where(usable, d @ t, torch.full((1,), 1e3, device=d.device))
            c_min, j = c.min(dim=1)
        s = (d * t.T.contiguous()[j]).sum(1)
        s = torch.where(c_min >= 1e3, c_min, s)
        if not with_depth:
            return s
        return s, self._inside_depth(h, c <= 0, member)

    @staticmethod
    def _inside_depth(h: torch.Tensor, inside: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """depth [N] = sum over inside[n, j] of -max_{i: member[i, j]} h[n, i]; cost pairs x planes/convex."""
        n_idx, j_idx = inside.nonzero(as_tuple=True)
        depth = h.new_zeros(len(h))
        if len(n_idx) == 0:
            return depth
        counts = member.sum(0)
        order = torch.argsort((~member).T.float(), dim=1, stable=True)[:, : int(counts.max())]  # [K,M] members first
        valid = torch.arange(order.shape[1], device=h.device) < counts[:, None]
        rows = h[n_idx[:, None], order[j_idx]]  # [pairs, M]
        e = torch.where(valid[j_idx], rows, torch.full_like(rows, -1e3)).max(dim=1).values
        return depth.index_add(0, n_idx, torch.relu(-e))

    def continuous_union(self, c: torch.Tensor) -> torch.Tensor:
        """S [N] in [0,1] (phase 0), 1 = inside."""
        return (torch.clamp(1 - c, 0, 1) @ self.W).clamp(0, 1)

    # -- the explicit (hard) shape ---------------------------------------------------------------
    def membership(self) -> torch.Tensor:
        """[P,K] float 0/1: plane i bounds convex j (T_ij > T_THRESHOLD)."""
        return (self.T > T_THRESHOLD).float()

    @torch.no_grad()
    def hard_convex_inside(self, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """[N,K] bool: x inside the exact polytope of each live convex (what the mesh shows)."""
        m = self.membership()
        out = [(torch.relu(self.plane_distances(xs)) @ m) <= 0 for xs in x.split(chunk)]
        return torch.cat(out) & self.alive & (m.sum(0) > 0)

    @torch.no_grad()
    def hard_inside(self, x: torch.Tensor) -> torch.Tensor:
        """[N] bool: x inside the union of the exact polytopes."""
        return self.hard_convex_inside(x).any(dim=1)

    @torch.no_grad()
    def convex_planes(self, j: int) -> np.ndarray:
        """Planes [Pj, D+1] (n, d) of convex j, inside where n.x + d <= 0 (mesh/convex.py)."""
        sel = self.T[:, j] > T_THRESHOLD
        n = self.normals[sel] / self.normals[sel].norm(dim=1, keepdim=True).clamp_min(1e-12)
        return torch.cat([n, self.offsets[sel, None]], 1).double().cpu().numpy()

    # -- seeding -------------------------------------------------------------------------------
    @torch.no_grad()
    def seed_convex(self, j: int, centre, radius: float, rng: np.random.Generator) -> torch.Tensor:
        """Make convex j a small polytope of radius ``radius`` around ``centre`` [D].

        Uses the planes j owns that no other live convex uses. Returns the plane indices changed.
        """
        own = torch.nonzero(self.owner() == j).flatten()
        others = torch.ones_like(self.alive)
        others[j] = False
        shared = ((self.T[own] > T_THRESHOLD) & others & self.alive).any(dim=1)
        free = own[~shared]
        dirs = sphere_directions(len(free), self.cfg.dim) @ random_rotation(self.cfg.dim, rng)
        dirs = torch.as_tensor(dirs, dtype=self.normals.dtype, device=self.normals.device)
        c = torch.as_tensor(np.asarray(centre), dtype=self.normals.dtype, device=self.normals.device)
        self.normals[free] = dirs
        self.offsets[free] = -(dirs @ c) - radius
        self.T[:, j] = 0.0
        self.T[free, j] = 1.0
        self.T[free] = torch.where(torch.arange(self.cfg.convexes, device=self.T.device) == j, self.T[free], 0.0)
        self.alive[j] = True
        return free

    @torch.no_grad()
    def seed_all(self, inside_pts: np.ndarray, outside_pts: np.ndarray, rng: np.random.Generator) -> None:
        """Seed every convex inside the shape: k-means centres of inside samples, radius half
        the distance to the nearest outside sample (at most 0.25).

        k-means cells are convex and hold similar volumes, a natural first decomposition; with
        uniform samples the centres go where the volume is (farthest-point seeds went to the
        far-flung specks of a radiance field instead).
        """
        from scipy.spatial import cKDTree

        sub = inside_pts[rng.permutation(len(inside_pts))[:20000]]
        centres = kmeans(sub, min(self.cfg.convexes, len(sub)), rng)
        centres = sub[cKDTree(sub).query(centres)[1]]  # a centroid may fall outside: snap it in
        radii = np.clip(0.5 * cKDTree(outside_pts).query(centres)[0], 0.005, 0.25)
        self.T.zero_()
        for j in range(self.cfg.convexes):
            k = j % len(centres)
            self.seed_convex(j, centres[k], float(radii[k]), rng)


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix [dim,dim]."""
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q
