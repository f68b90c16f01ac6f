"""What a run was fitted to, recorded in its config.json: the input's absolute path (``input``) and a hash of its
content (``input_hash``), so the run is found again from any working folder and a resume can tell the same
input (moved or not) from another one.

The hash is sha256 of a file's bytes; of a posed-image folder, of its pose files' bytes (COLMAP's model files
included) plus the sorted names and sizes of its images (reading every image of a large capture would cost more
than the check is worth).
Built-in scenes are recorded by name, with no hash.
"""

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20
_COLMAP = tuple(f"{d}{n}.{e}" for d in ("sparse/0/", "sparse/", "0/", "") for n in ("cameras", "images", "points3D")
                for e in ("bin", "txt"))
POSE_FILES = ("block.json", "transforms.json", "transforms_train.json", "transforms_val.json", "transforms_test.json",
              "poses_bounds.npy", "cameras_sphere.npz", "cameras.npz", *_COLMAP)


def content_hash(path) -> str:
    """``sha256:<hex>`` of a file, or of a scene folder's pose files and image list (module doc)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        _hash_folder(path, h)
    else:
        _hash_file(path, h)
    return "sha256:" + h.hexdigest()


def _hash_file(path: Path, h) -> None:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)


def _hash_folder(root: Path, h) -> None:
    from fieldfit.scenes.inputs import IMAGE_EXTS

    for name in POSE_FILES:
        p = root / name
        if p.is_file():
            h.update(f"pose {name}\n".encode())
            _hash_file(p, h)
    images = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if Path(name).suffix.lower() in IMAGE_EXTS and not name.startswith("."):
                p = Path(dirpath) / name
                images.append(f"{p.relative_to(root).as_posix()} {p.stat().st_size}")
    h.update(("\n".join(sorted(images)) + "\n").encode())


def input_record(inp) -> dict:
    """config.json's ``input`` and ``input_hash`` of an Input (``fieldfit.scenes.inputs.classify``)."""
    if inp.builtin:
        return {"input": inp.builtin, "input_hash": None}
    path = os.path.abspath(inp.path)
    return {"input": path, "input_hash": content_hash(path)}


def same_input(inp, saved: dict) -> bool:
    """Whether ``inp`` is the input of the run whose config.json is ``saved`` (by content where the run recorded
    a hash; by name for built-ins and for runs written before hashes were recorded)."""
    from fieldfit.scenes.builtin import BUILTIN

    recorded = str(saved.get("input", ""))
    if inp.builtin or (recorded in BUILTIN and saved.get("input_hash") is None):
        return inp.builtin == recorded
    if saved.get("input_hash") is None:
        return inp.name in (Path(recorded).stem, Path(recorded).name)
    return content_hash(inp.path) == saved["input_hash"]


__all__ = ["content_hash", "input_record", "same_input"]
