"""Triton kernel of ``render_fused`` (imported lazily; importing this imports triton).

A program marches BLOCK rays together, one per lane, and takes them from a queue: the programs share one
counter of rays handed out, and once REFILL of a program's lanes are done (opaque or out of intervals), they
write their results and take the next rays of the queue. A frame's rays take very different numbers of
samples (a lego test view: 0 for the background, dozens near edges), so blocks of rays fixed at launch idle
most lanes while their slowest ray finishes. Per pass: every live ray steps over unoccupied
intervals (an inner loop that only reads the occupancy grid), then the block evaluates the field
at each live ray's next occupied interval: the grid corners (hash levels, or tri-plane planes and
volumes) are gathered and blended, each feature adds its term to the RBF distances r [BLOCK, K]
(the direct form of ``_rbf_triton``), the head's density row and the three colour rows are dot
products with phi. A ray's colour rows are
folded with its SH bases once, when its lane takes it (V_c = sum_b sh_b W_{1+cB+b}, a [BLOCK, B] x [B, K]
product for the block's new lanes), so colour costs three
dot products per sample whatever the SH degree. Compositing runs in registers; nothing per sample
is stored. Dead lanes mask their loads, so a block costs memory traffic only for its live rays.

The decoder's linear tail (HAS_TAIL, a constexpr) is summed as the features are: each feature v at column col
adds v tail_w[0, col] to the lane's density and v T_c[col] to its colour channel c, T_c = sum_b sh_b
tail_w[1 + cB + b] being the tail's colour rows folded with the ray's SH bases when its lane takes it (feature by
feature: no [BLOCK, D] tile). The T_c live in a scratch buffer, [programs, 3, D, BLOCK], not in registers: four
sums per lane instead of a [BLOCK, 1 + 3B] tile, 4 FMAs per feature instead of 1 + 3B; barriers order a refill's
scratch writes against the other threads' reads. Hash levels add the tail per feature column, the tri-plane per
[BLOCK, F] tile (reduced once per sample; per column its grid loops spilled more). sm_90 SASS of the fields of the
kernel tests grown to 32 units and 16 hash levels (Triton 3.9, 32 x 2, compiled, not timed): the hash level loop
310 -> 355 instructions, no spills either way (stack 1000 -> 984 bytes); the tri-plane's plane and volume loops
582 / 740 -> 625 / 775, 5 and 3 spill loads (stack 936 -> 1256). Without a tail, softplus, the SASS is the
kernel's before the tail, instruction for instruction (argument offsets aside). The density activation is a
constexpr too (EXP: exp(min(z, cap)), else softplus).

With the decoder's projection P [J, D] (HAS_PROJ, a constexpr) the feature loops add v P[:, col] to z = P F
[BLOCK, BJ] instead of terms to r, and r is formed from z once per sample in the reference's expanded form,
(z*z) beta^T - 2 z (beta mu)^T + sum_j beta_kj mu_kj^2 (two [BLOCK, BJ] x [BJ, BK] products, fp32), clamped at 0.
Without it the constexpr branches compile away: the kernel is the one without a projection.

FP contraction is off, as in ``_traverse_triton``: interval positions and occupancy tests are the
reference's, rounding for rounding. The field's blends and RBF distances use explicit ``tl.fma`` instead
(rounding there decides no step). Hash levels gather each feature as a [BLOCK, 1] column that broadcasts
over the units as it is: sm_90 SASS of the default field, Triton 3.9, 231-233 instructions per level per thread
against 264 with [BLOCK, F] gathers (whose feature columns cost shuffles) and separate multiply-adds; the
tri-plane keeps [BLOCK, F] gathers (per-feature columns were worse there: 249 against 230).
"""

import math

import torch
import triton
import triton.language as tl

from ._dispatch import cdiv, device_guard, next_pow2, num_programs_hint
from ._grid_triton import _corner, _gs_axis, _hash_axis, _hash_index, hash_levels
from ._rbf_triton import KERNEL_IDS, _phi
from ._torch_ref import COMPOSITE_MAX_OPTICAL_DEPTH
from ._traverse_triton import _cell
from ._triplane_triton import _strides
from .triplane import _flat, _meta

# Launch shape, timed on an H200 (bench/frame_gpu.py; lego 400x400 fitted 60 s on the hash grid, 33.4 dB; an
# 800x800 test view as `fieldfit render` makes it, 4 programs per SM, registers capped at 128): 32 rays x 2 warps
# 8.1 ms, x 4 warps 9.7, x 8 warps 16.9; 64 rays x 4 warps 8.4, x 2 warps 10.4; 32 x 4 uncapped 11.9 ms
# (bench/results/frame_h200_2026-11-27.json). sm_90 compiles (stack bytes at 128 registers): 32 x 8 48 (none in
# the level loop; its refill branch 613 instructions, 1329 with the colour rows folded basis by basis, no dot),
# 32 x 4 448, 32 x 2 1000: fewer threads hold more of each [rays, units] tile, yet 32 x 2 was the fastest.
BLOCK, WARPS, UNROLL_LEVELS, MAX_REGISTERS = 32, 2, False, 128
# Lane refill: a program's lanes whose rays are done take new rays from the queue once REFILL of them are done.
# Counted by bench/fused_lanes.py (a trained lego tri-plane run, 30.4 dB; its test view in image order; 264
# programs at once, an H100's 132 SMs x 2), block passes (field evaluations of 32 lanes) and, in brackets, those
# of the busiest program: at 800x800, REFILL 8 92.2k (353), 16 106.2k (405), 1 85.5k (327) but 78% more skip
# iterations than 8; fixed blocks (REFILL = BLOCK) 148.1k (563), in span order 226.2k (878). At 400x400: 8
# 25.0k (128), fixed blocks 43.8k (176), in span order 54.3k (229). On the H200 (32 x 4 above): REFILL 8 9.7 ms,
# 16 10.4; an earlier run at 32 x 8 (frame_h200_2026-11-27_first.json): REFILL 8 18.5 ms, 1 19.6, fixed blocks 22.1.
REFILL = 8
# Programs per SM of a launch on a GPU (more than fit wait in line). H200, 32 x 4: 4 per SM 9.7 ms, 8 10.5; at
# 32 x 8: 2 18.1, 4 18.5, 8 18.3.
PROGRAMS_PER_SM = 4
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
def _add_feature(r, t0, tr, tg, tb, v, col, live, c_ptr, beta_ptr, rk, mk, D, tw_ptr, sp, BLOCK: tl.constexpr,
                 HAS_TAIL: tl.constexpr, HAS_PROJ: tl.constexpr):
    """r + beta_k,col (v - mu_k,col)^2 for one feature v [BLOCK, 1] (column ``col`` of the features), or with
    HAS_PROJ z + v P[:, col] (r is then z [BLOCK, BJ], c_ptr P [J, D] and rk, mk its rows), and with
    HAS_TAIL the tail sums [BLOCK, 1] plus v times column col of the tail: tail_w[0, col] for the density t0,
    each lane's folded colour rows (``_fold_tail``, read from its scratch ``sp``) for tr, tg, tb."""
    cd = tl.load(c_ptr + rk * D + col, mask=mk, other=0.0)
    if HAS_PROJ:
        r = tl.fma(v, cd[None, :], r)
    else:
        bd = tl.load(beta_ptr + rk * D + col, mask=mk, other=0.0)
        diff = v - cd[None, :]
        r = tl.fma(bd[None, :], diff * diff, r)
    if HAS_TAIL:
        t0 = tl.fma(v, tl.load(tw_ptr + col), t0)
        tr = tl.fma(v, tl.load(sp + col * BLOCK, mask=live, other=0.0), tr)
        tg = tl.fma(v, tl.load(sp + (D + col) * BLOCK, mask=live, other=0.0), tg)
        tb = tl.fma(v, tl.load(sp + (2 * D + col) * BLOCK, mask=live, other=0.0), tb)
    return r, t0, tr, tg, tb


@triton.jit
def _level(lvl, r, t0, tr, tg, tb, base, u0, u1, u2, live, t_ptr, res_ptr, hashed_ptr, T, c_ptr, beta_ptr, rk, mk,
           D, tw_ptr, sp, F: tl.constexpr, POW2: tl.constexpr, BLOCK: tl.constexpr, HAS_TAIL: tl.constexpr,
           HAS_PROJ: tl.constexpr):
    """r (z with HAS_PROJ; and the tail sums) plus the terms of hash level ``lvl``'s F features (rows of the level
    start at ``base``; live [BLOCK, 1])."""
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
        r, t0, tr, tg, tb = _add_feature(r, t0, tr, tg, tb, v, lvl * F + f, live, c_ptr, beta_ptr, rk, mk, D, tw_ptr,
                                         sp, BLOCK, HAS_TAIL, HAS_PROJ)
    return r, t0, tr, tg, tb


@triton.jit
def _grid(e, col0, r, t0, tr, tg, tb, meta_ptr, xn0, xn1, xn2, live, m2, rf, g_ptr, c_ptr, beta_ptr, rk, mk, D, tw_ptr,
          sp, F: tl.constexpr, BF: tl.constexpr, DIM: tl.constexpr, CL: tl.constexpr, BLOCK: tl.constexpr,
          HAS_TAIL: tl.constexpr, HAS_PROJ: tl.constexpr):
    """r (z with HAS_PROJ; and the tail sums) plus the terms of tri-plane grid ``e`` of ``meta`` (a plane, DIM 2,
    or a volume, DIM 3; the entry table of ``_triplane_triton``: offset in the flat buffer, R, axis along the last
    grid axis, axis along the one before). CL: the buffer is channels-last."""
    off = tl.load(meta_ptr + e * 4)
    S = tl.load(meta_ptr + e * 4 + 1)
    a0 = tl.load(meta_ptr + e * 4 + 2)
    a1 = tl.load(meta_ptr + e * 4 + 3)
    lo0, hi0, f0, _ = _gs_axis(tl.where(a0 == 0, xn0, tl.where(a0 == 1, xn1, xn2)), S)
    lo1, hi1, f1, _ = _gs_axis(tl.where(a1 == 0, xn0, tl.where(a1 == 1, xn1, xn2)), S)
    if DIM == 3:
        lo2, hi2, f2, _ = _gs_axis(xn2, S)
    else:
        f2 = tl.zeros(f0.shape, dtype=f0.dtype)
        lo2 = tl.zeros(lo0.shape, dtype=tl.int64)
        hi2 = lo2
    stc, stf = _strides(S, F, DIM, CL)
    feat = tl.zeros((BLOCK, BF), dtype=tl.float32)
    for c in tl.static_range(2**DIM):
        i0, i1, i2, w, dw0, dw1, dw2 = _corner(c, lo0, hi0, f0, lo1, hi1, f1, lo2, hi2, f2)
        o = off + (i0 + (i1 + i2 * S) * S) * stc
        feat = tl.fma(w[:, None], tl.load(g_ptr + o[:, None] + rf[None, :] * stf, mask=m2, other=0.0), feat)
    for f in tl.static_range(F):  # each feature column, then its term
        v = tl.sum(tl.where(rf[None, :] == f, feat, 0.0), axis=1)[:, None]
        r, t0, tr, tg, tb = _add_feature(r, t0, tr, tg, tb, v, col0 + f, live, c_ptr, beta_ptr, rk, mk, D, tw_ptr, sp,
                                         BLOCK, False, HAS_PROJ)
    if HAS_TAIL:  # the tail's terms of the F features at once, into [BLOCK, BF] sums
        col = col0 + rf
        t0 = tl.fma(feat, tl.load(tw_ptr + col, mask=rf < F, other=0.0)[None, :], t0)
        tr = tl.fma(feat, tl.load(sp + col[None, :] * BLOCK, mask=m2, other=0.0), tr)
        tg = tl.fma(feat, tl.load(sp + (D + col[None, :]) * BLOCK, mask=m2, other=0.0), tg)
        tb = tl.fma(feat, tl.load(sp + (2 * D + col[None, :]) * BLOCK, mask=m2, other=0.0), tb)
    return r, t0, tr, tg, tb


@triton.jit
def _projected(z, beta_ptr, bmu_ptr, rc_ptr, rk, mk, J, BJ: tl.constexpr):
    """r [BLOCK, BK] = sum_j beta_kj (z_j - mu_kj)^2 from z [BLOCK, BJ], expanded as the reference does:
    (z*z) beta^T - 2 z (beta mu)^T + rc_k (beta, beta mu [K, J], rc_k = sum_j beta_kj mu_kj^2), clamped at 0
    (cancellation can take it below)."""
    rj = tl.arange(0, BJ)
    m = (rj < J)[:, None] & mk[None, :]
    off = rk[None, :] * J + rj[:, None]  # [BJ, BK]: the [K, J] tables transposed
    beta_t = tl.load(beta_ptr + off, mask=m, other=0.0)
    bmu_t = tl.load(bmu_ptr + off, mask=m, other=0.0)
    r = tl.dot(z * z, beta_t, input_precision="ieee") - 2.0 * tl.dot(z, bmu_t, input_precision="ieee")
    return tl.maximum(r + tl.load(rc_ptr + rk, mask=mk, other=0.0)[None, :], 0.0)


@triton.jit
def _rbf_distances(xn0, xn1, xn2, ev, g_ptr, res_ptr, hashed_ptr, T, mp_ptr, mv_ptr, EP, EV, c_ptr, beta_ptr, rk,
                   mk, D, tw_ptr, sp, p_ptr, bmu_ptr, rc_ptr, J, ENC: tl.constexpr, L: tl.constexpr, F: tl.constexpr,
                   BF: tl.constexpr, POW2: tl.constexpr, UNROLL: tl.constexpr, BLOCK: tl.constexpr, BK: tl.constexpr,
                   HAS_TAIL: tl.constexpr, HAS_PROJ: tl.constexpr, BJ: tl.constexpr):
    """(r [BLOCK, BK] = sum_d beta_kd (feature_d - mu_kd)^2 of the encoding's features at normalised points
    (lanes ev only), the tail sums t0, tr, tg, tb [BLOCK, 1] (zero without HAS_TAIL; ``_add_feature``)).
    ENC 0: hash grid, L levels of table ``g_ptr`` (UNROLL unrolls the levels: all their gathers can be in flight
    at once, at twice the registers); ENC 1 / 2: tri-plane, EP planes and EV volumes of the flat buffer ``g_ptr``,
    channels-first / channels-last. HAS_PROJ: r = sum_j beta_kj (z_j - mu_kj)^2 of z = P F (P [J, D] at p_ptr;
    beta, beta mu [K, J], rc [K]: ``_projected``)."""
    rf = tl.arange(0, BF)
    live = ev[:, None]
    m2 = live & (rf < F)[None, :]
    if HAS_PROJ:  # the features add to z [BLOCK, BJ] (P read as the centres are: a_ptr P, rows ra), r is formed last
        rj = tl.arange(0, BJ)
        r = tl.zeros((BLOCK, BJ), dtype=tl.float32)
        a_ptr, ra, ma = p_ptr, rj, rj < J
    else:
        r = tl.zeros((BLOCK, BK), dtype=tl.float32)
        a_ptr, ra, ma = c_ptr, rk, mk
    t0 = tl.zeros((BLOCK, 1 if ENC == 0 else BF), dtype=tl.float32)  # tri-plane: by feature of a grid
    tr, tg, tb = t0, t0, t0
    if ENC == 0:
        u0 = _hash_u(xn0)
        u1 = _hash_u(xn1)
        u2 = _hash_u(xn2)
        base = tl.zeros((BLOCK,), dtype=tl.int64)  # first row of the level in the flat [L*T, F] table
        if UNROLL:
            for lvl in tl.static_range(L):
                r, t0, tr, tg, tb = _level(lvl, r, t0, tr, tg, tb, base, u0, u1, u2, live, g_ptr, res_ptr, hashed_ptr,
                                           T, a_ptr, beta_ptr, ra, ma, D, tw_ptr, sp, F, POW2, BLOCK, HAS_TAIL,
                                           HAS_PROJ)
                base += T
        else:
            for lvl in range(L):
                r, t0, tr, tg, tb = _level(lvl, r, t0, tr, tg, tb, base, u0, u1, u2, live, g_ptr, res_ptr, hashed_ptr,
                                           T, a_ptr, beta_ptr, ra, ma, D, tw_ptr, sp, F, POW2, BLOCK, HAS_TAIL,
                                           HAS_PROJ)
                base += T
    else:
        for e in range(EP):
            r, t0, tr, tg, tb = _grid(e, e * F, r, t0, tr, tg, tb, mp_ptr, xn0, xn1, xn2, live, m2, rf, g_ptr, a_ptr,
                                      beta_ptr, ra, ma, D, tw_ptr, sp, F, BF, 2, ENC == 2, BLOCK, HAS_TAIL, HAS_PROJ)
        for e in range(EV):
            r, t0, tr, tg, tb = _grid(e, (EP + e) * F, r, t0, tr, tg, tb, mv_ptr, xn0, xn1, xn2, live, m2, rf, g_ptr,
                                      a_ptr, beta_ptr, ra, ma, D, tw_ptr, sp, F, BF, 3, ENC == 2, BLOCK, HAS_TAIL,
                                      HAS_PROJ)
    if HAS_PROJ:
        r = _projected(r, beta_ptr, bmu_ptr, rc_ptr, rk, mk, J, BJ)
    return r, t0, tr, tg, tb


@triton.jit
def _colour_rows(v, vb, new, sh_ptr, w_ptr, b_ptr, ray, rk, mk, c: tl.constexpr, K, B: tl.constexpr,
                 BB: tl.constexpr):
    """(V [BLOCK, BK], bias [BLOCK]) with the lanes ``new`` set to channel c's head rows folded with their
    rays' SH bases: one [BLOCK, BB] x [BB, BK] product (fp32 FMAs)."""
    rb = tl.arange(0, BB)
    mb = rb < B
    s = tl.load(sh_ptr + ray[:, None] * B + rb[None, :], mask=new[:, None] & mb[None, :], other=0.0)
    w = tl.load(w_ptr + (1 + c * B + rb[:, None]) * K + rk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
    bias = tl.load(b_ptr + 1 + c * B + rb, mask=mb, other=0.0)
    v = tl.where(new[:, None], tl.dot(s, w, input_precision="ieee"), v)
    vb = tl.where(new, tl.sum(s * bias[None, :], axis=1), vb)
    return v, vb


@triton.jit
def _fold_tail(new, sh_ptr, tw_ptr, ray, sp, D, B: tl.constexpr, BB: tl.constexpr, BLOCK: tl.constexpr):
    """Write the lanes ``new``'s folded tail rows T_c[col] = sum_b sh_b tail_w[1 + cB + b, col] (their rays' SH
    bases sh) to their scratch, at sp + (cD + col) BLOCK: feature by feature, so no [BLOCK, D] tile is held."""
    rb = tl.arange(0, BB)
    mb = rb < B
    s = tl.load(sh_ptr + ray[:, None] * B + rb[None, :], mask=new[:, None] & mb[None, :], other=0.0)
    for col in range(D):
        for c in tl.static_range(3):
            w = tl.load(tw_ptr + (1 + c * B + rb) * D + col, mask=mb, other=0.0)
            tl.store(sp + (c * D + col) * BLOCK, tl.sum(s * w[None, :], axis=1), mask=new)


@triton.jit
def _row(phi, v, vb, t, HAS_TAIL: tl.constexpr):
    """One raw output per lane: phi . v + vb (a head row, [1, BK] or [BLOCK, BK]), plus its tail sum t [BLOCK, 1]."""
    raw = tl.sum(phi * v, axis=1) + vb
    if HAS_TAIL:
        raw += tl.sum(t, axis=1)
    return raw


@triton.jit
def _take(new, x, ptr, i):
    """x with the lanes ``new`` replaced by ptr[i] (a masked load: other lanes read nothing)."""
    return tl.where(new, tl.load(ptr + i, mask=new, other=0.0), x)


@triton.jit
def _store(done, ray, acc_r, acc_g, acc_b, opa, dep, evals, bg_ptr, rgb_ptr, opa_ptr, dep_ptr, ev_ptr):
    """Write the results of the lanes ``done`` (colour over the background)."""
    rest = 1.0 - opa
    tl.store(rgb_ptr + ray * 3, acc_r + rest * tl.load(bg_ptr), mask=done)
    tl.store(rgb_ptr + ray * 3 + 1, acc_g + rest * tl.load(bg_ptr + 1), mask=done)
    tl.store(rgb_ptr + ray * 3 + 2, acc_b + rest * tl.load(bg_ptr + 2), mask=done)
    tl.store(opa_ptr + ray, opa, mask=done)
    tl.store(dep_ptr + ray, dep, mask=done)
    tl.store(ev_ptr + ray, evals, mask=done)


# the steps (M) and rays (R) of a frame change with the camera and the viewer's resolution: unspecialised, or each
# new divisibility by 16 compiles the kernel again (seconds each, mid-interaction; seen in the viewer on an H200)
@triton.jit(do_not_specialize=["M", "R"])
def _fused_kernel(o_ptr, d_ptr, sh_ptr, tmin_ptr, tmax_ptr, bin_ptr, box_ptr, step_ptr, M, G0, G1, G2,
                  lo_ptr, sc_ptr, g_ptr, res_ptr, hashed_ptr, T, mp_ptr, mv_ptr, EP, EV, c_ptr, beta_ptr, D, p_ptr,
                  bmu_ptr, rc_ptr, J, w_ptr, b_ptr, K, tw_ptr, scr_ptr, dscale, dshift, exp_cap, bg_ptr, early_stop,
                  alpha_thre, stop_tau,
                  rgb_ptr, opa_ptr, dep_ptr, ev_ptr, next_ptr, R,
                  ENC: tl.constexpr, L: tl.constexpr, F: tl.constexpr, BF: tl.constexpr, B: tl.constexpr,
                  KERNEL: tl.constexpr, POW2: tl.constexpr, UNROLL: tl.constexpr, MAX_TAU: tl.constexpr,
                  REFILL: tl.constexpr, BB: tl.constexpr, BLOCK: tl.constexpr, BK: tl.constexpr,
                  HAS_TAIL: tl.constexpr, EXP: tl.constexpr, HAS_PROJ: tl.constexpr, BJ: tl.constexpr):
    lane = tl.arange(0, BLOCK)
    # this program's lanes' scratch (HAS_TAIL): their folded tail rows, [3, D, BLOCK] per program
    sp = scr_ptr + tl.program_id(0).to(tl.int64) * (3 * D * BLOCK) + lane
    rk = tl.arange(0, BK)
    mk = rk < K
    w0 = tl.load(w_ptr + rk, mask=mk, other=0.0)
    b0 = tl.load(b_ptr)
    step = tl.load(step_ptr)
    # lane state: its ray (owned: taken, result not yet written), that ray's march and sums
    ray = tl.zeros((BLOCK,), dtype=tl.int64)
    owned = lane < 0
    alive = lane < 0
    zero = tl.zeros((BLOCK,), dtype=tl.float32)
    o0, o1, o2, d0, d1, d2, tmin, tmax = zero, zero, zero, zero, zero, zero, zero, zero
    acc_r, acc_g, acc_b, opa, dep, tau_all, tau_kept = zero, zero, zero, zero, zero, zero, zero
    evals = tl.zeros((BLOCK,), dtype=tl.int32)
    k = tl.zeros((BLOCK,), dtype=tl.int32)
    v_r = tl.zeros((BLOCK, BK), dtype=tl.float32)
    v_g, v_b = v_r, v_r
    vb_r, vb_g, vb_b = zero, zero, zero
    more = 1  # the queue may hold rays
    n_alive = 0
    while (n_alive > 0) | (more > 0):
        n_dead = BLOCK - n_alive
        if (more > 0) & (n_dead >= REFILL):  # dead lanes write their rays and take the next ones of the queue
            dead = alive == 0
            _store(owned & dead, ray, acc_r, acc_g, acc_b, opa, dep, evals, bg_ptr, rgb_ptr, opa_ptr, dep_ptr,
                   ev_ptr)
            first = tl.atomic_add(next_ptr, n_dead)
            more = (first + n_dead < R).to(tl.int32)
            idx = first.to(tl.int64) + tl.cumsum(dead.to(tl.int32), axis=0).to(tl.int64) - 1
            new = dead & (idx < R)
            ray = tl.where(new, idx, ray)
            owned = alive | new
            o0 = _take(new, o0, o_ptr, idx * 3)
            o1 = _take(new, o1, o_ptr, idx * 3 + 1)
            o2 = _take(new, o2, o_ptr, idx * 3 + 2)
            d0 = _take(new, d0, d_ptr, idx * 3)
            d1 = _take(new, d1, d_ptr, idx * 3 + 1)
            d2 = _take(new, d2, d_ptr, idx * 3 + 2)
            tmin = _take(new, tmin, tmin_ptr, idx)
            tmax = _take(new, tmax, tmax_ptr, idx)
            v_r, vb_r = _colour_rows(v_r, vb_r, new, sh_ptr, w_ptr, b_ptr, idx, rk, mk, 0, K, B, BB)
            v_g, vb_g = _colour_rows(v_g, vb_g, new, sh_ptr, w_ptr, b_ptr, idx, rk, mk, 1, K, B, BB)
            v_b, vb_b = _colour_rows(v_b, vb_b, new, sh_ptr, w_ptr, b_ptr, idx, rk, mk, 2, K, B, BB)
            if HAS_TAIL:  # each thread's reads of a slot come before its rewrite, the rewrites before the reads
                tl.debug_barrier()
                _fold_tail(new, sh_ptr, tw_ptr, idx, sp, D, B, BB, BLOCK)
                tl.debug_barrier()
            acc_r = tl.where(new, 0.0, acc_r)
            acc_g = tl.where(new, 0.0, acc_g)
            acc_b = tl.where(new, 0.0, acc_b)
            opa = tl.where(new, 0.0, opa)
            dep = tl.where(new, 0.0, dep)
            tau_all = tl.where(new, 0.0, tau_all)
            tau_kept = tl.where(new, 0.0, tau_kept)
            evals = tl.where(new, 0, evals)
            k = tl.where(new, 0, k)
            alive = alive | (new & (tmax > tmin))
        if tl.max(alive.to(tl.int32), axis=0) > 0:  # one pass: each live ray's next occupied interval
            ts, te, mid, left, occ = _interval(o0, o1, o2, d0, d1, d2, tmin, tmax, k, step, M, alive, box_ptr,
                                               bin_ptr, G0, G1, G2)
            skip = left & (occ == 0)
            while tl.max(skip.to(tl.int32), axis=0) > 0:  # step over empty cells (occupancy reads only)
                k = tl.where(skip, k + 1, k)
                ts, te, mid, left, occ = _interval(o0, o1, o2, d0, d1, d2, tmin, tmax, k, step, M, alive, box_ptr,
                                                   bin_ptr, G0, G1, G2)
                skip = left & (occ == 0)
            ev = left  # live rays at an occupied interval
            r, t0, tr, tg, tb = _rbf_distances(_normalised(o0 + d0 * mid, lo_ptr, sc_ptr, 0),
                                               _normalised(o1 + d1 * mid, lo_ptr, sc_ptr, 1),
                                               _normalised(o2 + d2 * mid, lo_ptr, sc_ptr, 2), ev, g_ptr, res_ptr,
                                               hashed_ptr, T, mp_ptr, mv_ptr, EP, EV, c_ptr, beta_ptr, rk, mk, D,
                                               tw_ptr, sp[:, None], p_ptr, bmu_ptr, rc_ptr, J, ENC, L, F, BF, POW2,
                                               UNROLL, BLOCK, BK, HAS_TAIL, HAS_PROJ, BJ)
            phi = tl.where(mk[None, :], _phi(r, KERNEL), 0.0)
            z = _row(phi, w0[None, :], b0, t0, HAS_TAIL) + dshift
            if EXP:
                sigma = dscale * tl.exp(tl.minimum(z, exp_cap))
            else:
                sigma = dscale * (tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z))))  # softplus
            tau = tl.minimum(sigma * (te - ts), MAX_TAU)
            alpha = 1.0 - tl.exp(-tau)
            kept = ev & (tl.exp(-tau_all) >= early_stop) & ((alpha >= alpha_thre) | (alpha_thre <= 0.0))
            w = tl.where(kept, tl.exp(-tau_kept) * alpha, 0.0)
            acc_r += w / (1.0 + tl.exp(-_row(phi, v_r, vb_r, tr, HAS_TAIL)))
            acc_g += w / (1.0 + tl.exp(-_row(phi, v_g, vb_g, tg, HAS_TAIL)))
            acc_b += w / (1.0 + tl.exp(-_row(phi, v_b, vb_b, tb, HAS_TAIL)))
            opa += w
            dep += w * mid
            tau_all += tl.where(ev, tau, 0.0)
            tau_kept += tl.where(kept, tau, 0.0)
            evals += ev.to(tl.int32)
            k = tl.where(ev, k + 1, k)
            alive = ev & (tau_all < stop_tau)
        n_alive = tl.sum(alive.to(tl.int32), axis=0)
    _store(owned, ray, acc_r, acc_g, acc_b, opa, dep, evals, bg_ptr, rgb_ptr, opa_ptr, dep_ptr, ev_ptr)


def programs(n: int, device) -> int:
    """Programs of a launch: PROGRAMS_PER_SM per SM on a GPU (``num_programs_hint`` elsewhere), never more than
    the blocks of rays; they take rays from one queue until it is empty."""
    if device.type == "cuda":
        limit = max(1, int(PROGRAMS_PER_SM)) * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        limit = num_programs_hint(device)
    return max(1, min(cdiv(n, BLOCK), limit))


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
        grids, cl = _flat([*enc.planes, *enc.volumes])
        meta_p, meta_v = _meta(enc.planes, enc.volumes, dev)
        levels, tsize, feats, kind = 0, 0, enc.planes[0].shape[0], 2 if cl else 1
        res_t = hashed_t = meta_p
    ep, ev = (meta_p.shape[0], meta_v.shape[0]) if kind else (0, 0)  # tri-plane entries (none for a hash grid)
    lo, hi = field.aabb[0], field.aabb[1]
    scale = (2.0 / (hi - lo)).contiguous()  # the reference's normalisation, rounded the same way
    k = field.centers.shape[0]
    proj = field.proj_w
    width = field.centers.shape[1] if proj is None else proj.shape[1]  # the features (D)
    beta = field.log_prec.exp()
    if proj is None:  # unread
        j, proj_args = 1, (beta, beta, beta)
    else:  # P [J, D], beta mu [K, J] and rc_k = sum_j beta_kj mu_kj^2, as the reference forms them
        bmu = beta * field.centers
        j, proj_args = proj.shape[0], (proj.contiguous(), bmu.contiguous(), (bmu * field.centers).sum(-1).contiguous())
    g0, g1, g2 = binary_u8.shape
    stop_tau = -math.log(early_stop) if early_stop > 0 else BIG
    refill = min(max(int(REFILL), 1), BLOCK)  # above BLOCK no lane would ever take a ray
    n_prog = programs(n, dev)
    tail = field.tail_w
    # the lanes' folded tail rows (see the module doc); unread without a tail
    scratch = torch.empty(n_prog * 3 * width * BLOCK if tail is not None else 1, dtype=torch.float32, device=dev)
    with device_guard(dev):
        _fused_kernel[(n_prog,)](
            origins, dirs, sh, t_min, t_max, binary_u8, box, step_t, max_steps, g0, g1, g2,
            lo.contiguous(), scale, grids, res_t, hashed_t, tsize, meta_p, meta_v, ep, ev,
            field.centers.contiguous(), beta.contiguous(), width, *proj_args, j,
            field.head_w.contiguous(), field.head_b.contiguous(), k,
            field.head_w if tail is None else tail.contiguous(), scratch, float(field.density_scale),
            float(field.density_shift), float(field.exp_cap), background, float(early_stop), float(alpha_thre),
            stop_tau,
            rgb, opacity, depth, evals, torch.zeros(1, dtype=torch.int32, device=dev), n,
            ENC=kind, L=levels, F=feats, BF=next_pow2(max(feats, 1)), B=sh.shape[1],
            KERNEL=KERNEL_IDS[field.kernel], POW2=tsize > 0 and (tsize & (tsize - 1)) == 0, UNROLL=UNROLL_LEVELS,
            MAX_TAU=COMPOSITE_MAX_OPTICAL_DEPTH, REFILL=refill, BB=max(16, next_pow2(sh.shape[1])),
            BLOCK=BLOCK, BK=max(16, next_pow2(k)), HAS_TAIL=tail is not None,
            EXP=field.density_activation == "exp", HAS_PROJ=proj is not None, BJ=max(16, next_pow2(j)),
            num_warps=WARPS, maxnreg=MAX_REGISTERS, enable_fp_fusion=False)
    return rgb, opacity, depth, evals
