"""Triton kernel of ``render_fused`` (imported lazily; importing this imports triton).

One program marches BLOCK rays together. Per round: every live ray steps over unoccupied
intervals (an inner loop that only reads the occupancy grid), then the block evaluates the field
at each live ray's next occupied interval: the grid corners (hash levels, or tri-plane planes and
volumes) are gathered and blended, each feature adds its term to the RBF distances r [BLOCK, K]
(the direct form of ``_rbf_triton``), the head's density row and the three colour rows are dot
products with phi. A ray's colour rows are
folded with its SH bases once, before marching (V_c = sum_b sh_b W_{1+cB+b}), so colour costs three
dot products per sample whatever the SH degree. Compositing runs in registers; nothing per sample
is stored. Dead lanes mask their loads, so a block costs memory traffic only for its live rays.

FP contraction is off, as in ``_traverse_triton``: interval positions and occupancy tests are the
reference's, rounding for rounding. The field's blends and RBF distances use explicit ``tl.fma`` instead
(rounding there decides no step). Hash levels gather each feature as a [BLOCK, 1] column that broadcasts
over the units as it is: sm_90 SASS of the default field, Triton 3.9, 231 instructions per level per thread
against 264 with [BLOCK, F] gathers (whose feature columns cost shuffles) and separate multiply-adds; the
tri-plane keeps [BLOCK, F] gathers (per-feature columns were worse there: 249 against 230).
"""

import math

import torch
import triton
import triton.language as tl

from ._dispatch import device_guard
from ._grid_triton import _corner, _gs_axis, _hash_axis, _hash_index, hash_levels
from ._rbf_triton import KERNEL_IDS, _phi
from ._torch_ref import COMPOSITE_MAX_OPTICAL_DEPTH
from ._traverse_triton import _cell
from .triplane import _flat, _meta

# Launch shape, from sm_90 AOT compiles of the default field (16 levels x 2, 32 units, SH 3); not yet timed on a GPU
# (bench/frame_gpu.py tries others). Levels looped: 32 rays x 8 warps use 128 registers, no spills (32 x 2
# spills); levels unrolled: 255 registers at 32 x 8, spills at 32 x 16.
BLOCK, WARPS, UNROLL_LEVELS = 32, 8, False
BIG = 1e30  # "no early stop" optical depth


@triton.jit
def _interval(o0, o1, o2, d0, d1, d2, tmin, tmax, k, step, M, alive, box_ptr, bin_ptr, G0, G1, G2):
    """Step k of each ray: (t_start, t_end, t_mid, step exists, step exists and is occupied)."""
    ts = tmin + (k.to(tmin.dtype) + 0.0) * step
    te = tl.minimum(ts + step, tmax)
    mid = 0.5 * (ts + te)
    in0, c0 = _cell(o0 + d0 * mid, 0, box_ptr, G0)
    in1, c1 = _cell(o1 + d1 * mid, 1, box_ptr, G1)
    in2, c2 = _cell(o2 + d2 * mid, 2, box_ptr, G2)
    left = alive & (k < M) & (ts < tmax)
    cand = left & in0 & in1 & in2
    occ = tl.load(bin_ptr + (c0 * G1 + c1) * G2 + c2, mask=cand, other=0)
    return ts, te, mid, left, cand & (occ != 0)


@triton.jit
def _normalised(x, lo_ptr, sc_ptr, i: tl.constexpr):
    """Grid coordinate in [-1,1] (not clamped) along axis i: (x - lo) * (2 / (hi - lo)) - 1 (RadianceRBF.normalise)."""
    return (x - tl.load(lo_ptr + i)) * tl.load(sc_ptr + i) - 1.0


@triton.jit
def _hash_u(xn):
    """hash_grid_ref's u = clamp((xn + 1) / 2, 0, 1); NaN -> 0 keeps the gathers in bounds."""
    u = tl.minimum(tl.maximum((xn + 1.0) * 0.5, 0.0), 1.0)
    return tl.where(u == u, u, 0.0)


@triton.jit
def _add_feature(r, v, col, c_ptr, beta_ptr, rk, mk, D):
    """r + beta_k,col (v - mu_k,col)^2 for one feature v [BLOCK, 1] (column ``col`` of the RBF input)."""
    cd = tl.load(c_ptr + rk * D + col, mask=mk, other=0.0)
    bd = tl.load(beta_ptr + rk * D + col, mask=mk, other=0.0)
    diff = v - cd[None, :]
    return tl.fma(bd[None, :], diff * diff, r)


@triton.jit
def _level(lvl, r, base, u0, u1, u2, live, t_ptr, res_ptr, hashed_ptr, T, c_ptr, beta_ptr, rk, mk, D,
           F: tl.constexpr, POW2: tl.constexpr, BLOCK: tl.constexpr):
    """r plus the terms of hash level ``lvl``'s F features (rows of the level start at ``base``; live [BLOCK, 1])."""
    res = tl.load(res_ptr + lvl)
    hashed = tl.load(hashed_ptr + lvl)
    lo0, hi0, f0 = _hash_axis(u0, 0, 3, res)
    lo1, hi1, f1 = _hash_axis(u1, 1, 3, res)
    lo2, hi2, f2 = _hash_axis(u2, 2, 3, res)
    for f in tl.static_range(F):
        v = tl.zeros((BLOCK, 1), dtype=tl.float32)
        for c in tl.static_range(8):
            i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
            row = base + _hash_index(i0, i1, i2, res, T, hashed, POW2)
            v = tl.fma(w[:, None], tl.load(t_ptr + row[:, None] * F + f, mask=live, other=0.0), v)
        r = _add_feature(r, v, lvl * F + f, c_ptr, beta_ptr, rk, mk, D)
    return r


@triton.jit
def _grid(e, col0, r, meta_ptr, xn0, xn1, xn2, m2, rf, g_ptr, c_ptr, beta_ptr, rk, mk, D, F: tl.constexpr,
          BF: tl.constexpr, DIM: tl.constexpr, BLOCK: tl.constexpr):
    """r plus the terms of tri-plane grid ``e`` of ``meta`` (a plane, DIM 2, or a volume, DIM 3; the
    entry table of ``_triplane_triton``: offset in the flat buffer, R, axis along the last grid axis,
    axis along the one before)."""
    off = tl.load(meta_ptr + e * 4)
    S = tl.load(meta_ptr + e * 4 + 1)
    a0 = tl.load(meta_ptr + e * 4 + 2)
    a1 = tl.load(meta_ptr + e * 4 + 3)
    lo0, hi0, f0, _ = _gs_axis(tl.where(a0 == 0, xn0, tl.where(a0 == 1, xn1, xn2)), S)
    lo1, hi1, f1, _ = _gs_axis(tl.where(a1 == 0, xn0, tl.where(a1 == 1, xn1, xn2)), S)
    if DIM == 3:
        lo2, hi2, f2, _ = _gs_axis(xn2, S)
        stf = S * S * S
    else:
        f2 = tl.zeros(f0.shape, dtype=f0.dtype)
        lo2 = tl.zeros(lo0.shape, dtype=tl.int64)
        hi2 = lo2
        stf = S * S
    feat = tl.zeros((BLOCK, BF), dtype=tl.float32)
    for c in tl.static_range(2**DIM):
        i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
        o = off + i0 + (i1 + i2 * S) * S
        feat = tl.fma(w[:, None], tl.load(g_ptr + o[:, None] + rf[None, :] * stf, mask=m2, other=0.0), feat)
    for f in tl.static_range(F):  # each feature column, then its term
        r = _add_feature(r, tl.sum(tl.where(rf[None, :] == f, feat, 0.0), axis=1)[:, None], col0 + f, c_ptr,
                         beta_ptr, rk, mk, D)
    return r


@triton.jit
def _rbf_distances(xn0, xn1, xn2, ev, g_ptr, res_ptr, hashed_ptr, T, mp_ptr, mv_ptr, EP, EV, c_ptr, beta_ptr, rk,
                   mk, D, ENC: tl.constexpr, L: tl.constexpr, F: tl.constexpr, BF: tl.constexpr,
                   POW2: tl.constexpr, UNROLL: tl.constexpr, BLOCK: tl.constexpr, BK: tl.constexpr):
    """r [BLOCK, BK] = sum_d beta_kd (feature_d - mu_kd)^2 of the encoding's features at normalised points
    (lanes ev only). ENC 0: hash grid, L levels of table ``g_ptr`` (UNROLL unrolls the levels: all their
    gathers can be in flight at once, at twice the registers); ENC 1: tri-plane, EP planes and EV volumes
    of the flat buffer ``g_ptr``."""
    rf = tl.arange(0, BF)
    m2 = ev[:, None] & (rf < F)[None, :]
    r = tl.zeros((BLOCK, BK), dtype=tl.float32)
    if ENC == 0:
        u0 = _hash_u(xn0)
        u1 = _hash_u(xn1)
        u2 = _hash_u(xn2)
        base = tl.zeros((BLOCK,), dtype=tl.int64)  # first row of the level in the flat [L*T, F] table
        if UNROLL:
            for lvl in tl.static_range(L):
                r = _level(lvl, r, base, u0, u1, u2, ev[:, None], g_ptr, res_ptr, hashed_ptr, T, c_ptr, beta_ptr,
                           rk, mk, D, F, POW2, BLOCK)
                base += T
        else:
            for lvl in range(L):
                r = _level(lvl, r, base, u0, u1, u2, ev[:, None], g_ptr, res_ptr, hashed_ptr, T, c_ptr, beta_ptr,
                           rk, mk, D, F, POW2, BLOCK)
                base += T
    else:
        for e in range(EP):
            r = _grid(e, e * F, r, mp_ptr, xn0, xn1, xn2, m2, rf, g_ptr, c_ptr, beta_ptr, rk, mk, D, F, BF, 2, BLOCK)
        for e in range(EV):
            r = _grid(e, (EP + e) * F, r, mv_ptr, xn0, xn1, xn2, m2, rf, g_ptr, c_ptr, beta_ptr, rk, mk, D, F, BF, 3,
                      BLOCK)
    return r


@triton.jit
def _colour_rows(sh_ptr, w_ptr, b_ptr, ray, mr, rk, mk, c: tl.constexpr, K, B: tl.constexpr, BLOCK: tl.constexpr,
                 BK: tl.constexpr):
    """Channel c's head rows folded with each ray's SH bases: (V [BLOCK, BK], bias [BLOCK])."""
    v = tl.zeros((BLOCK, BK), dtype=tl.float32)
    vb = tl.zeros((BLOCK,), dtype=tl.float32)
    for b in tl.static_range(B):
        s = tl.load(sh_ptr + ray * B + b, mask=mr, other=0.0)
        v += s[:, None] * tl.load(w_ptr + (1 + c * B + b) * K + rk, mask=mk, other=0.0)[None, :]
        vb += s * tl.load(b_ptr + 1 + c * B + b)
    return v, vb


@triton.jit
def _fused_kernel(o_ptr, d_ptr, sh_ptr, tmin_ptr, tmax_ptr, bin_ptr, box_ptr, step_ptr, M, G0, G1, G2,
                  lo_ptr, sc_ptr, g_ptr, res_ptr, hashed_ptr, T, mp_ptr, mv_ptr, EP, EV, c_ptr, beta_ptr, D, w_ptr,
                  b_ptr, K, dscale, dshift, bg_ptr, early_stop, alpha_thre, stop_tau,
                  rgb_ptr, opa_ptr, dep_ptr, ev_ptr, R,
                  ENC: tl.constexpr, L: tl.constexpr, F: tl.constexpr, BF: tl.constexpr, B: tl.constexpr,
                  KERNEL: tl.constexpr, POW2: tl.constexpr, UNROLL: tl.constexpr, MAX_TAU: tl.constexpr,
                  BLOCK: tl.constexpr, BK: tl.constexpr):
    ray = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mr = ray < R
    o0 = tl.load(o_ptr + ray * 3, mask=mr, other=0.0)
    o1 = tl.load(o_ptr + ray * 3 + 1, mask=mr, other=0.0)
    o2 = tl.load(o_ptr + ray * 3 + 2, mask=mr, other=0.0)
    d0 = tl.load(d_ptr + ray * 3, mask=mr, other=0.0)
    d1 = tl.load(d_ptr + ray * 3 + 1, mask=mr, other=0.0)
    d2 = tl.load(d_ptr + ray * 3 + 2, mask=mr, other=0.0)
    tmin = tl.load(tmin_ptr + ray, mask=mr, other=0.0)
    tmax = tl.load(tmax_ptr + ray, mask=mr, other=0.0)
    step = tl.load(step_ptr)
    rk = tl.arange(0, BK)
    mk = rk < K
    w0 = tl.load(w_ptr + rk, mask=mk, other=0.0)
    b0 = tl.load(b_ptr)
    v_r, vb_r = _colour_rows(sh_ptr, w_ptr, b_ptr, ray, mr, rk, mk, 0, K, B, BLOCK, BK)
    v_g, vb_g = _colour_rows(sh_ptr, w_ptr, b_ptr, ray, mr, rk, mk, 1, K, B, BLOCK, BK)
    v_b, vb_b = _colour_rows(sh_ptr, w_ptr, b_ptr, ray, mr, rk, mk, 2, K, B, BLOCK, BK)

    acc_r = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_g = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK,), dtype=tl.float32)
    opa = tl.zeros((BLOCK,), dtype=tl.float32)
    dep = tl.zeros((BLOCK,), dtype=tl.float32)
    tau_all = tl.zeros((BLOCK,), dtype=tl.float32)
    tau_kept = tl.zeros((BLOCK,), dtype=tl.float32)
    evals = tl.zeros((BLOCK,), dtype=tl.int32)
    k = tl.zeros((BLOCK,), dtype=tl.int32)
    alive = mr & (tmax > tmin)
    while tl.max(alive.to(tl.int32), axis=0) > 0:
        ts, te, mid, left, occ = _interval(o0, o1, o2, d0, d1, d2, tmin, tmax, k, step, M, alive, box_ptr, bin_ptr,
                                           G0, G1, G2)
        skip = left & (occ == 0)
        while tl.max(skip.to(tl.int32), axis=0) > 0:  # step over empty cells (occupancy reads only)
            k = tl.where(skip, k + 1, k)
            ts, te, mid, left, occ = _interval(o0, o1, o2, d0, d1, d2, tmin, tmax, k, step, M, alive, box_ptr,
                                               bin_ptr, G0, G1, G2)
            skip = left & (occ == 0)
        ev = left  # live rays at an occupied interval
        r = _rbf_distances(_normalised(o0 + d0 * mid, lo_ptr, sc_ptr, 0), _normalised(o1 + d1 * mid, lo_ptr, sc_ptr, 1),
                           _normalised(o2 + d2 * mid, lo_ptr, sc_ptr, 2), ev, g_ptr, res_ptr, hashed_ptr, T, mp_ptr,
                           mv_ptr, EP, EV, c_ptr, beta_ptr, rk, mk, D, ENC, L, F, BF, POW2, UNROLL, BLOCK, BK)
        phi = tl.where(mk[None, :], _phi(r, KERNEL), 0.0)
        z = tl.sum(phi * w0[None, :], axis=1) + b0 + dshift
        sigma = dscale * (tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z))))  # softplus
        tau = tl.minimum(sigma * (te - ts), MAX_TAU)
        alpha = 1.0 - tl.exp(-tau)
        kept = ev & (tl.exp(-tau_all) >= early_stop) & ((alpha >= alpha_thre) | (alpha_thre <= 0.0))
        w = tl.where(kept, tl.exp(-tau_kept) * alpha, 0.0)
        acc_r += w / (1.0 + tl.exp(-(tl.sum(phi * v_r, axis=1) + vb_r)))
        acc_g += w / (1.0 + tl.exp(-(tl.sum(phi * v_g, axis=1) + vb_g)))
        acc_b += w / (1.0 + tl.exp(-(tl.sum(phi * v_b, axis=1) + vb_b)))
        opa += w
        dep += w * mid
        tau_all += tl.where(ev, tau, 0.0)
        tau_kept += tl.where(kept, tau, 0.0)
        evals += ev.to(tl.int32)
        k = tl.where(ev, k + 1, k)
        alive = ev & (tau_all < stop_tau)
    rest = 1.0 - opa
    tl.store(rgb_ptr + ray * 3, acc_r + rest * tl.load(bg_ptr), mask=mr)
    tl.store(rgb_ptr + ray * 3 + 1, acc_g + rest * tl.load(bg_ptr + 1), mask=mr)
    tl.store(rgb_ptr + ray * 3 + 2, acc_b + rest * tl.load(bg_ptr + 2), mask=mr)
    tl.store(opa_ptr + ray, opa, mask=mr)
    tl.store(dep_ptr + ray, dep, mask=mr)
    tl.store(ev_ptr + ray, evals, mask=mr)


def render(origins, dirs, sh, t_min, t_max, binary_u8, box, step_t, max_steps, field, background, early_stop,
           alpha_thre):
    """Launch ``_fused_kernel`` (arguments as ``render_fused``; box, step_t from ``traverse._box``)."""
    n, dev = origins.shape[0], origins.device
    rgb = torch.empty(n, 3, dtype=torch.float32, device=dev)
    opacity = torch.empty(n, dtype=torch.float32, device=dev)
    depth = torch.empty(n, dtype=torch.float32, device=dev)
    evals = torch.empty(n, dtype=torch.int32, device=dev)
    if n == 0:
        return rgb, opacity, depth, evals
    enc = field.encoding
    if hasattr(enc, "table"):  # HashEncoding
        levels, tsize, feats = enc.table.shape
        res_t, hashed_t = hash_levels(enc.resolutions, 3, tsize, dev)
        grids, meta_p, meta_v, kind = enc.table.contiguous(), res_t, res_t, 0
    else:  # TriPlaneEncoding: the grids back to back in one buffer, as triplane_grid reads them
        grids = _flat([*enc.planes, *enc.volumes])
        meta_p, meta_v = _meta(enc.planes, enc.volumes, dev)
        levels, tsize, feats, kind = 0, 0, enc.planes[0].shape[0], 1
        res_t = hashed_t = meta_p
    lo, hi = field.aabb[0], field.aabb[1]
    scale = (2.0 / (hi - lo)).contiguous()  # the reference's normalisation, rounded the same way
    k, width = field.centers.shape
    g0, g1, g2 = binary_u8.shape
    stop_tau = -math.log(early_stop) if early_stop > 0 else BIG
    with device_guard(dev):
        _fused_kernel[(triton.cdiv(n, BLOCK),)](
            origins, dirs, sh, t_min, t_max, binary_u8, box, step_t, max_steps, g0, g1, g2,
            lo.contiguous(), scale, grids, res_t, hashed_t, tsize, meta_p, meta_v, meta_p.shape[0] * kind,
            meta_v.shape[0] * kind, field.centers.contiguous(), field.log_prec.exp().contiguous(), width,
            field.head_w.contiguous(), field.head_b.contiguous(), k, float(field.density_scale),
            float(field.density_shift), background, float(early_stop), float(alpha_thre), stop_tau,
            rgb, opacity, depth, evals, n,
            ENC=kind, L=levels, F=feats, BF=triton.next_power_of_2(max(feats, 1)), B=sh.shape[1],
            KERNEL=KERNEL_IDS[field.kernel], POW2=tsize > 0 and (tsize & (tsize - 1)) == 0, UNROLL=UNROLL_LEVELS,
            MAX_TAU=COMPOSITE_MAX_OPTICAL_DEPTH, BLOCK=BLOCK, BK=triton.next_power_of_2(max(k, 1)), num_warps=WARPS,
            enable_fp_fusion=False)
    return rgb, opacity, depth, evals
