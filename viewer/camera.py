"""The viewer's camera: a pose plus intrinsics, moved by the mouse and the keyboard (pure numpy).

Conventions are render/'s: ``c2w`` [3,4] float64, OpenGL (x right, y up, looking along -z);
pixel centres at col + 0.5, row + 0.5. The camera keeps a *pivot* at ``distance`` in front
of it: orbit turns about the pivot, pan slides pose and pivot together, zoom dollies towards
the pivot, WASD flies the pose and the pivot together.

Intrinsics are stored relative to the image (``Lens``), so one camera renders at any size:
a scene camera snapped with [ ] renders exactly its own rays at its own size, and at any
other size keeps its vertical field of view and principal point (no stretching).
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

MIN_POLAR = math.radians(2.0)  # orbit never turns the view closer than this to the up axis


@dataclass(frozen=True)
class Lens:
    """Pinhole intrinsics relative to the image: fy / height, fx / fy, cx / width, cy / height."""

    fy_rel: float = 1.0 / (2.0 * math.tan(math.radians(25.0)))  # 50 degrees vertical field of view
    aspect: float = 1.0
    cx_rel: float = 0.5
    cy_rel: float = 0.5

    @classmethod
    def of_frame(cls, fx, fy, cx, cy, width, height) -> "Lens":
        return cls(fy / height, fx / fy, cx / width, cy / height)

    def at(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels for a width x height image."""
        fy = self.fy_rel * height
        return fy * self.aspect, fy, self.cx_rel * width, self.cy_rel * height


@dataclass(frozen=True)
class Preset:
    """A camera of the scene the run was fitted to, e.g. ("test:3", c2w, lens, (800, 800))."""

    name: str
    c2w: np.ndarray
    lens: Lens
    size: tuple[int, int]  # (width, height) of its image


def look_at(eye, target, up) -> np.ndarray:
    """OpenGL camera-to-world [3,4] at ``eye`` looking at ``target`` with ``up`` roughly up."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = eye - target
    z = z / np.linalg.norm(z)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-9:  # looking along up: any perpendicular will do
        x = np.cross(_any_perpendicular(up), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z, eye], axis=1)


def _any_perpendicular(v) -> np.ndarray:
    a = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    return np.cross(v, a)


def rotation(axis, angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


@dataclass
class Camera:
    """Pose, pivot distance, world up axis and lens. Methods change the camera in place."""

    c2w: np.ndarray
    distance: float = 1.0
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    lens: Lens = field(default_factory=Lens)

    def __post_init__(self):
        self.c2w = np.array(self.c2w, np.float64).reshape(3, 4)
        self.up = np.asarray(self.up, np.float64) / np.linalg.norm(self.up)

    def copy(self) -> "Camera":
        return replace(self, c2w=self.c2w.copy(), up=self.up.copy())

    @property
    def eye(self) -> np.ndarray:
        return self.c2w[:, 3]

    @property
    def forward(self) -> np.ndarray:
        return -self.c2w[:, 2]

    @property
    def pivot(self) -> np.ndarray:
        return self.eye + self.distance * self.forward

    def intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        return self.lens.at(width, height)

    def orbit(self, yaw: float, pitch: float) -> None:
        """Turn about the pivot: ``yaw`` radians about the up axis, ``pitch`` about the camera's x.

        Positive pitch lifts the camera (looks down more). The polar angle is clamped so the
        view never flips over the up axis.
        """
        polar = math.acos(float(np.clip(np.dot(-self.forward, self.up), -1.0, 1.0)))
        pitch = float(np.clip(pitch, polar - (math.pi - MIN_POLAR), polar - MIN_POLAR))
        pivot = self.pivot
        rot = rotation(self.up, -yaw) @ rotation(self.c2w[:, 0], -pitch)
        self.c2w[:, :3] = rot @ self.c2w[:, :3]
        self.c2w[:, 3] = pivot + rot @ (self.eye - pivot)

    def pan(self, dx: float, dy: float) -> None:
        """Slide right by ``dx`` and up by ``dy``, in units of the pivot distance."""
        self.c2w[:, 3] += self.distance * (dx * self.c2w[:, 0] + dy * self.c2w[:, 1])

    def zoom(self, factor: float) -> None:
        """Dolly towards the pivot: the pivot distance is multiplied by ``factor`` (< 1 zooms in)."""
        pivot = self.pivot
        self.distance *= float(factor)
        self.c2w[:, 3] = pivot - self.distance * self.forward

    def fly(self, forward: float, right: float, up: float) -> None:
        """Move pose and pivot along the camera's axes, in units of the pivot distance."""
        axes = forward * self.forward + right * self.c2w[:, 0] + up * self.c2w[:, 1]
        self.c2w[:, 3] += self.distance * axes


def orbit_home(centre, radius: float, up, lens: Lens | None = None, elevation: float = 25.0,
               azimuth: float = 30.0) -> Camera:
    """A camera looking at ``centre`` from a distance where a sphere of ``radius`` fills the view."""
    lens = lens or Lens()
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    half = math.atan(0.5 / lens.fy_rel)
    dist = radius / math.sin(half) * 1.05
    a = next(np.array(v, np.float64) for v in ([0, 0, 1], [0, -1, 0], [1, 0, 0]) if abs(np.dot(v, up)) < 0.9)
    a = a - np.dot(a, up) * up  # "front": +z for y-up shapes, -y for z-up scenes
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    el, az = math.radians(elevation), math.radians(azimuth)
    offset = math.cos(el) * (math.cos(az) * a + math.sin(az) * b) + math.sin(el) * up
    eye = np.asarray(centre, np.float64) + dist * offset
    return Camera(look_at(eye, centre, up), dist, up, lens)


KEYS_FLY = {"w": (1, 0, 0), "s": (-1, 0, 0), "d": (0, 1, 0), "a": (0, -1, 0), "e": (0, 0, 1), "q": (0, 0, -1)}


class Controls:
    """Mouse and keyboard -> camera. Input arrives as plain values (pixels, seconds, key names).

    left drag: orbit (pan for 2D views); right or middle drag, or shift + left: pan;
    scroll: zoom; W A S D (Q E down/up): fly, ``fly_speed`` pivot distances per second;
    [ and ]: previous / next scene camera; R: reset to the home camera.
    """

    def __init__(self, home: Camera, presets: list[Preset] = (), planar: bool = False,
                 orbit_speed: float = math.pi, fly_speed: float = 1.0, zoom_step: float = 0.9):
        self.home, self.presets, self.planar = home.copy(), list(presets), planar
        self.camera = home.copy()
        self.orbit_speed, self.fly_speed, self.zoom_step = orbit_speed, fly_speed, zoom_step
        self.preset_index = -1  # index into presets of the last snap (-1: none)
        self.held: set[str] = set()

    def drag(self, dx: float, dy: float, height: int, pan: bool = False) -> None:
        """Mouse moved by (dx, dy) pixels (y down) in a window ``height`` pixels tall."""
        if pan or self.planar:
            fy = self.camera.lens.fy_rel * height  # pixel -> pivot-distance units at the pivot
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
        """Jump to scene camera ``index`` (wrapping around); the pivot stays at its distance."""
        self.preset_index = index % len(self.presets)
        p = self.presets[self.preset_index]
        self.camera.c2w, self.camera.lens = np.array(p.c2w, np.float64), p.lens
        return p

    def snap_named(self, name: str) -> Preset:
        """Jump to the scene camera called ``name`` (e.g. "test:3"); KeyError when absent."""
        for i, p in enumerate(self.presets):
            if p.name == name:
                return self.snap(i)
        raise KeyError(name)

    def reset(self) -> None:
        self.camera, self.preset_index = self.home.copy(), -1
