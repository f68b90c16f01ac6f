"""Readers of COLMAP sparse models: ``cameras``, ``images`` and ``points3D``, as ``.bin`` or ``.txt``.

The values are returned as COLMAP stores them (no convention changes here; ``scenes.colmap`` converts):
* a camera: id, model name, width, height and its parameter list in COLMAP's order;
* an image: id, the world-to-camera rotation as a unit quaternion (qw, qx, qy, qz) and translation t, so that
  x_cam = R(q) x_world + t in OpenCV camera axes (x right, y down, z forward), its camera id, its file name
  (relative to the image folder) and its 2D points' 3D point ids (-1: none);
* points: ids, xyz, colours (uint8 RGB), reprojection errors and tracks (image ids of each point's observations).

Binary layout (little-endian): a uint64 count, then per record
  cameras: uint32 id, int32 model id, uint64 width, uint64 height, float64 params[n(model)];
  images: uint32 id, float64 qw qx qy qz tx ty tz, uint32 camera id, name (NUL-terminated), uint64 n,
          n x (float64 x, float64 y, int64 point3D id);
  points3D: uint64 id, float64 x y z, uint8 r g b, float64 error, uint64 n, n x (uint32 image id, uint32 index).
Text files hold one record per line (images: two lines, the second listing x y point3D_id triples; it may be
empty), ``#`` starts a comment line. Every malformed or truncated file is one ``InputError`` naming the file (and
the line of a text file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

# model id -> (name, number of parameters) of the models fieldfit reads
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
          4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12)}
OTHER_MODELS = {7: "FOV", 8: "SIMPLE_RADIAL_FISHEYE", 9: "RADIAL_FISHEYE", 10: "THIN_PRISM_FISHEYE",
                11: "RAD_TAN_THIN_PRISM_FISHEYE"}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in MODELS.items()}
SUPPORTED = ", ".join(name for name, _ in MODELS.values())
FILES = ("cameras", "images", "points3D")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # (qw, qx, qy, qz), world-to-camera
    tvec: np.ndarray
    camera_id: int
    name: str
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # of each 2D point, -1: none
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


@dataclass
class ColmapPoints:
    ids: np.ndarray  # [P] int64
    xyz: np.ndarray  # [P,3] float64
    rgb: np.ndarray  # [P,3] uint8
    error: np.ndarray  # [P] float64
    track_offsets: np.ndarray  # [P+1]: the observations of point i are track_images[off[i]:off[i+1]]
    track_images: np.ndarray  # int64 image ids

    @property
    def track_lengths(self) -> np.ndarray:
        return np.diff(self.track_offsets)


@dataclass
class ColmapModel:
    folder: Path
    ext: str  # ".bin" or ".txt"
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints

    def file(self, name: str) -> Path:
        return self.folder / f"{name}{self.ext}"


def model_ext(folder: Path) -> str | None:
    """".bin" when the folder holds the three .bin files, else ".txt" when it holds the three .txt ones, else
    None."""
    for ext in (".bin", ".txt"):
        if all((Path(folder) / f"{n}{ext}").is_file() for n in FILES):
            return ext
    return None


def read_model(folder, ext: str | None = None) -> ColmapModel:
    """The model in ``folder`` (``ext`` ".bin" / ".txt"; by default .bin when present)."""
    folder = Path(folder)
    if ext is None:  # the complete set, else the set whose cameras file is there (its missing files named below)
        ext = model_ext(folder) or (".bin" if (folder / "cameras.bin").is_file() else ".txt")
    if ext not in (".bin", ".txt"):
        raise InputError(folder, f"model format must be .bin or .txt, got {ext!r}", "use bin or txt")
    for n in FILES:
        if not (folder / f"{n}{ext}").is_file():
            raise InputError(folder / f"{n}{ext}", "file not found", "restore the COLMAP model's three files")
    if ext == ".bin":
        return ColmapModel(folder, ext, read_cameras_bin(folder / "cameras.bin"),
                           read_images_bin(folder / "images.bin"), read_points_bin(folder / "points3D.bin"))
    return ColmapModel(folder, ext, read_cameras_txt(folder / "cameras.txt"),
                       read_images_txt(folder / "images.txt"), read_points_txt(folder / "points3D.txt"))


def unsupported(path: Path, model, where: str = "") -> InputError:
    if isinstance(model, int):
        what = f"camera model {OTHER_MODELS[model]} (id {model})" if model in OTHER_MODELS else \
            f"unknown camera model id {model}"
    else:
        what = f"camera model {model}"
    return InputError(path, f"{where}{what} is not supported",
                      f"fieldfit reads {SUPPORTED}; undistort the images first (colmap image_undistorter)")


# -- binary ---------------------------------------------------------------------------------------
class _Reader:
    """Sequential little-endian reads of one file; a short read is an InputError naming it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.buf = self.path.read_bytes()
        except OSError as e:
            raise InputError(path, f"cannot read file: {e.strerror or e}", "check permissions") from None
        self.pos = 0

    def fail(self, what: str) -> InputError:
        return InputError(self.path, f"{what} at byte {self.pos} of {len(self.buf)}",
                          "the file is truncated or not a COLMAP binary model; re-export it from COLMAP")

    def unpack(self, fmt: str):
        try:
            out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error:
            raise self.fail("file ends early") from None
        self.pos += struct.calcsize("<" + fmt)
        return out

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        if count < 0 or self.pos + count * dt.itemsize > len(self.buf):
            raise self.fail(f"file ends early (needs {count} records of {dt.itemsize} bytes)")
        out = np.frombuffer(self.buf, dt, count, self.pos)
        self.pos += count * dt.itemsize
        return out

    def string(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise self.fail("image name without its terminating NUL")
        raw = self.buf[self.pos:end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("image name is not UTF-8") from None

    def count(self, per_record: int) -> int:
        (n,) = self.unpack("Q")
        if n * per_record > len(self.buf) - self.pos:
            raise self.fail(f"declares {n} records, more than the file can hold")
        return n

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise self.fail(f"{len(self.buf) - self.pos} bytes left after the last record")


def read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    r = _Reader(path)
    out = {}
    for _ in range(r.count(24)):
        cid, mid, w, h = r.unpack("IiQQ")
        if mid not in MODELS:
            raise unsupported(path, mid, f"camera {cid}: ")
        name, n = MODELS[mid]
        out[cid] = ColmapCamera(cid, name, int(w), int(h), np.array(r.unpack(f"{n}d")))
    r.done()
    return out


_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
_TRACK = np.dtype([("image", "<u4"), ("index", "<u4")])


def read_images_bin(path: Path) -> dict[int, ColmapImage]:
    r = _Reader(path)
    out = {}
    for _ in range(r.count(69)):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.unpack("I7dI")
        name = r.string()
        (n,) = r.unpack("Q")
        pts = r.array(_POINT2D, n)
        out[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name,
                               pts["id"].astype(np.int64), np.stack([pts["x"], pts["y"]], -1))
    r.done()
    return out


def read_points_bin(path: Path) -> ColmapPoints:
    r = _Reader(path)
    n = r.count(43)
    ids = np.zeros(n, np.int64)
    xyz = np.zeros((n, 3))
    rgb = np.zeros((n, 3), np.uint8)
    err = np.zeros(n)
    offsets = np.zeros(n + 1, np.int64)
    tracks = []
    for i in range(n):
        pid, x, y, z, cr, cg, cb, e, t = r.unpack("Q3d3BdQ")
        ids[i], xyz[i], rgb[i], err[i] = pid, (x, y, z), (cr, cg, cb), e
        tr = r.array(_TRACK, t)
        tracks.append(tr["image"])
        offsets[i + 1] = offsets[i] + t
    r.done()
    images = np.concatenate(tracks).astype(np.int64) if tracks else np.zeros(0, np.int64)
    return ColmapPoints(ids, xyz, rgb, err, offsets, images)


# -- text -----------------------------------------------------------------------------------------
def _lines(path: Path):
    """(line number, stripped text) of every line of a text file (comments kept: callers choose)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, f"cannot read file: {e.strerror or e}", "check permissions") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text (UTF-8) file", "re-export the model as text from COLMAP") from None
    return [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]


def _bad(path: Path, lineno: int, what: str) -> InputError:
    return InputError(path, f"line {lineno}: {what}", "fix the line or re-export the model from COLMAP")


def _numbers(path, lineno, tokens, kind=float, what="a number"):
    try:
        return [kind(t) for t in tokens]
    except ValueError:
        raise _bad(path, lineno, f"expected {what} in {' '.join(tokens)[:80]!r}") from None


def read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    out = {}
    for lineno, line in _lines(path):
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 4:
            raise _bad(path, lineno, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...")
        cid, w, h = _numbers(path, lineno, [tok[0], tok[2], tok[3]], int, "integer id, width and height")
        model = tok[1].upper()
        if model not in MODEL_IDS:
            raise unsupported(path, model, f"line {lineno}: camera {cid}: ")
        n = MODEL_IDS[model][1]
        if len(tok) != 4 + n:
            raise _bad(path, lineno, f"camera {cid}: {model} takes {n} parameters, the line has {len(tok) - 4}")
        out[cid] = ColmapCamera(cid, model, w, h, np.array(_numbers(path, lineno, tok[4:])))
    return out


def read_images_txt(path: Path) -> dict[int, ColmapImage]:
    lines = _lines(path)
    out = {}
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        i += 1
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 10:
            raise _bad(path, lineno, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        (iid, cid) = _numbers(path, lineno, [tok[0], tok[8]], int, "integer image and camera ids")
        vals = _numbers(path, lineno, tok[1:8])
        name = " ".join(tok[9:])
        ids, xys = np.zeros(0, np.int64), np.zeros((0, 2))
        if i < len(lines):  # the points line follows, possibly empty
            plineno, pline = lines[i]
            i += 1
            ptok = pline.split()
            if len(ptok) % 3:
                raise _bad(path, plineno, f"image {iid}: expected X Y POINT3D_ID triples, got {len(ptok)} values")
            if ptok:
                arr = np.array(_numbers(path, plineno, ptok)).reshape(-1, 3)
                xys, ids = arr[:, :2], arr[:, 2].astype(np.int64)
        out[iid] = ColmapImage(iid, np.array(vals[:4]), np.array(vals[4:7]), cid, name, ids, xys)
    return out


def read_points_txt(path: Path) -> ColmapPoints:
    ids, xyz, rgb, err, offsets, tracks = [], [], [], [], [0], []
    for lineno, line in _lines(path):
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        if len(tok) < 8 or (len(tok) - 8) % 2:
            raise _bad(path, lineno, "expected POINT3D_ID X Y Z R G B ERROR and IMAGE_ID POINT2D_IDX pairs")
        ids.append(_numbers(path, lineno, tok[:1], int, "an integer point id")[0])
        xyz.append(_numbers(path, lineno, tok[1:4]))
        rgb.append(_numbers(path, lineno, tok[4:7], int, "integer colours"))
        err.append(_numbers(path, lineno, tok[7:8])[0])
        track = _numbers(path, lineno, tok[8:], int, "integer track ids")
        tracks.extend(track[0::2])
        offsets.append(offsets[-1] + len(track) // 2)
    return ColmapPoints(np.array(ids, np.int64), np.array(xyz, np.float64).reshape(-1, 3),
                        np.clip(np.array(rgb, np.int64).reshape(-1, 3), 0, 255).astype(np.uint8),
                        np.array(err, np.float64), np.array(offsets, np.int64), np.array(tracks, np.int64))


__all__ = ["ColmapCamera", "ColmapImage", "ColmapModel", "ColmapPoints", "MODELS", "model_ext", "read_model"]
