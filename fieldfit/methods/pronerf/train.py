"""ProNeRF's training schedule (METHODS.md 3.3) within one time budget.

Stage 1 (progress < ``stage1``) alternates by step parity:
- exploration (odd steps): the final samples of the (frozen-for-colour) sampler are densified
  ``n`` times, n drawn in [1, explore_samples / N], plus ``explore_uniform`` stratified samples,
  and jittered; the field is composited there without modulation; loss MSE(colour). Added to
  ProNeRF: the sampler and refiner are pulled towards the quantiles of these dense weights
  (``weight_quantiles``, L1 in units of the ray's length, weight ``distill``), a direct signal
  that places samples at surfaces within a few hundred steps instead of relying only on the
  colour gradient through the sample positions (the sphere of tests/test_pronerf_fit.py, 200
  steps, fraction of samples within 0.1 of the surface: 0.26 on test rays and 0.36 on training
  rays with it, 0.15 and 0.14 without; 0.09 untrained).
  Optional (``distortion``, default 0): mip-NeRF 360's distortion loss on the dense weights;
  0.01 cost 0.3 dB on fern after 500 steps (18.57 vs 18.89 dB), so it is off.
- exploitation (even steps): the full pipeline with modulation and offsets, no jitter;
  loss MSE(colour) + MSE(c0) + MSE(c1); every network steps.
Stage 2: the full pipeline with the final depths jittered, loss MSE(colour) only.

One Adam holds every parameter (field groups at rbf's rates, the two ray networks at
``lr_sampler``); a network without gradient in a step is not updated. Rays are drawn uniformly
over all training pixels; each ray gets its own V source views. A step whose gradients are not
finite is skipped; ``max_bad_steps`` such steps in a row stop the fit (FloatingPointError: the
CLI reports it, the last checkpoint, written before the trouble, is kept).
"""

import numpy as np
import torch
import torch.nn.functional as F

from fieldfit import dist
from fieldfit.optim import set_lr
from fieldfit.render.losses import distortion_loss
from fieldfit.render.samplers.projection import densify, intervals, weight_quantiles
from fieldfit.tasks.radiance import PixelStore


class Stepper:
    def __init__(self, model, opt, store: PixelStore, frame_sizes: list[int], extra, eval_bg, device, seed: int):
        self.model, self.opt, self.store, self.e = model, opt, store, extra
        self.device = torch.device(device)
        self.rng = np.random.default_rng(dist.sample_seed(seed))  # each rank its own rays (rank 0: the seed)
        self.ends = np.cumsum(frame_sizes)
        self.pools = model.sampler.sources.neighbour_pools(int(extra.pool))
        self.eval_bg = torch.as_tensor(eval_bg, dtype=torch.float32, device=self.device)
        self.rays = self.samples = self.last_step = self.bad = 0

    def sample(self, n: int):
        """n random training rays (RayBatch on the device) and their source views [n,V]."""
        idx = self.rng.integers(0, self.store.count, int(n))
        frame = torch.as_tensor(np.searchsorted(self.ends, idx, side="right"), device=self.device)
        pool = self.pools[frame]
        v = min(int(self.e.views), pool.shape[1])
        pick = torch.sort(torch.rand(pool.shape, device=self.device).argsort(1)[:, :v], dim=1).values
        return self.store.take(idx).to(self.device), pool.gather(1, pick)

    def _explore(self, batch, views, bg):
        m, e = self.model, self.e
        o, d = batch.origins, batch.dirs
        with torch.set_grad_enabled(e.distill > 0):  # ProNeRF: the sampler runs without gradient here
            prop = m.sampler.sample(o, d, views)
        near, far = prop["near"], prop["far"]
        n_rep = int(self.rng.integers(1, max(1, int(e.explore_samples) // m.n) + 1))
        with torch.no_grad():
            t = densify(prop["t"].detach(), near, far, n_rep, int(e.explore_uniform), float(e.jitter))
        out = m.composite_at(o, d, t, far, bg)
        loss = F.mse_loss(out.rgb, batch.target(bg))
        total = loss
        if (e.distortion or 0.0) > 0:
            total = total + e.distortion * distortion_loss(out.weights, intervals(t, far))
        if e.distill > 0:
            q = weight_quantiles(t, out.weights.detach().view(t.shape), near, far, m.n, float(e.distill_floor))
            length = (far - near)[:, None]
            total = total + e.distill * (((prop["t_cand"] - q).abs() + (prop["t"] - q).abs()) / length).mean()
        return loss, total, t.numel()

    def _exploit(self, batch, views, bg, stage2: bool):
        o, d = batch.origins, batch.dirs
        out, prop = self.model.render(o, d, bg, views, jitter=float(self.e.jitter) if stage2 else 0.0)
        loss = F.mse_loss(out.rgb, batch.target(bg))
        total = loss
        if not stage2:
            aux = batch.target(self.eval_bg)
            total = total + F.mse_loss(prop["c0"], aux) + F.mse_loss(prop["c1"], aux)
        return loss, total, prop["t"].numel()

    def __call__(self, i: int, progress: float) -> dict:
        e = self.e
        lr = set_lr(self.opt, progress, e.lr_final)
        stage2 = progress >= e.stage1
        explore = not stage2 and i % 2 == 1
        batch, views = self.sample(dist.share(e.explore_batch if explore else e.batch))
        bg = torch.rand(batch.origins.shape[0], 3, device=self.device)
        if explore:
            loss, total, n = self._explore(batch, views, bg)
        else:
            loss, total, n = self._exploit(batch, views, bg, stage2)
        self.opt.zero_grad(set_to_none=True)
        if total.requires_grad:  # (nothing trainable in this step: a frozen field, no distillation)
            total.backward()
        grads = [p.grad for g in self.opt.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            pass
        elif bool(torch.isfinite(torch.stack([g.sum() for g in grads]).sum())):
            self.opt.step()
            self.bad = 0
        else:
            self.bad += 1
            if self.bad >= int(e.max_bad_steps):
                raise FloatingPointError(f"gradients not finite for {self.bad} steps in a row at step {i} "
                                         "(diverged); the last good checkpoint is kept: lower --lr")
        self.rays += batch.origins.shape[0]
        self.samples += n
        self.last_step = i + 1
        return {"loss": loss.detach(), "mse": loss.detach(), "batch": batch.origins.shape[0], "lr": lr}


__all__ = ["Stepper"]
