"""The viewer's movable camera: a ``render.Camera`` moved by the mouse and the keyboard (pure numpy).

There is one camera type, ``fieldfit.render.camera.Camera`` (its conventions: ``c2w`` [3,4] float64, OpenGL
x right, y up, looking along -z; pixel centres at col + 0.5, row + 0.5). The viewer's state is an ``Orbit``:
such a camera (pose and lens at a reference image size), a *pivot* at ``distance`` in front of it and the
world's up axis. Orbit turns about the pivot, pan slides pose and pivot together, zoom dollies towards the
pivot, WASD flies the pose and the pivot together; each replaces the camera's pose.

``Orbit.at(width, height)`` is the camera of a frame of that size: ``Camera.resized`` keeps the vertical
field of view and the principal point's place in the image, so one orbit renders at any window size (no
stretching), and a scene camera snapped with [ ] renders exactly its own rays at its own size.
"""

import math
from dataclasses import dataclass

import numpy as np

from fieldfit.render.camera import Camera, look_at

MIN_POLAR = math.radians(2.0)  # orbit never turns the view closer than this to the up axis
FOV_Y = 50.0  # degrees: the vertical field of view of the viewer's own cameras (homes, axis views)


def lens(width: int, height: int, c2w=None, fov_y: float = FOV_Y) -> Camera:
    """A pinhole camera of ``fov_y`` degrees vertically, square pixels, centred principal point (identity pose
    unless ``c2w``): the lens of the viewer's own views at a reference size."""
    fy = 0.5 * height / math.tan(math.radians(fov_y) / 2.0)
    return Camera(np.eye(3, 4) if c2w is None else c2w, fy, fy, width / 2.0, height / 2.0, width, height)


@dataclass(frozen=True)
class Preset:
    """A named camera of the scene the run was fitted to (e.g. "test:3"), or an axis view of a shape ("front")."""

    name: str
    camera: Camera

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of its image."""
        return self.camera.width, self.camera.height


def rotation(axis, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


class Orbit:
    """A render Camera (pose and lens at its reference size), the pivot distance and the world up axis.
    The moves replace ``camera`` by the same lens at a new pose."""

    def __init__(self, camera: Camera, distance: float = 1.0, up=(0.0, 1.0, 0.0)):
        self.camera = camera
        self.distance = float(distance)
        self.up = np.asarray(up, np.float64) / np.linalg.norm(up)

    def copy(self) -> "Orbit":
        return Orbit(self.camera, self.distance, self.up.copy())

    def at(self, width: int, height: int) -> Camera:
        """The camera of a ``width`` x ``height`` frame (the camera itself at its own size)."""
        if (int(width), int(height)) == (self.camera.width, self.camera.height):
            return self.camera
        return self.camera.resized(int(width), int(height))

    @property
    def c2w(self) -> np.ndarray:
        return self.camera.c2w

    @property
    def eye(self) -> np.ndarray:
        return self.camera.c2w[:, 3]

    @property
    def forward(self) -> np.ndarray:
        return -self.camera.c2w[:, 2]

    @property
    def pivot(self) -> np.ndarray:
        return self.eye + self.distance * self.forward

    @property
    def fy_rel(self) -> float:
        """Focal length in image heights (pixels per pivot-distance unit at the pivot, per pixel of height)."""
        return self.camera.fy / self.camera.height

    def _pose(self, c2w: np.ndarray) -> None:
        self.camera = self.camera.with_pose(c2w)

    def orbit(self, yaw: float, pitch: float) -> None:
        """Turn about the pivot: ``yaw`` radians about the up axis, ``pitch`` about the camera's x.

        Positive pitch lifts the camera (looks down more). The polar angle is clamped so the
        view never flips over the up axis.
        """
        polar = math.acos(float(np.clip(np.dot(-self.forward, self.up), -1.0, 1.0)))
        pitch = float(np.clip(pitch, polar - (math.pi - MIN_POLAR), polar - MIN_POLAR))
        pivot, c2w = self.pivot, self.c2w.copy()
        rot = rotation(self.up, -yaw) @ rotation(c2w[:, 0], -pitch)
        c2w[:, :3] = rot @ c2w[:, :3]
        c2w[:, 3] = pivot + rot @ (c2w[:, 3] - pivot)
        self._pose(c2w)

    def pan(self, dx: float, dy: float) -> None:
        """Slide right by ``dx`` and up by ``dy``, in units of the pivot distance."""
        c2w = self.c2w.copy()
        c2w[:, 3] += self.distance * (dx * c2w[:, 0] + dy * c2w[:, 1])
        self._pose(c2w)

    def zoom(self, factor: float) -> None:
        """Dolly towards the pivot: the pivot distance is multiplied by ``factor`` (< 1 zooms in)."""
        pivot = self.pivot
        self.distance *= float(factor)
        c2w = self.c2w.copy()
        c2w[:, 3] = pivot - self.distance * self.forward
        self._pose(c2w)

    def fly(self, forward: float, right: float, up: float) -> None:
        """Move pose and pivot along the camera's axes, in units of the pivot distance."""
        c2w = self.c2w.copy()
        c2w[:, 3] += self.distance * (forward * -c2w[:, 2] + right * c2w[:, 0] + up * c2w[:, 1])
        self._pose(c2w)


def orbit_home(centre, radius: float, up, reference: Camera | None = None, elevation: float = 25.0,
               azimuth: float = 30.0) -> Orbit:
    """An orbit looking at ``centre`` from a distance where a sphere of ``radius`` fills the vertical view,
    with the lens of ``reference`` (default: ``lens(800, 600)``)."""
    reference = reference or lens(800, 600)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    dist = radius / math.sin(reference.fov_y / 2.0) * 1.05
    a = next(np.array(v, np.float64) for v in ([0, 0, 1], [0, -1, 0], [1, 0, 0]) if abs(np.dot(v, up)) < 0.9)
    a = a - np.dot(a, up) * up  # "front": +z for y-up shapes, -y for z-up scenes
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    el, az = math.radians(elevation), math.radians(azimuth)
    offset = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up
    eye = np.asarray(centre, np.float64) + dist * offset
    return Orbit(reference.with_pose(look_at(eye, centre, up)), dist, up)


KEYS_FLY = {"w": (1, 0, 0), "s": (-1, 0, 0), "d": (0, 1, 0), "a": (0, -1, 0), "e": (0, 0, 1), "q": (0, 0, -1)}


class Controls:
    """Mouse and keyboard -> orbit. Input arrives as plain values (pixels, seconds, key names).

    left drag: orbit (pan for 2D views); right or middle drag, or shift + left: pan;
    scroll: zoom; W A S D (Q E down/up): fly, ``fly_speed`` pivot distances per second;
    [ and ]: previous / next scene camera; R: reset to the home camera.
    """

    def __init__(self, home: Orbit, presets: list[Preset] = (), planar: bool = False,
                 orbit_speed: float = math.pi, fly_speed: float = 1.0, zoom_step: float = 0.9):
        self.home, self.presets, self.planar = home.copy(), list(presets), planar
        self.camera = home.copy()
        self.orbit_speed, self.fly_speed, self.zoom_step = orbit_speed, fly_speed, zoom_step
        self.preset_index = -1  # index into presets of the last snap (-1: none)
        self.held: set[str] = set()

    def drag(self, dx: float, dy: float, height: int, pan: bool = False) -> None:
        """Mouse moved by (dx, dy) pixels (y down) in a window ``height`` pixels tall."""
        if pan or self.planar:
            fy = self.camera.fy_rel * height  # pixel -> pivot-distance units at the pivot
            self.camera.pan(-dx / fy, dy / fy)
        else:
            self.camera.orbit(self.orbit_speed * dx / height, self.orbit_speed * dy / height)

    def scroll(self, clicks: float) -> None:
        """Scroll wheel: positive clicks zoom in."""
        self.camera.zoom(self.zoom_step ** float(clicks))

    def press(self, key: str) -> bool:
        """A key went down. Returns True when the camera jumped (snap or reset)."""
        if key in KEYS_FLY:
            self.held.add(key)
            return False
        if key in ("[", "]") and self.presets:
            self.snap(self.preset_index + (1 if key == "]" else -1))
            return True
        if key == "r":
            self.reset()
            return True
        return False

    def release(self, key: str) -> None:
        self.held.discard(key)

    def flying(self) -> bool:
        return bool(self.held)

    def advance(self, dt: float) -> None:
        """Apply the held fly keys for ``dt`` seconds."""
        if not self.held:
            return
        move = np.sum([KEYS_FLY[k] for k in self.held], axis=0) * self.fly_speed * float(dt)
        if self.planar:  # 2D views: W/S zoom, A/D and Q/E pan
            self.camera.zoom(math.exp(-move[0]))
            self.camera.pan(move[1], move[2])
        else:
            self.camera.fly(*move)

    def snap(self, index: int) -> Preset:
        """Jump to scene camera ``index`` (wrapping around): its pose and lens; the pivot stays at its distance."""
        self.preset_index = index % len(self.presets)
        p = self.presets[self.preset_index]
        self.camera.camera = p.camera
        return p

    def snap_named(self, name: str) -> Preset:
        """Jump to the scene camera called ``name`` (e.g. "test:3"); KeyError when absent."""
        for i, p in enumerate(self.presets):
            if p.name == name:
                return self.snap(i)
        raise KeyError(name)

    def reset(self) -> None:
        self.camera, self.preset_index = self.home.copy(), -1


__all__ = ["Controls", "KEYS_FLY", "MIN_POLAR", "Orbit", "Preset", "lens", "orbit_home", "rotation"]
