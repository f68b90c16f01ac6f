"""Primitive shapes from a density field: each primitive starts hugging the surface, not as a sphere.

A primitive is star-shaped around its centre (dnmp_ae: vertex i at radius r_i along template
direction u_i). Given a density field (the rbf point fit's), for each primitive:
  1. the centre moves to the densest of 3x3x3 points spread over its voxel (the shapes need the
     centre inside the solid);
  2. along each u_i the field is probed at ``samples`` radii up to the primitive's radius R; r_i is
     the first radius where it is empty (density at most ``sigma_min``: the rbf fit's "solid"
     threshold), R when it never is; that is the patch "ball intersect solid" the auto-encoder was
     trained on;
  3. the latent is the encoder's code of (r_i / R), then refined by a few Adam steps on the decoder's
     vertex error (the encoder is approximate; the decoder is what renders).
Primitives with no solid point in their voxel keep the sphere. Why: sphere primitives bulge up to
0.87 voxel (about 3 pixels on lego at 200x200) in front of the surface; views disagree on the colour
such a point must show, which reads as speckle, and photometric geometry steps are too slow on a CPU
to fix that (lego 200x200, 300 s: 23.3 dB with spheres, 26.1 dB with these shapes).

Devices: the probes and latents are computed on the level's device; the density function gets the probe points
there and its answer is moved there (it may live elsewhere); the encoder must be on the decoder's device.
"""

import torch

from fieldfit.fields.dnmp import LATENT


def _probe(density, pts: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    flat = pts.reshape(-1, 3)
    out = torch.cat([density(flat[s:s + chunk]).to(pts.device) for s in range(0, flat.shape[0], chunk)]) \
        if flat.shape[0] else torch.zeros(0, device=pts.device)
    return out.reshape(pts.shape[:-1])


@torch.no_grad()
def surface_radii(level, density, sigma_min: float, samples: int = 12):
    """(centre offsets [M,3], radii [M,42] in (0,1], solid [M] bool) of one PrimitiveLevel."""
    c, u, r_max = level.centres, level.template, level.radius
    dev = c.device
    g = torch.tensor([-1.0, 0.0, 1.0], device=dev) * level.voxel / 3.0
    sub = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)  # [27,3]
    dens = _probe(density, c[:, None] + sub[None])  # [M,27]
    best = dens.argmax(1)
    offsets = sub[best]
    solid = dens.max(1).values > sigma_min
    t = torch.arange(1, samples + 1, dtype=torch.float32, device=dev) / samples * r_max  # [S]
    pts = (c + offsets)[:, None, None] + t[None, None, :, None] * u[None, :, None]  # [M,42,S,3]
    empty = _probe(density, pts) <= sigma_min  # [M,42,S]
    # first empty probe; its radius minus half a probe spacing (the crossing lies between probes)
    first = torch.where(empty.any(-1), empty.float().argmax(-1), torch.full(empty.shape[:2], samples, device=dev))
    radii = torch.where(first < samples, (first.float() + 0.5) / samples, torch.ones((), device=dev))
    offsets = torch.where(solid[:, None], offsets, torch.zeros((), device=dev))
    radii = torch.where(solid[:, None], radii.clamp(0.1, 1.0), torch.ones((), device=dev))
    return offsets, radii, solid


def fit_latents(encoder, decoder, radii: torch.Tensor, steps: int = 60, lr: float = 0.02) -> torch.Tensor:
    """Latents [M,8] whose decoded shapes match target radii [M,42] (encoder start, then Adam on the decoder), on
    the device of ``radii`` (where the encoder and decoder must be)."""
    from fieldfit.fields.dnmp import icosphere

    u, _ = icosphere()
    target = (radii - 1.0)[..., None] * u.to(radii.device)
    with torch.no_grad():
        z = encoder(radii) if radii.shape[0] else torch.zeros(0, LATENT, device=radii.device)
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps if radii.shape[0] else 0):
        loss = ((decoder(z) - target) ** 2).sum(-1).mean(-1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return z.detach()


def shape_levels(model, encoder, density, sigma_min: float, log=None) -> None:
    """Set every level's offsets and latents from the density field (see the module doc)."""
    for j, lv in enumerate(model.levels):
        if lv.count == 0:
            continue
        offsets, radii, solid = surface_radii(lv, density, sigma_min)
        z = fit_latents(encoder, model.decoder, radii)
        with torch.no_grad():
            keep = solid[:, None]
            lv.offsets.copy_(torch.where(keep, offsets, lv.offsets))
            lv.latents.copy_(torch.where(keep, z, lv.latents))
        if log:
            log(f"dnmp: level {j} shapes from the density field: {int(solid.sum()):,} of {lv.count:,} primitives "
                f"inside the solid, mean radius {float(radii[solid].mean()) if solid.any() else 1.0:.2f}")


__all__ = ["fit_latents", "shape_levels", "surface_radii"]
