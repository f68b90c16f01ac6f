"""What an SDF fit of a mesh trains and is probed on, prepared once per mesh and kept in the cache.

A fit draws ``n`` training points near the surface and in [-1,1]^3 with their signed distances
(``Shape.training_set``), then ``probe_points`` uniform points with their occupancy (the in-training IoU), all
from one generator seeded with the fit's seed. Preparing them is most of a mesh fit's set-up (armadillo, 2M
points: distances and winding numbers of every point), so the arrays are kept in ``fieldfit.cache`` under
``sdf/``, keyed by a hash of the unit-frame vertices and faces, the seed, the counts, the sampling options and
``VERSION``: a second fit of the same mesh reads them back (about 33 MB for 2M points) and gets the very arrays the
first one computed. Built-in analytic shapes are cheap and exact: never cached.

Phase seconds (``Prepared.seconds``): ``samples``, ``thin``, ``distance``, ``sign`` (``mesh.sampling``),
``probe`` (occupancy of the probe points), ``cache`` (reading or writing the cache file).
"""

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

VERSION = 2  # bump when the same key would produce different arrays


@dataclass
class Prepared:
    points: np.ndarray  # [n,3] float32, unit frame
    sdf: np.ndarray  # [n] float32, negative inside
    probe: np.ndarray  # [m,3] float32 uniform in [-1,1]^3
    probe_inside: np.ndarray  # [m] bool
    cached: bool = False  # read back from the cache
    seconds: dict = field(default_factory=dict)


def cache_key(shape, n: int, seed: int, probe_points: int, sampling: dict) -> str:
    """Hex digest naming the prepared set of ``shape`` (its unit-frame mesh) with these settings."""
    from fieldfit.mesh.inside import ACCURACY, FAST_ACCURACY, MARGIN

    h = hashlib.sha256()
    settings = {"version": VERSION, "n": int(n), "seed": int(seed), "probe_points": int(probe_points),
                "sampling": {k: sampling[k] for k in sorted(sampling)},
                "winding": [ACCURACY, FAST_ACCURACY, MARGIN]}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(shape.vertices, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(shape.faces, dtype=np.int64).tobytes())
    return h.hexdigest()


def compute(shape, n: int, seed: int, probe_points: int = 100_000, **sampling) -> Prepared:
    """The prepared set, computed (no cache)."""
    seconds: dict = {}
    rng = np.random.default_rng(seed)
    if shape.analytic_sdf is None:
        sampling = {**sampling, "timings": seconds}
    t = time.perf_counter()
    points, sdf = shape.training_set(int(n), rng, **sampling)
    if shape.analytic_sdf is not None:
        seconds["samples"] = time.perf_counter() - t
    t = time.perf_counter()
    probe = rng.uniform(-1, 1, (int(probe_points), 3)).astype(np.float32)
    probe_inside = np.asarray(shape.inside(probe), dtype=bool)
    seconds["probe"] = time.perf_counter() - t
    return Prepared(points, sdf, probe, probe_inside, False, seconds)


def prepare(shape, n: int, seed: int, probe_points: int = 100_000, cache: bool = True, **sampling) -> Prepared:
    """The training and probe sets of a fit of ``shape`` (module doc); from the cache where it has them."""
    if not cache or shape.analytic_sdf is not None:
        return compute(shape, n, seed, probe_points, **sampling)
    from fieldfit.cache import cached_arrays

    made = []

    def make():
        made.append(compute(shape, n, seed, probe_points, **sampling))
        p = made[0]
        return {"points": p.points, "sdf": p.sdf, "probe": p.probe, "probe_inside": p.probe_inside}

    t = time.perf_counter()
    arrays = cached_arrays(f"sdf/{cache_key(shape, n, seed, probe_points, sampling)}", make)
    total = time.perf_counter() - t
    seconds = dict(made[0].seconds) if made else {}
    seconds["cache"] = max(total - sum(seconds.values()), 0.0)
    return Prepared(arrays["points"], arrays["sdf"], arrays["probe"], arrays["probe_inside"].astype(bool),
                    not made, seconds)


__all__ = ["VERSION", "Prepared", "cache_key", "compute", "prepare"]
