"""DNMP after training: a watertight fused mesh, and the memory measurement of a render.

Mesh (not the primitive soup): occupancy of the union of the opaque primitives, meshed by
marching cubes closed at the box (mesh.marching_cubes_closed). A primitive is opaque when the
mean shader alpha over its vertices is >= 1/2 (alpha seen face on: with ``rim`` it also reads the view angle);
when none is (a model stopped very early), the median primitive alpha is the threshold instead.
Each primitive is star-shaped around its centre c (the decoded icosphere): its radius along a
unit direction u is r(u) = sum_i w_i rho_i over its vertices (rho_i = |V_i - c|, weights
w_i = relu(u . t_i - 0.8)^2 over the template directions t_i, normalised); the occupancy value
at p is r(u) - |p - c| (> 0 inside), and the union takes the maximum over primitives.

The volume is computed on the model's device and returned as numpy (host).

Peak memory (``peak_mb``): on CUDA, torch's peak allocation; on the CPU, the growth of the
process's resident set over its value before the call (after handing the allocator's free pages
back to the OS), sampled every 2 ms by a thread: torch's CPU allocator has no peak counter. It
counts the memory the render touches beyond what the process held, so it is a lower bound.
"""

import threading
import time

import torch


def primitive_alpha(model, level) -> torch.Tensor:
    """[M] mean shader alpha over each primitive's vertices (seen face on)."""
    with torch.no_grad():
        return model.shader.opacity(model.shader.trunk(level.features)).reshape(level.count, 42).mean(1)


def _threshold(model) -> float:
    """1/2, or the median primitive alpha when no primitive reaches 1/2 (an under-trained model)."""
    alphas = torch.cat([primitive_alpha(model, lv) for lv in model.levels if lv.count])
    return 0.5 if bool((alphas > 0.5).any()) else float(alphas.median())


@torch.no_grad()
def occupancy_volume(model, resolution: int, points_per_chunk: int = 1 << 17):
    """(volume [R,R,R] float32 (> 0 inside), lo [3], hi [3]) of the opaque primitives' union, or None."""
    parts = []
    if not any(lv.count for lv in model.levels):
        return None
    thr = _threshold(model)
    for level, (verts, _) in zip(model.levels, model.geometry(), strict=True):
        if level.count == 0:
            continue
        keep = primitive_alpha(model, level) >= thr
        v = verts.reshape(level.count, 42, 3)[keep]
        c = level.centres[keep] + level.offsets[keep]
        parts.append((v, c, level.template))
    if not parts or all(len(c) == 0 for _, c, _ in parts):
        return None
    rmax = max(float((v - c[:, None]).norm(dim=-1).max()) for v, c, _ in parts if len(c))
    lo = torch.stack([(c - rmax).min(0).values for _, c, _ in parts if len(c)]).min(0).values - rmax * 0.5
    hi = torch.stack([(c + rmax).max(0).values for _, c, _ in parts if len(c)]).max(0).values + rmax * 0.5
    cell = (hi - lo) / (resolution - 1)
    dev = lo.device
    vol = torch.full((resolution**3,), -1.0, device=dev)
    for v, c, t in parts:
        if len(c) == 0:
            continue
        r_level = float((v - c[:, None]).norm(dim=-1).max())
        nb = int(torch.ceil(2 * r_level / cell.min()).item()) + 2
        offs = torch.stack(torch.meshgrid(*[torch.arange(nb, device=dev)] * 3, indexing="ij"), -1).reshape(-1, 3)
        chunk = max(1, points_per_chunk // offs.shape[0])  # memory: chunk * nb^3 * 42 floats
        for s in range(0, len(c), chunk):
            vc, cc = v[s:s + chunk], c[s:s + chunk]
            base = torch.floor((cc - r_level - lo) / cell).long()  # [m,3]
            idx = (base[:, None] + offs).clamp(min=0)
            idx = torch.minimum(idx, torch.tensor(resolution - 1, device=dev))  # [m,n,3]
            p = lo + idx * cell
            rel = p - cc[:, None]
            dist = rel.norm(dim=-1).clamp_min(1e-9)
            u = rel / dist[..., None]
            w = torch.relu(u @ t.T - 0.8) ** 2  # [m,n,42]
            rho = (vc - cc[:, None]).norm(dim=-1)  # [m,42]
            r = (w * rho[:, None]).sum(-1) / w.sum(-1).clamp_min(1e-12)
            flat = (idx[..., 0] * resolution + idx[..., 1]) * resolution + idx[..., 2]
            vol.scatter_reduce_(0, flat.reshape(-1), ((r - dist) / rmax).reshape(-1), reduce="amax")
    return vol.reshape(resolution, resolution, resolution).cpu().numpy(), lo.cpu().numpy(), hi.cpu().numpy()


def export_occupancy_mesh(model, out, resolution: int) -> dict:
    """Watertight mesh of the opaque primitives written to ``out`` (see the module doc)."""
    from fieldfit.mesh import export_mesh, is_watertight, marching_cubes_closed, remove_fragments
    from fieldfit.mesh.topology import component_count

    t = time.perf_counter()
    res = occupancy_volume(model, int(resolution))
    if res is None or not (res[0] > 0).any():
        return {"mesh": None, "mesh_error": "no opaque primitive: nothing to mesh"}
    vol, lo, hi = res
    v, f = marching_cubes_closed(-vol, 0.0, (lo, hi))
    n_raw = int(component_count(v, f))
    v, f, _ = remove_fragments(v, f)  # floaters: components under 1% of the largest one's volume
    export_mesh(v, f, out)
    return {"mesh": str(out), "faces": int(len(f)), "components_before_cleanup": n_raw, "vertices": int(len(v)),
            "watertight": bool(is_watertight(v, f)), "components": int(component_count(v, f)),
            "mesh_resolution": int(resolution), "mesh_seconds": time.perf_counter() - t}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * 4096 / 2**20
    except OSError:
        return float("nan")


def _release_free_memory() -> None:
    """Return the allocator's free pages to the OS (glibc malloc_trim, tcmalloc ReleaseFreeMemory), so
    that the resident set before a measurement holds live memory only."""
    import ctypes

    try:
        lib = ctypes.CDLL(None)
    except OSError:
        return
    for name in ("MallocExtension_ReleaseFreeMemory", "malloc_trim"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn(0) if name == "malloc_trim" else fn()


def peak_mb(fn, device=None) -> float:
    """Peak extra memory (MB) while ``fn()`` runs on ``device`` (see the module doc); None: CUDA's counter when
    CUDA is in use, else the process's resident set."""
    if device is None:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        device = torch.device("cuda") if cuda else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    _release_free_memory()
    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        fn()
    finally:
        stop.set()
        th.join()
    return max(0.0, max(peak[0], _rss_mb()) - base)


__all__ = ["export_occupancy_mesh", "occupancy_volume", "peak_mb"]
