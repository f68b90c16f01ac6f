"""``fieldfit poses``: photos or a video -> a scene folder fieldfit fits (structure-from-motion on the CPU).

SCENE/ holds ``images/`` (the images the poses belong to), ``sparse/0/`` (COLMAP's binary model: cameras,
images, points3D, and in COLMAP 4 rigs and frames), ``transforms.json`` (nerfstudio format, see
``fieldfit.sfm.export``), ``points3D.ply`` and ``poses.json`` (counts, seconds and options of the run). The model
is moved upright first (``export.upright``): z up, centred on what the cameras look at, the cameras 4 units away.
COLMAP's ``database.db`` (features and matches) is removed at the end unless ``keep_database``. With a
``downscale`` of photos, SIFT and mapping run on full-size upright copies (a hidden folder, removed) and the model
is then scaled to the downscaled images the scene keeps (``colmap.shrink``): poses as sharp as the photos allow.

The folder appears whole or not at all: everything is written into a hidden ``.SCENE.tmp-*`` folder beside it,
flushed to disk, checked by loading it as fieldfit will, and renamed to SCENE last (an empty SCENE is replaced).
An existing non-empty SCENE is refused before any work.

Registration: fewer than 3 registered images (or no model at all) is an InputError naming the images left out;
fewer than half of them registered is a warning, and the scene is written.
"""

import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fieldfit.errors import InputError
from fieldfit.runs import entries, sync_dir, sync_file, write_json

from . import align, colmap, export, images

MIN_REGISTERED = 3
FULL_SIZE = ".full_size"  # photos at full size for SIFT and mapping (removed before the scene is published)
NAMES_SHOWN = 10


@dataclass
class PosesOptions:
    frames: int | None = None  # video: keep this many frames (default 100) ...
    every: int | None = None  # ... or the sharpest of every K frames
    downscale: int = 1
    keep_database: bool = False
    sfm: colmap.SfmOptions = field(default_factory=colmap.SfmOptions)


def default_threads() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_out(out: Path) -> None:
    """InputError unless ``out`` is new or an empty folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(out, "exists and is not a folder", "give a new --out folder")
    names = entries(out)
    if names:
        listing = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(out, f"is not empty ({len(names)} entries: {listing})",
                         "give a new or empty --out folder, or remove this one")


def source_kind(source: Path) -> str:
    """'video' or 'photos'; InputError for anything else."""
    if source.is_dir():
        return "photos"
    if source.is_file() and source.suffix.lower() in images.VIDEO_SUFFIXES:
        return "video"
    if not source.exists():
        raise InputError(source, "no such file or folder", "give a folder of photos or a video file")
    raise InputError(source, "is neither a folder of photos nor a video",
                     f"give a folder of .jpg / .png photos or a video ({' '.join(images.VIDEO_SUFFIXES)})")


def names_left_out(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def advice(kind: str, matcher: str) -> str:
    other = "; try --matcher exhaustive" if matcher != "exhaustive" else ""
    if kind == "video":
        return ("film slower and steadier around the subject, keep more frames (--frames 200 or --every 5), "
                "avoid motion blur" + other)
    return ("photos need more overlap (every spot in 3 or more photos, a small step between shots), sharp and "
            "well lit, of a textured subject" + other)


def make_scene(source, out, opts: PosesOptions, log=print) -> dict:
    """Run structure-from-motion on ``source`` (photo folder or video) and write the scene folder ``out``.

    ``log(line)`` gets one line per stage. Returns the summary written to ``out/poses.json``.
    """
    pycolmap = colmap.require_pycolmap()
    source, out = Path(source), Path(out)
    kind = source_kind(source)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        with colmap.colmap_log(opts.sfm.verbose):
            summary = _build(source, kind, tmp, opts, log)
        summary["pycolmap"] = pycolmap.__version__
        write_json(tmp / "poses.json", summary)
        _check_loads(tmp)
        _sync_tree(tmp)
        os.replace(tmp, out)
        sync_dir(out.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _collect(source: Path, kind: str, scene: Path, opts: PosesOptions, log, seconds: dict) -> images.Collected:
    """The video's sharpest frames, or the photos, into scene/images (stage 1)."""
    t = time.perf_counter()
    if kind == "video":
        frames = opts.frames if opts.frames is not None or opts.every is not None else 100
        got = images.video_frames(source, scene / "images", frames, opts.every, opts.downscale)
        seconds["frames"] = time.perf_counter() - t
        log(f"frames: {got.decoded} decoded, {len(got.names)} kept (the sharpest of each {got.window:.3g}) "
            f"in {seconds['frames']:.1f} s")
        if len(got.names) < MIN_REGISTERED:
            raise InputError(source, f"gave {len(got.names)} frames; structure-from-motion needs at least "
                             f"{MIN_REGISTERED}", "give a longer video")
        return got
    if opts.frames is not None or opts.every is not None:
        raise InputError(source, "--frames / --every choose frames of a video, and this is a folder of photos",
                         "leave them out (every photo is used)")
    photos = images.list_photos(source)
    if len(photos) < MIN_REGISTERED:
        found = ", ".join(p.name for p in photos) or "none"
        raise InputError(source, f"holds {len(photos)} photos (.jpg / .jpeg / .png: {found}); "
                         f"structure-from-motion needs at least {MIN_REGISTERED}",
                         "add overlapping photos of the subject from more positions")
    got = images.copy_photos(photos, scene / "images", opts.downscale)
    if opts.downscale > 1:  # features are found on the full-size photos (upright copies), the model shrunk after
        images.copy_photos(photos, scene / FULL_SIZE, 1)
    seconds["images"] = time.perf_counter() - t
    verb = f"downscaled {opts.downscale}x" if opts.downscale > 1 else "copied"
    log(f"images: {len(got.names)} {verb} in {seconds['images']:.1f} s")
    return got


def _build(source: Path, kind: str, scene: Path, opts: PosesOptions, log) -> dict:
    o, seconds = opts.sfm, {}
    got = _collect(source, kind, scene, opts, log, seconds)
    if o.single_camera and len(set(got.sizes.values())) > 1:
        o = colmap.SfmOptions(**{**asdict(o), "single_camera": False})
        log("cameras: the images differ in size, so each gets its own camera")

    db, names = scene / "database.db", got.names
    full = (scene / FULL_SIZE).is_dir()
    photos = scene / FULL_SIZE if full else scene / "images"
    t = time.perf_counter()
    feats = colmap.extract(db, photos, names, o)
    seconds["features"] = time.perf_counter() - t
    unread = sorted(set(names) - set(feats["read"]))
    if unread:
        raise InputError(source, f"COLMAP could not read {names_left_out(unread)}",
                         "remove or re-export those images")
    log(f"features: {len(names)} images, {feats['features_mean']:.0f} per image (mean; SIFT up to "
        f"{o.max_size} px{' on the full-size photos' if full else ''}, {o.threads} thread"
        f"{'s' if o.threads > 1 else ''}) in {seconds['features']:.1f} s")

    matcher = colmap.choose_matcher(o.matcher, len(names), kind == "video")
    t = time.perf_counter()
    m = colmap.match(db, matcher, o)
    seconds["matching"] = time.perf_counter() - t
    log(f"matching ({matcher}): {m['pairs']} pairs matched, {m['verified']} verified in {seconds['matching']:.1f} s")

    t = time.perf_counter()
    rec = colmap.reconstruct(db, photos, scene / ".models", o)
    seconds["mapping"] = time.perf_counter() - t
    registered = sorted(im.name for im in rec.images.values() if im.has_pose) if rec is not None else []
    missing = sorted(set(names) - set(registered))
    if len(registered) < MIN_REGISTERED:
        what = "no images registered" if not registered else f"only {len(registered)} of {len(names)} images " \
            "registered"
        raise InputError(source, f"structure-from-motion failed: {what}; not registered: {names_left_out(missing)}",
                         advice(kind, matcher))
    if full:  # the model of the downscaled images the scene keeps
        colmap.shrink(rec, opts.downscale, got.sizes)
        shutil.rmtree(scene / FULL_SIZE)
    error = float(rec.compute_mean_reprojection_error())
    log(f"mapping: {len(registered)}/{len(names)} images registered, {rec.num_points3D()} points, mean "
        f"reprojection error {error:.2f} px in {seconds['mapping']:.1f} s")
    if len(registered) < 0.5 * len(names):
        log(f"warning: fewer than half of the images registered; not registered: {names_left_out(missing)} "
            f"({advice(kind, matcher)})")

    shutil.rmtree(scene / ".models")
    scale, _, _ = export.upright(rec)
    log(f"frame: z up, centred on what the cameras look at, {align.CAMERA_DISTANCE:g} units from them (COLMAP's "
        f"scale x {scale:.3g})")
    (scene / "sparse" / "0").mkdir(parents=True)
    rec.write(scene / "sparse" / "0")
    export.write_scene(rec, scene)
    if not opts.keep_database:
        db.unlink()
    return {"source": str(source.resolve()), "kind": kind, "images": len(names), "registered": len(registered),
            "not_registered": missing, "points": int(rec.num_points3D()), "mean_reprojection_error_px": error,
            "features_mean": feats["features_mean"], "pairs_matched": m["pairs"], "pairs_verified": m["verified"],
            "matcher": matcher, "seconds": seconds,
            "options": {"frames": opts.frames, "every": opts.every, "downscale": opts.downscale,
                        "camera_model": o.camera_model, "single_camera": o.single_camera, "max_size": o.max_size,
                        "threads": o.threads, "vocab_tree": str(o.vocab_tree) if o.vocab_tree else None}}


def _check_loads(scene: Path) -> None:
    """The scene loads as ``fieldfit SCENE`` will load it (a broken export never lands)."""
    from fieldfit.scenes import load_scene

    load_scene(scene)


def _sync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to the disk (before the rename that publishes it)."""
    for folder, _, files in os.walk(root):
        for name in files:
            sync_file(Path(folder) / name)
        sync_dir(folder)


__all__ = ["PosesOptions", "check_out", "default_threads", "make_scene"]
