"""fieldfit's cache folder: things derived once and reused (the built-in scenes' files, the built-in shape's
reference mesh, dnmp's mesh auto-encoder). ``$FIELDFIT_CACHE``, else ~/.cache/fieldfit. Deleting it is safe:
everything in it is made again on first use."""

import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    root = os.environ.get("FIELDFIT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "fieldfit"


def cached_arrays(name: str, make) -> dict:
    """The arrays ``make()`` returns (a dict of numpy arrays), kept in the cache as ``name``.npz after the first call
    (written atomically; read back without pickles)."""
    path = cache_dir() / f"{name}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):  # a damaged cache file: made again below
            pass
    arrays = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return arrays


__all__ = ["cache_dir", "cached_arrays"]
