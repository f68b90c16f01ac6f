"""DNMP pieces: icosphere, mesh auto-encoder, primitive decoding, K-layer shading with masked layers."""

import torch

from fieldfit.fields.dnmp import PrimitiveLevel, icosphere
from fieldfit.methods.dnmp.autoencoder import patch_radii, reconstruction_error, train_autoencoder


def test_icosphere_is_a_closed_outward_sphere():
    v, f = icosphere()
    assert v.shape == (42, 3)
    assert f.shape == (80, 3)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(42))
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == 240
    assert all((b, a) in directed for a, b in directed)
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
    assert (r > 0.5 * lv.radius).all()
    assert (r < 1.5 * lv.radius).all()
    assert lv.faces.max() == 83
    assert lv.faces.shape == (160, 3)
    v.sum().backward()
    assert lv.latents.grad is not None
    assert lv.offsets.grad.abs().sum() > 0


def test_empty_layers_are_masked_not_duplicated():
    from fieldfit.methods.dnmp.model import DNMPModel, LayerBatch, shade

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
    from fieldfit.methods.dnmp.rows import RowAdam

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


def _half_space(h: float):
    """Density of the solid x < h (sigma 100 inside, 0 outside)."""
    return lambda p: torch.where(p[:, 0] < h, 100.0, 0.0)


def test_surface_radii_follow_a_wall():
    """Radii stop at the wall x = h, to within one probe spacing; the centre moves to the solid side."""
    from fieldfit.methods.dnmp.shapes import surface_radii

    _, _, code = train_autoencoder(steps=1, batch=8, seed=0)
    lv = PrimitiveLevel(torch.zeros(1, 3), 0.3, code)
    r_max, h, samples = lv.radius, 0.1, 24
    offsets, radii, solid = surface_radii(lv, _half_space(h), sigma_min=1.0, samples=samples)
    assert solid.all()
    assert offsets[0, 0] <= 0
    u = lv.template
    c = offsets[0]
    exit_t = torch.where(u[:, 0] > 1e-6, (h - c[0]) / u[:, 0].clamp_min(1e-6), torch.full((42,), 1e9))
    expect = (exit_t / r_max).clamp(0.1, 1.0)
    assert (radii[0] - expect).abs().max() <= 1.0 / samples + 1e-6, (radii[0], expect)
    assert (radii[0][u[:, 0] < -0.2] == 1.0).all()  # inside the solid: the full radius


def test_empty_primitives_keep_the_sphere():
    from fieldfit.methods.dnmp.shapes import surface_radii

    _, _, code = train_autoencoder(steps=1, batch=8, seed=0)
    lv = PrimitiveLevel(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), 0.2, code)
    offsets, radii, solid = surface_radii(lv, _half_space(0.0), sigma_min=1.0)
    assert solid.tolist() == [False, True]
    assert (radii[0] == 1.0).all()
    assert (offsets[0] == 0).all()


def test_fitted_latents_decode_closer_than_the_encoder_alone():
    from fieldfit.methods.dnmp.shapes import fit_latents

    enc, dec, _ = train_autoencoder(steps=300, batch=256, seed=0)
    radii = patch_radii(256, torch.Generator().manual_seed(7))
    u, _ = icosphere()
    target = (radii - 1.0)[..., None] * u
    with torch.no_grad():
        before = float(((dec(enc(radii)) - target) ** 2).mean())
    z = fit_latents(enc, dec, radii, steps=60)
    with torch.no_grad():
        after = float(((dec(z) - target) ** 2).mean())
    assert after < 0.95 * before, (before, after)  # the encoder is close already; Adam still gains ~13%


def test_window_rasterization_matches_the_full_model():
    """The geometry stage's window path: same fragments and colours as decoding every primitive, and
    gradients to the latents and offsets of the primitives in view only."""
    from fieldfit.methods.dnmp.model import DNMPModel, rasterize_levels, rasterize_window, shade
    from fieldfit.render.camera import Camera

    _, dec, code = train_autoencoder(steps=20, batch=32, seed=0)
    g = torch.Generator().manual_seed(3)
    fine = PrimitiveLevel(torch.rand(60, 3, generator=g) * 2 - 1, 0.3, code, feat_dim=4)
    coarse = PrimitiveLevel(torch.rand(12, 3, generator=g) * 2 - 1, 0.6, code, feat_dim=4)
    for lv in (fine, coarse):
        with torch.no_grad():
            lv.latents.add_(0.3 * torch.randn(lv.latents.shape, generator=g))
            lv.features.normal_(generator=g)
    model = DNMPModel(dec, [fine, coarse], [3, 2], 4, 8)
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4.0]], dtype=torch.float64)
    full = Camera(c2w, 40.0, 40.0, 32.0, 32.0, 64, 64)
    cam = full.crop(20, 12, 17, 13)
    ref = rasterize_levels(model, cam)
    win, geometry = rasterize_window(model, cam)
    assert torch.equal(ref.face, win.face)
    assert (ref.face >= 0).sum() > 50
    torch.testing.assert_close(win.bary, ref.bary)
    dirs = torch.nn.functional.normalize(torch.randn(cam.width * cam.height, 3, generator=g), dim=-1)
    bg = torch.tensor([0.2, 0.5, 0.9])
    rgb_ref, _ = shade(model, ref, dirs, bg)
    rgb_win, _ = shade(model, win, dirs, bg, geometry=geometry)
    torch.testing.assert_close(rgb_win, rgb_ref)
    rgb_win.sum().backward()
    touched = fine.offsets.grad.abs().sum(-1) > 0
    assert 0 < int(touched.sum()) < fine.count  # primitives out of view get no gradient (and no decoding)
    assert fine.latents.grad[touched].abs().sum() > 0


def test_sh_shader_colour_depends_on_direction_only_through_its_degree():
    from fieldfit.fields.dnmp import Shader

    torch.manual_seed(0)
    feat, nrm = torch.randn(64, 7), torch.randn(64, 3)
    d1 = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    d2 = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    flat, sh = Shader(7, 16, sh_degree=0), Shader(7, 16, sh_degree=3)
    a1, c1 = flat(feat, d1, nrm)
    a2, c2 = flat(feat, d2, nrm)
    torch.testing.assert_close(c1, c2)  # degree 0: one colour per point
    torch.testing.assert_close(a1, a2)
    assert ((sh(feat, d1, nrm)[1] - sh(feat, d2, nrm)[1]).abs().max() > 1e-3)
    assert c1.min() > 0
    assert c1.max() < 1


def test_rim_opacity_reads_the_view_angle_and_only_then():
    from fieldfit.fields.dnmp import Shader

    torch.manual_seed(0)
    feat = torch.randn(32, 7)
    nrm = torch.nn.functional.normalize(torch.randn(32, 3), dim=-1)
    facing = -nrm  # looking straight at the surface: |n . d| = 1
    grazing = torch.nn.functional.normalize(torch.cross(nrm, torch.randn(32, 3), dim=-1), dim=-1)  # n . d = 0
    plain, rim = Shader(7, 16), Shader(7, 16, rim=True)
    torch.testing.assert_close(plain(feat, facing, nrm)[0], plain(feat, grazing, nrm)[0])
    with torch.no_grad():
        rim.alpha.weight[0, -1] = 2.0  # the |n . d| input's weight
    a_face, a_graze = rim(feat, facing, nrm)[0], rim(feat, grazing, nrm)[0]
    assert (a_face > a_graze).all()
    torch.testing.assert_close(torch.logit(a_face) - torch.logit(a_graze), torch.full((32,), 2.0), atol=1e-4, rtol=0)
