"""Writing rendered frames: a video (.mp4 .mov .mkv .webm through imageio-ffmpeg, or .gif), or a folder of PNG
frames. A video suffix without imageio-ffmpeg is refused (``check_video_out``), never written as something else."""

import re
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


def check_video_out(out) -> None:
    """InputError (before anything is rendered) when ``out`` names a video file (.mp4, ...) and imageio-ffmpeg,
    which writes them, is not installed."""
    out = Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        return
    try:
        import imageio_ffmpeg  # noqa: F401, PLC0415 - optional: pip install 'fieldfit[video]'
    except ImportError:
        raise InputError(out, f"writing {out.suffix} needs imageio-ffmpeg, which is not installed",
                         "pip install 'fieldfit[video]', or give a .gif") from None


def write_video(frames: list[np.ndarray], out: Path, fps: int = 24) -> tuple[Path, str]:
    """Write uint8 [H,W,3] frames as a video (.mp4 .mov .mkv .webm: imageio-ffmpeg; InputError without it) or a
    .gif; any other ``out`` is a folder that gets frame_NNNN.png (one that holds other files is refused, so a run
    folder is never filled). Returns (the path written, a note: what a folder of frames is, else "")."""
    import imageio.v3 as iio

    out = Path(out)
    check_video_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    note = ""
    if out.suffix.lower() in VIDEO_SUFFIXES:
        iio.imwrite(out, np.stack(frames), fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
        return out, note
    if out.suffix.lower() == ".gif":
        iio.imwrite(out, np.stack(frames), duration=1000.0 / fps, loop=0)
        return out, note
    folder = out
    others = [p.name for p in folder.iterdir() if not re.fullmatch(r"frame_\d{4}\.png", p.name)] \
        if folder.is_dir() else []
    if folder.exists() and (not folder.is_dir() or others):
        raise InputError(folder, "exists and is not a folder of frames" if not folder.is_dir() else
                         f"is a folder that holds other files ({', '.join(sorted(others)[:3])})",
                         "give a new folder, or a .mp4 / .gif file")
    folder.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(frames):
        iio.imwrite(folder / f"frame_{k:04d}.png", f)
    return folder, f"not a .mp4 / .gif name: wrote PNG frames into the folder {folder}"


__all__ = ["VIDEO_SUFFIXES", "check_video_out", "write_video"]
