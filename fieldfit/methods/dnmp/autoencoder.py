"""DNMP's mesh auto-encoder, trained by fieldfit (the paper's weights are not released).

Training data: procedural local surface patches. A patch is the part of the unit ball inside a
random solid seen from the ball's centre (which lies inside the solid): one half-space (a flat
wall), the intersection of two or three (a convex edge or corner), the union of two (a concave
edge), or a ball (curved surface, convex or concave side). For every template direction u_i the
target vertex is r_i u_i with r_i the distance from the centre to the boundary of
(ball intersect solid) along u_i, clamped to [0.1, 1]. Vertices correspond to the template, so the
loss is the mean squared vertex error (the paper's Chamfer + regularisers need no correspondence;
here it is known). The full sphere is one of the shapes; its code is the "sphere code" that new
primitives start from (METHODS.md 2.1: the paper's initial latent decodes to the sphere).

Weights: safetensors (loadable without executing code) in ``$FIELDFIT_CACHE`` or
~/.cache/fieldfit, trained at first use in a few seconds; ``python -m fieldfit.methods.dnmp.autoencoder OUT``
writes them explicitly.
"""

import os
import sys
import time
from pathlib import Path

import torch

from fieldfit.cache import cache_dir
from fieldfit.fields.dnmp import MeshDecoder, MeshEncoder, icosphere

VERSION = 1
FILE = f"dnmp_mesh_ae_v{VERSION}.safetensors"


def patch_radii(n: int, g: torch.Generator) -> torch.Tensor:
    """[n,42] radii along the template directions of random local patches (see the module doc)."""
    u, _ = icosphere()
    kind = torch.randint(0, 6, (n,), generator=g)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, 3, generator=g), dim=-1)
    h = 0.05 + 0.9 * torch.rand(n, 3, generator=g)  # plane distances from the centre (centre inside)
    cos = normals @ u.T  # [n,3,42]
    # distance to the exit of each half-space
    t = torch.where(cos > 1e-6, h[..., None] / cos.clamp_min(1e-6), torch.full_like(cos, 1e3))
    r = torch.ones(n, 42)
    r = torch.where((kind == 1)[:, None], t[:, 0], r)
    r = torch.where((kind == 2)[:, None], torch.minimum(t[:, 0], t[:, 1]), r)
    r = torch.where((kind == 3)[:, None], t.min(dim=1).values, r)
    r = torch.where((kind == 4)[:, None], torch.maximum(t[:, 0], t[:, 1]), r)
    # ball of radius R centred at c (|c| < R): exit t = -(c.u) + sqrt((c.u)^2 - |c|^2 + R^2)
    big = 0.6 + 2.0 * torch.rand(n, 1, generator=g)
    c = normals[:, 0] * (big - h[:, :1]) * torch.where(torch.rand(n, 1, generator=g) < 0.5, 1.0, -1.0)
    cu = c @ u.T
    tb = -cu + torch.sqrt((cu * cu - (c * c).sum(-1, keepdim=True) + big * big).clamp_min(0))
    r = torch.where((kind == 5)[:, None], tb, r)
    return r.clamp(0.1, 1.0)


def train_autoencoder(steps: int = 1500, batch: int = 512, seed: int = 0, log=None):
    """(encoder, decoder, sphere_code [8]) trained on procedural patches."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    u, _ = icosphere()
    enc, dec = MeshEncoder(), MeshDecoder()
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    sphere = torch.ones(1, 42)
    t0 = time.perf_counter()
    for i in range(steps):
        r = torch.cat([patch_radii(batch - 1, g), sphere])
        target = (r - 1.0)[..., None] * u  # offsets from the template
        loss = torch.mean((dec(enc(r)) - target) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (i + 1) % 500 == 0:
            log(f"mesh auto-encoder step {i + 1}/{steps}: vertex mse {loss.item():.2e} "
                f"({time.perf_counter() - t0:.1f}s)")
    with torch.no_grad():
        code = enc(sphere)[0]
    return enc.eval(), dec.eval(), code


def reconstruction_error(enc, dec, radii: torch.Tensor) -> float:
    """Mean squared vertex error of encoding then decoding patches [N,42] (unit-ball units)."""
    u, _ = icosphere()
    with torch.no_grad():
        return float(torch.mean((dec(enc(radii)) - (radii - 1.0)[..., None] * u) ** 2))


def save(path: Path, enc, dec, code) -> None:
    from safetensors.torch import save_file

    tensors = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    tensors.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    tensors["sphere_code"] = code
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"version": str(VERSION)})
    os.replace(tmp, path)


def load(path: Path):
    """(decoder, sphere_code) from a weights file written by ``save``."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    dec = MeshDecoder()
    dec.load_state_dict({k[len("decoder."):]: v for k, v in t.items() if k.startswith("decoder.")})
    return dec.eval(), t["sphere_code"]


def load_encoder(path: Path | None = None) -> MeshEncoder:
    """The frozen encoder of the cached weights (``pretrained`` makes sure they exist)."""
    from safetensors.torch import load_file

    t = load_file(str(path or cache_path() / FILE))
    enc = MeshEncoder()
    enc.load_state_dict({k[len("encoder."):]: v for k, v in t.items() if k.startswith("encoder.")})
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.eval()


def cache_path() -> Path:
    return cache_dir()


def pretrained(log=None):
    """(frozen decoder, sphere_code): the cached weights, trained and cached at first use."""
    path = cache_path() / FILE
    if not path.exists():
        if log:
            log(f"training the DNMP mesh auto-encoder once (cached in {path})")
        enc, dec, code = train_autoencoder(log=log)
        save(path, enc, dec, code)
    dec, code = load(path)
    for p in dec.parameters():
        p.requires_grad_(False)
    return dec, code


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else cache_path() / FILE
    e, d, c = train_autoencoder(log=print)
    save(out, e, d, c)
    err = reconstruction_error(e, d, patch_radii(2048, torch.Generator().manual_seed(99)))
    print(f"wrote {out}; held-out vertex mse {err:.2e}")
