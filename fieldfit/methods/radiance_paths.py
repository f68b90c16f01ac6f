"""Camera paths for novel-view videos (orbit, spiral, test) and the video writer.

Poses are OpenGL camera-to-world [3,4] in the scene's world frame (before any NDC mapping).
- orbit: a circle around the point the cameras look at (least-squares closest point to the
  optical axes), about the mean camera up vector, at the cameras' mean distance and mean
  elevation: for object captures (Blender, the fox).
- spiral: NeRF's LLFF spiral around the average pose, radii from the spread of the camera
  positions, focused at a depth from the scene bounds: for forward-facing captures.
- test: the test views in split order.
"""

import math
import re
from pathlib import Path

import numpy as np

from fieldfit.errors import InputError
from fieldfit.scenes import Frame, Scene
from fieldfit.scenes.nerfstudio import look_at_centre


def _look_at(eye, target, up) -> np.ndarray:
    z = eye - target
    z = z / np.linalg.norm(z)
    x = np.cross(up, z)
    x = x / max(np.linalg.norm(x), 1e-12)
    y = np.cross(z, x)
    return np.stack([x, y, z, eye], axis=1)


def _mean_up(scene: Scene) -> np.ndarray:
    up = scene.c2w[:, :, 1].mean(axis=0)
    return up / np.linalg.norm(up)


def orbit_poses(scene: Scene, n: int) -> list[np.ndarray]:
    """n poses on a circle around the looked-at point (see module doc)."""
    centre = look_at_centre(scene.frames)
    up = _mean_up(scene)
    rel = scene.c2w[:, :, 3] - centre
    radius = float(np.linalg.norm(rel, axis=1).mean())
    height = float(np.mean(rel @ up))
    ring = math.sqrt(max(radius**2 - height**2, 1e-6))
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    poses = []
    for k in range(n):
        phi = 2 * math.pi * k / n
        eye = centre + height * up + ring * (math.cos(phi) * a + math.sin(phi) * b)
        poses.append(_look_at(eye, centre, up))
    return poses


def spiral_poses(scene: Scene, n: int, rots: int = 2) -> list[np.ndarray]:
    """n poses on NeRF's LLFF spiral around the average camera (see module doc)."""
    c2w = scene.c2w
    centre = c2w[:, :, 3].mean(axis=0)
    back = c2w[:, :, 2].sum(axis=0)
    back /= np.linalg.norm(back)
    up = _mean_up(scene)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    axes = np.stack([right, up, back], axis=1)
    rads = np.percentile(np.abs((c2w[:, :, 3] - centre) @ axes), 90, axis=0)
    bounds = scene.metadata.get("bounds")
    if bounds is not None:
        close, far = 0.9 * float(np.min(bounds)), 5.0 * float(np.max(bounds))
        focus = 1.0 / (0.25 / close + 0.75 / far)
    else:
        focus = float(np.linalg.norm(look_at_centre(scene.frames) - centre))
    target = centre - focus * back
    poses = []
    for k in range(n):
        th = 2 * math.pi * rots * k / n
        off = np.array([math.cos(th), -math.sin(th), -math.sin(0.5 * th)]) * rads
        poses.append(_look_at(centre + axes @ off, target, up))
    return poses


def path_frames(scene: Scene, path: str, n: int) -> list[Frame]:
    """Frames (intrinsics of the first test view, or the first view; no distortion) along ``path``."""
    test = scene.splits.get("test") or [0]
    if path == "test":
        return [scene.frames[i] for i in test]
    ref = scene.frames[test[0]]
    poses = orbit_poses(scene, n) if path == "orbit" else spiral_poses(scene, n)
    return [Frame(path=None, width=ref.width, height=ref.height, fx=ref.fx, fy=ref.fy, cx=ref.cx, cy=ref.cy,
                  c2w=p, name=f"{path}_{k:03d}") for k, p in enumerate(poses)]


def write_video(frames: list[np.ndarray], out: Path, fps: int = 24) -> tuple[Path, str]:
    """Write uint8 [H,W,3] frames as .mp4 (imageio-ffmpeg), else .gif; any other ``out`` is a folder that
    gets frame_NNNN.png (one that holds other files is refused, so a run folder is never filled).

    The requested suffix is kept when it can be written; otherwise the file actually written is
    returned with a message saying why (install the ``video`` extra for mp4).
    """
    import imageio.v3 as iio

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    note = ""
    if out.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"):
        try:
            import imageio_ffmpeg  # noqa: F401, PLC0415 - optional (pip install fieldfit[video])

            iio.imwrite(out, np.stack(frames), fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
            return out, note
        except ImportError:
            note = "imageio-ffmpeg is not installed (pip install 'fieldfit[video]'); wrote a GIF instead"
            out = out.with_suffix(".gif")
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


__all__ = ["orbit_poses", "path_frames", "spiral_poses", "write_video"]
