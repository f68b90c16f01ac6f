"""The images structure-from-motion runs on, written into SCENE/images: photos from a folder, or the sharpest
frames of a video. The user's files are only read.

Photos: the files named *.jpg, *.jpeg or *.png (any case) directly in the folder, sorted by name (the order
sequential matching follows); dot-files, sub-folders and other files are ignored. At --downscale 1 each is copied
byte for byte, unless its EXIF orientation turns it (phone photos): such a photo is turned upright and written
again without the tag, since COLMAP and fieldfit read pixels as stored. At --downscale N each is decoded, its
N x N blocks averaged (width and height cropped down to multiples of N, as a fit's --downscale does)
and written as 8 bits (16-bit input loses its low byte) in its own format: JPEG at quality 95 with its EXIF, or PNG.

Video: decoded by imageio's ffmpeg plugin (frames as ffmpeg shows them, its rotation applied). The frames are
split into windows, N equal ones for ``frames=N`` or K frames each for ``every=K``, and each window keeps its
sharpest frame: the largest variance of the 4-neighbour Laplacian of the grey image (0.299 R + 0.587 G + 0.114 B,
after the downscale). Kept frames are written as frame_NNNNNN.jpg (NNNNNN: the frame's index in the video) at JPEG
quality 95.
"""

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
JPEG_QUALITY = 95
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the Pillow transpose that shows the picture upright
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


@dataclass
class Collected:
    """What went into SCENE/images: file names (sorted), sizes (w, h) by name, and counts for the log."""

    names: list[str]
    sizes: dict
    decoded: int = 0  # video frames decoded (0 for photos)
    window: float = 0.0  # video: frames per window


def list_photos(folder: Path) -> list[Path]:
    """The photos of ``folder`` (see the module doc), sorted by name."""
    try:
        found = [p for p in Path(folder).iterdir()
                 if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    except OSError as e:
        raise InputError(folder, f"cannot list the folder ({e.strerror or e})", "check its permissions") from None
    return sorted(found, key=lambda p: p.name)


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image of rgb [H,W,3] (or [H,W]); larger is sharper."""
    a = np.asarray(rgb, np.float32)
    g = a if a.ndim == 2 else a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    if min(g.shape) < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def downscale_u8(img: np.ndarray, n: int) -> np.ndarray:
    """uint8 image [H,W(,C)] averaged over n x n blocks, rounded; cropped first to floor(H/n)*n x floor(W/n)*n (the
    top-left kept), as a fit's --downscale crops."""
    if n == 1:
        return np.asarray(img, np.uint8)
    h, w = img.shape[0] // n, img.shape[1] // n
    blocks = np.asarray(img[: h * n, : w * n], np.float32).reshape(h, n, w, n, *img.shape[2:])
    return np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)


def copy_photos(photos: list[Path], dest: Path, downscale: int) -> Collected:
    """Copy (or downscale) ``photos`` into ``dest``; InputError naming a file no decoder reads."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for p in photos:
        try:
            with Image.open(p) as im:
                size = im.size
                orientation = im.getexif().get(EXIF_ORIENTATION, 1)
                exif = im.info.get("exif")
        except Exception as e:  # noqa: BLE001 - any decoder failure is a user-file problem
            raise InputError(p, f"cannot read the image ({type(e).__name__}: {str(e).strip()[:120]})",
                             "remove it from the folder or replace it with a valid JPEG / PNG") from None
        if min(size) < downscale:
            raise InputError(p, f"is {size[0]}x{size[1]}, smaller than --downscale {downscale}",
                             "use a smaller --downscale")
        if downscale == 1 and orientation not in _UPRIGHT:
            shutil.copyfile(p, dest / p.name)
            sizes[p.name] = size
            continue
        sizes[p.name] = _rewrite(p, dest / p.name, downscale, orientation, exif)
    return Collected([p.name for p in photos], sizes)


def _rewrite(src: Path, out: Path, n: int, orientation, exif) -> tuple[int, int]:
    """Decode ``src``, turn it upright, downscale by n and write it as 8 bits to ``out``; returns its (w, h)."""
    from PIL import Image

    from fieldfit.scenes.inputs import load_image

    img = load_image(src)  # float [H,W,C] in [0,1]; InputError naming src when undecodable
    if img.shape[2] == 2:  # grey + alpha: the grey
        img = img[..., :1]
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    u8 = u8[..., 0] if u8.shape[2] == 1 else u8
    im = Image.fromarray(u8)
    if orientation in _UPRIGHT:
        im = im.transpose(getattr(Image.Transpose, _UPRIGHT[orientation]))
    im = Image.fromarray(downscale_u8(np.asarray(im), n))
    if out.suffix.lower() == ".png":
        im.save(out, format="PNG")
    else:
        kw = {}
        if exif:
            e = Image.Exif()
            e.load(exif)
            e[EXIF_ORIENTATION] = 1
            kw["exif"] = e.tobytes()
        (im.convert("RGB") if im.mode == "RGBA" else im).save(out, format="JPEG", quality=JPEG_QUALITY, **kw)
    return im.size


def video_frames(video: Path, dest: Path, frames: int | None, every: int | None, downscale: int) -> Collected:
    """Decode ``video`` and write the sharpest frame of each window into ``dest`` (see the module doc)."""
    from PIL import Image

    total = count_frames(video)
    n_windows = -(-total // every) if every is not None else min(frames, total)
    per = float(every) if every is not None else total / n_windows

    def window_of(i: int) -> int:  # frames past ffmpeg's count (if any) join the last window
        if i >= total:
            return n_windows - 1
        return i // every if every is not None else i * n_windows // total

    dest.mkdir(parents=True, exist_ok=True)
    names, sizes = [], {}
    best, current, decoded = None, -1, 0

    def keep(entry):
        _, index, img = entry
        name = f"frame_{index:06d}.jpg"
        Image.fromarray(img).save(dest / name, format="JPEG", quality=JPEG_QUALITY)
        names.append(name)
        sizes[name] = (img.shape[1], img.shape[0])

    for i, frame in enumerate(_decode(video)):
        decoded += 1
        w = window_of(i)
        if w != current and best is not None:
            keep(best)
            best = None
        current = w
        if min(frame.shape[:2]) < downscale:
            raise InputError(video, f"its frames are {frame.shape[1]}x{frame.shape[0]}, smaller than --downscale "
                             f"{downscale}", "use a smaller --downscale")
        img = downscale_u8(frame[..., :3], downscale)
        score = sharpness(img)
        if best is None or score > best[0]:
            best = (score, i, img)
    if best is not None:
        keep(best)
    return Collected(names, sizes, decoded=decoded, window=per)


def _decode(video: Path):
    """The frames of ``video`` (uint8 [H,W,3]); a decoder failure is an InputError naming the file."""
    import imageio.v3 as iio

    quiet = logging.getLogger("imageio_ffmpeg")  # it warns that a phone video's rotation swaps width and height
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        frames = iio.imiter(video, plugin="FFMPEG")
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - any decoder failure is a user-file problem
                raise InputError(video, f"cannot decode the video ({type(e).__name__}: {str(e).strip()[:120]})",
                                 "re-export it as an H.264 .mp4, or extract its frames into a folder of photos"
                                 ) from None
            yield np.asarray(frame)
    finally:
        quiet.setLevel(level)


def count_frames(video: Path) -> int:
    """The number of frames ffmpeg decodes from ``video``; InputError when it decodes none."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError(video, "reading videos needs imageio-ffmpeg, which is not installed",
                         'pip install "fieldfit[sfm]"') from None
    try:
        total, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    except Exception as e:  # noqa: BLE001 - ffmpeg's complaint about the file
        text = str(e).strip().splitlines()
        raise InputError(video, f"cannot decode the video ({text[-1][:160] if text else type(e).__name__})",
                         "re-export it as an H.264 .mp4, or extract its frames into a folder of photos") from None
    if total < 1:
        raise InputError(video, "the video holds no frames", "give another video, or a folder of photos")
    return int(total)


__all__ = ["PHOTO_SUFFIXES", "VIDEO_SUFFIXES", "Collected", "copy_photos", "list_photos", "sharpness",
           "video_frames"]
