"""DNMP pieces: icosphere, mesh auto-encoder, primitive decoding, K-layer shading with masked layers."""

import torch

from fieldfit.fields.dnmp import PrimitiveLevel, icosphere
from fieldfit.methods.dnmp_ae import patch_radii, reconstruction_error, train_autoencoder


def test_icosphere_is_a_closed_outward_sphere():
    v, f = icosphere()
    assert v.shape == (42, 3) and f.shape == (80, 3)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(42))
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == 240 and all((b, a) in directed for a, b in directed)  # closed, consistently wound
    tri = v[f]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert ((n * tri.mean(1)).sum(-1) > 0).all()


def test_autoencoder_reconstructs_held_out_patches():
    enc, dec, code = train_autoencoder(steps=300, batch=256, seed=0)
    held_out = patch_radii(1024, torch.Generator().manual_seed(1234))
    u, _ = icosphere()
    as_sphere = float(torch.mean(((held_out - 1.0)[..., None] * u) ** 2))  # error of not deforming at all
    err = reconstruction_error(enc, dec, held_out)
    assert err < 0.2 * as_sphere, (err, as_sphere)
    assert float(dec(code[None]).abs().max()) < 0.1  # the sphere code decodes to (nearly) the template


def test_primitives_decode_around_their_voxels():
    enc, dec, code = train_autoencoder(steps=50, batch=64, seed=0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    lv = PrimitiveLevel(centres, 0.2, code)
    v = lv.vertices(dec).reshape(2, 42, 3)
    r = (v - centres[:, None]).norm(dim=-1)
    assert (r > 0.5 * lv.radius).all() and (r < 1.5 * lv.radius).all()
    assert lv.faces.max() == 83 and lv.faces.shape == (160, 3)
    v.sum().backward()
    assert lv.latents.grad is not None and lv.offsets.grad.abs().sum() > 0


def test_empty_layers_are_masked_not_duplicated():
    from fieldfit.methods.dnmp_render import DNMPModel, LayerBatch, shade

    _, dec, code = train_autoencoder(steps=10, batch=16, seed=0)
    lv = PrimitiveLevel(torch.zeros(1, 3), 0.5, code, feat_dim=4)
    model = DNMPModel(dec, [lv], [3], 4, 8)
    model.freeze()
    dirs = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    face = torch.tensor([[5, -1, -1], [5, 7, -1]])
    bary = torch.full((2, 3, 3), 1 / 3)
    bg = torch.tensor([0.2, 0.5, 0.9])
    rgb, opacity = shade(model, LayerBatch(face, bary), dirs, bg)
    # pixel 0 has one layer: alpha*c + (1-alpha)*bg exactly once
    (v, n), = model.geometry()
    f5 = lv.features[lv.faces[5]].mean(0, keepdim=True)
    n5 = torch.nn.functional.normalize(n[lv.faces[5]].mean(0, keepdim=True), dim=-1)
    a, c = model.shader(f5, dirs[:1], n5)
    torch.testing.assert_close(rgb[0], a[0] * c[0] + (1 - a[0]) * bg)
    torch.testing.assert_close(opacity[0], a[0])
    assert opacity[1] > opacity[0] - 1e-6


def test_row_adam_matches_adam_on_touched_rows_and_leaves_others():
    from fieldfit.methods.dnmp_rows import RowAdam

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, generator=g).requires_grad_(True)
    ref = a.detach().clone().requires_grad_(True)
    touched = torch.tensor([0, 2, 2, 5])  # a row gathered twice gets the summed gradient
    opt_ref = torch.optim.Adam([ref], lr=0.1, betas=(0.9, 0.99), eps=1e-15)
    opt = RowAdam([a], lr=0.1)
    for _ in range(3):
        w = torch.randn(4, 4, generator=g)
        opt_ref.zero_grad()
        (ref.index_select(0, touched) * w).sum().backward()
        opt_ref.step()
        opt.zero_grad()
        (opt.gather(0, touched) * w).sum().backward()
        opt.step()
    assert a.grad is None
    torch.testing.assert_close(a.detach(), ref.detach())  # untouched rows: Adam's zero gradient leaves them too
