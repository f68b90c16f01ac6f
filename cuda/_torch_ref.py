"""Pure-torch references for every kernel in fieldfit.cuda.

These are the CPU path and the test oracle of the GPU kernels. They take plain
tensors and return plain tensors; autograd flows through them as written.

Notation: N points, D feature dims, K RBF units, F features per level,
L levels, S packed samples, R rays.
"""

import math

import torch

RBF_KERNELS = ("gaussian", "inverse_quadratic", "inverse_multiquadric", "multiquadric")

# Primes of instant-ngp's spatial hash (the first is 1 so level 0 stays coherent).
HASH_PRIMES = (1, 2654435761, 805459861)


def rbf_distance_ref(x: torch.Tensor, centers: torch.Tensor, log_prec: torch.Tensor,
                     r_max: float = math.inf) -> torch.Tensor:
    """Anisotropic squared distance r[n,k] = sum_d exp(b[k,d]) (x[n,d] - mu[k,d])^2, at most ``r_max``.

    Three matrix products instead of an N x K x D broadcast, clamped at 0 because
    the expanded form can go negative by cancellation (METHODS.md 1.9.4).
    x [N,D], centers [K,D], log_prec [K,D] -> r [N,K].
    """
    beta = log_prec.exp()
    r = (x * x) @ beta.t() - 2.0 * x @ (beta * centers).t() + (beta * centers * centers).sum(-1)
    return r.clamp(0.0, r_max)


def rbf_activation_ref(r: torch.Tensor, kernel: str = "gaussian") -> torch.Tensor:
    """phi(r) for a squared distance r >= 0."""
    if kernel == "gaussian":
        return torch.exp(-0.5 * r)
    if kernel == "inverse_quadratic":
        return 1.0 / (1.0 + r)
    if kernel == "inverse_multiquadric":
        return torch.rsqrt(1.0 + r)
    if kernel == "multiquadric":
        return torch.sqrt(1.0 + r)
    raise ValueError(f"unknown RBF kernel {kernel!r}; choose one of {RBF_KERNELS}")


def rbf_layer_ref(x, centers, log_prec, kernel: str = "gaussian", r_max: float = math.inf):
    """One layer of K anisotropic RBF units: x [N,D] -> phi [N,K] (distances clamped at ``r_max``)."""
    return rbf_activation_ref(rbf_distance_ref(x, centers, log_prec, r_max), kernel)


def dense_grid_ref(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bi/trilinear lookup of one dense level, grid_sample(align_corners=True, border).

    x [N,d] in [-1,1] (x[:,0] runs along the last grid axis, as in grid_sample);
    grid [F,H,W] (d=2) or [F,D,H,W] (d=3) -> [N,F].
    """
    d = x.shape[-1]
    g = x.view(1, -1, *([1] * (d - 1)), d)
    out = torch.nn.functional.grid_sample(
        grid.unsqueeze(0), g.to(grid.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
    return out.reshape(grid.shape[0], -1).t()


def triplane_ref(x: torch.Tensor, planes, volumes) -> torch.Tensor:
    """Tri-plane features [N, (3L+V) F]: plane i reads x[:, (xy, xz, yz)[i % 3]], volumes read x (see
    cuda.triplane.triplane_grid), each through ``dense_grid_ref``, concatenated in order."""
    pairs = ((0, 1), (0, 2), (1, 2))
    feats = [dense_grid_ref(x[:, list(pairs[i % 3])], p) for i, p in enumerate(planes)]
    return torch.cat(feats + [dense_grid_ref(x, v) for v in volumes], dim=-1)


def hash_index_ref(corner: torch.Tensor, res: int, table_size: int) -> torch.Tensor:
    """Table index of integer corners [N,d]: dense when res^d fits the table, else hashed."""
    d = corner.shape[-1]
    if res**d <= table_size:
        idx = torch.zeros_like(corner[:, 0])
        stride = 1
        for i in range(d):
            idx = idx + corner[:, i] * stride
            stride *= res
        return idx
    idx = torch.zeros_like(corner[:, 0])
    for i in range(d):
        idx = idx ^ (corner[:, i] * HASH_PRIMES[i])
    return idx % table_size


def hash_grid_ref(x: torch.Tensor, table: torch.Tensor, resolutions) -> torch.Tensor:
    """Multi-resolution hash encoding (instant-ngp), all levels.

    x [N,d] in [-1,1]; table [L,T,F]; resolutions: L ints (grid vertices per axis).
    Per level: pos = (x+1)/2 * (res-1); corners floor(pos)+{0,1} clamped to [0,res-1];
    d-linear weights. Returns [N, L*F], level-major.
    """
    n, d = x.shape
    levels, tsize, _ = table.shape
    u = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
    outs = []
    for lvl in range(levels):
        res = int(resolutions[lvl])
        pos = u * (res - 1)
        base = pos.floor().clamp(max=res - 2).long() if res > 1 else pos.floor().long()
        frac = pos - base.to(pos.dtype)
        acc = 0.0
        for c in range(2**d):
            offs = torch.tensor([(c >> i) & 1 for i in range(d)], device=x.device)
            corner = (base + offs).clamp(0, res - 1)
            w = torch.ones_like(frac[:, 0])
            for i in range(d):
                w = w * (frac[:, i] if offs[i] else 1.0 - frac[:, i])
            acc = acc + w.unsqueeze(-1) * table[lvl][hash_index_ref(corner, res, tsize)]
        outs.append(acc)
    return torch.cat(outs, dim=-1)


# ---------------------------------------------------------------------------
# Rendering: packed volume compositing and occupancy-grid traversal.
# Packed layout (render/samples.py::RaySamples): S samples of R rays stored
# ray after ray, ray_indices [S] int64 sorted non-decreasing, t_starts < t_ends.
# ---------------------------------------------------------------------------

# Optical depth sigma*delta of one sample is clamped here before the scan. The
# error this makes is below exp(-COMPOSITE_MAX_OPTICAL_DEPTH) in every weight,
# transmittance and gradient (all of them carry a factor exp(-tau) at tau > cap),
# and it keeps the global float64 scan finite and exact for huge intervals
# (ProNeRF's last delta of 1e10, sigma = inf).
COMPOSITE_MAX_OPTICAL_DEPTH = 64.0


def composite_packed_ref(
    sigmas: torch.Tensor,
    t_starts: torch.Tensor,
    t_ends: torch.Tensor,
    ray_indices: torch.Tensor,
    n_rays: int,
):
    """Volume-rendering weights of packed samples.

    tau_i = sigma_i (t_end_i - t_start_i) (clamped to COMPOSITE_MAX_OPTICAL_DEPTH),
    alpha_i = 1 - exp(-tau_i), T_i = exp(-sum_{j<i, same ray} tau_j) (transmittance
    BEFORE sample i, 1 at the first sample of a ray), w_i = T_i alpha_i.

    The segmented exclusive scan is a global cumsum minus each ray's offset (the
    exclusive cumsum at its first sample). In float32 that difference loses all
    precision once the running total is large (10^6 rays x tau ~ 10 -> 10^7, ulp 1),
    so the scan runs in float64 whatever the input dtype; results come back in the
    dtype of ``sigmas``. A GPU kernel scans per ray and need not do this.

    sigmas [S] >= 0, t_starts [S], t_ends [S], ray_indices [S] int64 sorted
    non-decreasing, n_rays: int (rays without samples are allowed).
    Returns (weights [S], transmittance [S]); differentiable in sigmas, t_starts, t_ends.
    """
    dtype = sigmas.dtype
    tau = (sigmas * (t_ends - t_starts)).clamp(max=COMPOSITE_MAX_OPTICAL_DEPTH)
    if tau.numel() == 0:
        return tau.clone(), tau.clone()
    tau64 = tau.double()
    inclusive = torch.cumsum(tau64, dim=0)
    exclusive = inclusive - tau64
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts  # index of each ray's first sample
    first = first.clamp(max=tau.numel() - 1)  # rays with no samples index nothing used
    offset = exclusive[first][ray_indices]
    transmittance = torch.exp(-(exclusive - offset)).to(dtype)
    alphas = 1.0 - torch.exp(-tau)
    weights = transmittance * alphas
    return weights, transmittance


class _OccupancyTest:
    """(o [r,3], d [r,3], mid [r,m]) -> [r,m] bool: o + mid d inside the aabb (1e-6 of the extent
    tolerance) and in a cell whose binary entry is True."""

    def __init__(self, binary: torch.Tensor, aabb: torch.Tensor, dtype):
        self.res = torch.tensor(binary.shape, device=binary.device)
        self.lo, hi = aabb[0].to(dtype), aabb[1].to(dtype)
        extent = hi - self.lo
        self.inv_extent = 1.0 / extent  # cells by a product, which a GPU kernel rounds as here (its x / y may not)
        tol = 1e-6 * extent
        self.lo_tol, self.hi_tol = self.lo - tol, hi + tol
        self.flat = binary.reshape(-1)
        self.strides = torch.tensor([binary.shape[1] * binary.shape[2], binary.shape[2], 1], device=binary.device)

    def __call__(self, o, d, mid):
        x = o[:, None, :] + d[:, None, :] * mid[..., None]  # [r, m, 3]
        inside = ((x >= self.lo_tol) & (x <= self.hi_tol)).all(-1)
        cell = ((x - self.lo) * self.inv_extent * self.res).floor().long()
        cell = torch.minimum(cell.clamp_min(0), self.res - 1)
        return inside & self.flat[(cell * self.strides).sum(-1)]


def traverse_occupancy_ref(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    t_min: torch.Tensor,
    t_max: torch.Tensor,
    binary: torch.Tensor,
    aabb: torch.Tensor,
    step_size: float,
    max_samples_per_ray: int,
    jitter=None,
):
    """March rays with a fixed step and keep the intervals whose midpoint is occupied.

    Ray r takes intervals [t_k, t_k + step) with t_k = t_min[r] + (k + jitter[r]) * step,
    k = 0 .. max_samples_per_ray - 1, while t_k < t_max[r]; the last interval is cut
    at t_max[r]. An interval is kept when its midpoint o + t_mid d lies inside ``aabb``
    (the boundary included, up to 1e-6 of its extent) and in a cell with binary True.
    Cell (i, j, k) of binary [G,G,G] spans aabb[0] + (i, j, k) * (aabb[1] - aabb[0]) / G,
    axis 0 along x. Rays are processed in chunks, so memory stays bounded.

    origins [R,3], dirs [R,3] (any length; t is in units of |d|), t_min [R], t_max [R],
    binary [G,G,G] bool (G may differ per axis), aabb [2,3], jitter [R] in [0,1) or None.
    Returns (t_starts [S], t_ends [S], ray_indices [S] int64 sorted); no gradient.
    """
    device = origins.device
    n_rays = origins.shape[0]
    step = float(step_size)
    m = int(max_samples_per_ray)
    occupied = _OccupancyTest(binary, aabb, origins.dtype)
    k = torch.arange(m, device=device, dtype=origins.dtype)
    chunk = max(1, (1 << 21) // max(m, 1))
    out_s, out_e, out_i = [], [], []
    with torch.no_grad():
        for r0 in range(0, n_rays, chunk):
            o, d = origins[r0 : r0 + chunk], dirs[r0 : r0 + chunk]
            tmin, tmax = t_min[r0 : r0 + chunk, None], t_max[r0 : r0 + chunk, None]
            j = 0.0 if jitter is None else jitter[r0 : r0 + chunk, None].to(origins.dtype)
            ts = tmin + (k + j) * step  # [r, m]
            te = torch.minimum(ts + step, tmax)
            valid = ts < tmax
            keep = valid & occupied(o, d, 0.5 * (ts + te))
            rows, cols = keep.nonzero(as_tuple=True)
            out_s.append(ts[rows, cols])
            out_e.append(te[rows, cols])
            out_i.append(rows + r0)
    if not out_s:
        empty = origins.new_zeros(0)
        return empty, empty.clone(), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(out_s), torch.cat(out_e), torch.cat(out_i).long()


def traverse_next_ref(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    t_min: torch.Tensor,
    t_max: torch.Tensor,
    binary: torch.Tensor,
    aabb: torch.Tensor,
    step_size: float,
    max_steps: int,
    k_start: torch.Tensor,
    n_keep: int,
    jitter=None,
    block: int = 64,
):
    """``traverse_occupancy_ref`` resumed at step k_start[r], stopping after n_keep kept intervals.

    Ray r looks at steps k = k_start[r], k_start[r] + 1, ... (k < max_steps, t_k < t_max[r],
    t_k = t_min[r] + (k + jitter[r]) step, the arithmetic of ``traverse_occupancy_ref``) and keeps
    the first n_keep intervals that reference keeps, in a fixed layout (no packing, no sync to size
    the output). Steps are scanned ``block`` at a time (the kernel's block), rays in parallel.

    Returns (t_starts [R,K], t_ends [R,K] (0 past a ray's count), counts [R] int32 <= K,
    k_next [R] int32: the step after the K-th kept interval, or max_steps when the ray ran out).
    Chaining calls with k_start = k_next yields exactly ``traverse_occupancy_ref``'s intervals.
    """
    n_rays, kk = origins.shape[0], int(n_keep)
    m, step, device = int(max_steps), float(step_size), origins.device
    ts_out = origins.new_zeros(n_rays, kk)
    te_out = origins.new_zeros(n_rays, kk)
    counts = torch.zeros(n_rays, dtype=torch.long, device=device)
    k_next = torch.full((n_rays,), m, dtype=torch.long, device=device)
    occupied = _OccupancyTest(binary, aabb, origins.dtype)
    k0 = k_start.long().clone()
    lanes = torch.arange(block, device=device)
    j = torch.zeros_like(t_min) if jitter is None else jitter.to(origins.dtype)

    def going(rays):  # rays with room left, steps left and t_k < t_max at their next block (the kernel's test)
        a = k0[rays]
        t_next = t_min[rays] + (a.to(origins.dtype) + j[rays]) * step
        return rays[(counts[rays] < kk) & (a < m) & (t_next < t_max[rays])]

    active = going(torch.arange(n_rays, device=device))
    with torch.no_grad():
        while active.numel() > 0:
            k = k0[active, None] + lanes  # [A, block]
            tmin, tmax = t_min[active, None], t_max[active, None]
            ts = tmin + (k.to(origins.dtype) + j[active, None]) * step
            te = torch.minimum(ts + step, tmax)
            keep = (k < m) & (ts < tmax) & occupied(origins[active], dirs[active], 0.5 * (ts + te))
            slot = counts[active, None] + torch.cumsum(keep.long(), 1) - 1
            ok = keep & (slot < kk)
            rows, cols = ok.nonzero(as_tuple=True)
            ts_out[active[rows], slot[rows, cols]] = ts[rows, cols]
            te_out[active[rows], slot[rows, cols]] = te[rows, cols]
            rows, cols = (ok & (slot == kk - 1)).nonzero(as_tuple=True)
            k_next[active[rows]] = k[rows, cols] + 1
            counts[active] = torch.clamp(counts[active] + keep.sum(1), max=kk)
            k0[active] += block
            active = going(active)
    return ts_out, te_out, counts.int(), k_next.int()


def hash_grid_vectorized(x: torch.Tensor, table: torch.Tensor, resolutions) -> torch.Tensor:
    """``hash_grid_ref``'s result with one gather for all levels and corners (the CPU path).

    The reference indexes ``table[lvl]`` once per level and corner; on CPU each of those
    backward passes fills and adds a full-size table gradient (L * 2^d of them), which costs
    ~0.5 s per step for a 2^19 table. Here the gradient is one scatter into one zero table.
    """
    n, d = x.shape
    levels, tsize, feats = table.shape
    res = torch.tensor([int(r) for r in resolutions], device=x.device, dtype=torch.long)  # [L]
    u = ((x + 1.0) * 0.5).clamp(0.0, 1.0)
    pos = u[:, None, :] * (res - 1).to(x.dtype)[None, :, None]  # [N,L,d]
    base = torch.minimum(pos.floor().long(), (res - 2).clamp_min(0)[None, :, None])
    frac = pos - base.to(pos.dtype)
    offs = torch.tensor([[(c >> i) & 1 for i in range(d)] for c in range(2**d)], device=x.device)  # [C,d]
    corner = torch.minimum(base[:, :, None, :] + offs, (res - 1)[None, :, None, None])  # [N,L,C,d]
    w = torch.where(offs.bool(), frac[:, :, None, :], 1.0 - frac[:, :, None, :]).prod(-1)  # [N,L,C]
    stride = torch.stack([res**i for i in range(d)], -1)  # [L,d]
    dense_idx = (corner * stride[None, :, None, :]).sum(-1)
    hashed_idx = torch.zeros_like(dense_idx)
    for i in range(d):
        hashed_idx = hashed_idx ^ (corner[..., i] * HASH_PRIMES[i])
    is_dense = (res**d <= tsize)[None, :, None]
    idx = torch.where(is_dense, dense_idx, hashed_idx % tsize)
    idx = idx + (torch.arange(levels, device=x.device) * tsize)[None, :, None]
    feat = table.reshape(levels * tsize, feats)[idx]  # [N,L,C,F]
    return (w.unsqueeze(-1).to(feat.dtype) * feat).sum(2).reshape(n, levels * feats)


# Real SH bases up to degree 3, in the order and signs of svox2 / plenoxels (fields/components/sh.py).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)


def sh_bases_ref(d: torch.Tensor, degree: int) -> torch.Tensor:
    """[N, (degree+1)^2] real SH bases at unit directions d [N,3] (degree 0..3; d not normalised here)."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def ray_box_ref(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor):
    """(t_near, t_far, hit) [N] of rays [N,3] through the box aabb [2,3] (render.rays.ray_aabb's contract)."""
    aabb = torch.as_tensor(aabb, dtype=origins.dtype, device=origins.device)
    parallel = dirs == 0
    safe = torch.where(parallel, torch.ones_like(dirs), dirs)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    # a component of d equal to 0: the slab is all t if the origin is inside it (faces included), else empty
    inside = (origins >= aabb[0]) & (origins <= aabb[1])
    inf = torch.full_like(t0, math.inf)
    lo = torch.where(parallel, torch.where(inside, -inf, inf), torch.minimum(t0, t1))
    hi = torch.where(parallel, torch.where(inside, inf, -inf), torch.maximum(t0, t1))
    t_near = lo.amax(-1).clamp_min(0.0)
    t_far = hi.amin(-1)
    hit = t_far > t_near
    zero = torch.zeros_like(t_near)
    return torch.where(hit, t_near, zero), torch.where(hit, t_far, zero), hit


def ray_setup_ref(origins: torch.Tensor, dirs: torch.Tensor, box: torch.Tensor, aabb: torch.Tensor, near: float,
                  far: float, sh_degree):
    """(t_min [R], t_max [R], SH bases [R,B] or None) of rays: clipped to ``box`` and [near, far], then to
    ``aabb`` (t_max = t_min: nothing to march); the bases of degree ``sh_degree`` (None: none)."""
    t0, t1, hit = ray_box_ref(origins, dirs, box)
    lo = torch.clamp(t0, min=near)
    hi = torch.where(hit, torch.clamp(t1, max=far), lo)
    t_near, t_far, hit = ray_box_ref(origins, dirs, aabb)
    t_min, t_max = torch.maximum(t_near, lo), torch.minimum(t_far, hi)
    sh = None if sh_degree is None else sh_bases_ref(dirs, sh_degree)
    return t_min, torch.where(hit & (t_max > t_min), t_max, t_min), sh


def sample_positions_ref(origins: torch.Tensor, dirs: torch.Tensor, ray_indices: torch.Tensor,
                         t_starts: torch.Tensor, t_ends: torch.Tensor) -> torch.Tensor:
    """[S,3] midpoints o + t_mid d of packed intervals (``RaySamples.positions``); origins, dirs [R,3]."""
    t_mids = 0.5 * (t_starts + t_ends)
    return origins[ray_indices] + dirs[ray_indices] * t_mids[:, None]


def terminate_round_ref(tau: torch.Tensor, ray_indices: torch.Tensor, idx: torch.Tensor, tau_before: torch.Tensor,
                        keep: torch.Tensor, early_stop: float, alpha_thre: float) -> None:
    """One round of early termination (``RadianceModel._terminate``), in place.

    tau [S'] are the optical depths of this round's samples (ray_indices [S'] sorted, idx [S'] their
    places among all candidates); tau_before [R] is each ray's optical depth before the round. A sample
    is kept (keep[idx] = True) where the transmittance in front of it, exp(-(tau_before + the ray's
    earlier tau of this round)), is >= early_stop and, when alpha_thre > 0, its alpha 1 - exp(-tau) >=
    alpha_thre; then tau_before += the round's tau per ray.
    """
    inside = torch.cumsum(tau, 0) - tau  # exclusive scan, made per ray below
    counts = torch.bincount(ray_indices, minlength=tau_before.shape[0])
    inside = inside - inside[(torch.cumsum(counts, 0) - counts)[ray_indices]]
    trans = torch.exp(-(tau_before[ray_indices] + inside))
    ok = trans >= early_stop
    if alpha_thre > 0:
        ok &= (1.0 - torch.exp(-tau)) >= alpha_thre
    keep[idx[ok]] = True
    tau_before.index_add_(0, ray_indices, tau)
