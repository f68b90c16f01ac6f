"""The browser viewer (``fieldfit view RUN --web``, ``fieldfit SCENE --view web``): a viser server that draws a run
for every browser tab through the same ``Session`` as the native window.

Each tab (a viser client) gets its own ``viewer.session.Session`` (camera, mode, overlay, resolution controller)
over the one view. The browser moves its own camera (viser's orbit controls); its pose arrives as a client camera
message, becomes our Camera (``viewer.web_camera.from_viser``) and marks the session moved, so the resolution
controller renders at a reduced scale while the camera moves and once at full scale when it has been still for a
moment, exactly as in the window. ``Session.frame(canvas width, canvas height)`` is shown as the tab's background
image: the browser stretches it over its frustum, which is the frame's own frustum. Scene cameras and home are
sent to the browser as poses (``to_viser``); the browser's echo of a pose it was sent is not a move, and the poses it
reports before that echo (it applies position, orientation and fov one by one) are not drawn. Only the latest pose
a tab reported is applied when the loop gets to it.

Transport: JPEG at quality ``JPEG_QUALITY`` (90). An 800x800 lego test image is ~60 kB at 44 dB PSNR from itself
and encodes about 20 times faster than PNG (~275 kB, lossless, ~0.3 s on a shared 2-core CPU: too slow and too
big for a moving camera over an ssh tunnel); quality 95 buys 2 dB for a third more bytes. A scene camera's
screenshot in the browser stays far above 30 dB from the run's own render (tests/viewer/test_web.py).

Threads: viser calls back on its own threads; the callbacks only queue work (``post``) and wake the drawing
loop. Sessions are read and changed, and frames rendered, only by the thread that calls ``pump`` (the main thread
for ``view --web``, the training thread for ``--view web``), so the view is never drawn from two threads and
nothing is drawn while nothing changes. The server binds 127.0.0.1 unless told otherwise.
"""

import queue
import threading
import time

import numpy as np

from fieldfit.errors import InputError

from .web_camera import from_viser, same_view, to_viser
from .web_net import DEFAULT_HOST, DEFAULT_PORT, check_port, port_error, quiet, require_viser

JPEG_QUALITY = 90
IDLE_WAIT_S = 0.5  # the loop's longest sleep when nothing is to be drawn (Ctrl-C and reloads stay responsive)
SETTLE_WAIT_S = 0.02  # its sleep while a still camera waits for its full-resolution frame
ECHO_S = 1.0  # after a pose is sent to a tab, the poses it reports are its old ones until it echoes ours (or this)


class WebClient:
    """One browser tab: its viser handle, its Session, its canvas size (pixels) and its GUI panel."""

    def __init__(self, handle, session, size: tuple[int, int]):
        self.handle, self.session, self.size = handle, session, size
        self.panel = None
        self.frames = 0  # pictures sent to this tab
        self.scale = None  # the render scale of the last one
        self.send_seconds = 0.0  # its encoding and queueing for the tab (the render: ``session.last_seconds``)
        self.expect = None  # (the Camera sent to the browser, until when its echo is awaited)


class WebViewer:
    """The server and its tabs. ``view`` may come later (``attach``: a fit that has not described its run yet).

    Options as ``fieldfit view``'s: ``mode``, ``fps`` (target while moving), ``scale`` (pinned), ``overlay`` (status
    text in the picture), ``camera`` (the scene camera new tabs start at); ``live``: a fit trains while viewed (the
    panel's pause button sets ``paused``, ``info`` is its step).
    """

    def __init__(self, view=None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, mode: str = "",
                 fps: float = 30.0, scale: float | None = None, overlay: bool = False, camera: str | None = None,
                 live: bool = False):
        check_port(host, port)
        viser = require_viser()
        with quiet():
            server = viser.ViserServer(host=host, port=int(port), verbose=False)
        if server.get_port() != int(port):  # taken between the check and the bind: viser moved to another port
            with quiet():
                server.stop()
            raise port_error(port)
        self.server, self.host, self.port = server, host, int(port)
        server.gui.configure_theme(show_logo=False, show_share_button=False)
        self.options = dict(mode=mode, fps=fps, scale=scale, overlay=overlay)
        self.start_camera, self.live, self.paused, self.info = camera, live, False, ""
        self.view = None
        self.clients: dict[int, WebClient] = {}
        self.waiting: list = []  # tabs that connected before the view existed
        self.frames_sent = 0
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._poses: dict = {}  # client id -> the latest camera it reported (viser's threads write it)
        self._poses_lock = threading.Lock()
        self._wake = threading.Event()
        self._last = time.perf_counter()
        self.stopped = False
        server.on_client_connect(lambda handle: self.post(lambda: self._connect(handle)))
        server.on_client_disconnect(lambda handle: self.post(lambda: self._disconnect(handle)))
        if view is not None:
            self.attach(view)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def post(self, fn) -> None:
        """Run ``fn()`` on the drawing thread at its next ``pump`` (any thread may call this)."""
        self._inbox.put(fn)
        self._wake.set()

    def attach(self, view) -> None:
        self.view = view
        waiting, self.waiting = self.waiting, []
        for handle in waiting:
            self._connect(handle)

    # -- tabs ------------------------------------------------------------------------------------------
    def _connect(self, handle) -> None:
        from .session import Session
        from .web_panel import Panel

        if self.view is None:
            self.waiting.append(handle)
            return
        cam = handle.camera
        size = (max(1, int(cam.image_width)), max(1, int(cam.image_height)))
        client = WebClient(handle, Session(self.view, aspect=size[0] / size[1], **self.options), size)
        if self.start_camera:
            client.session.controls.snap_named(self.start_camera)
        self.clients[handle.client_id] = client
        client.panel = Panel(self, client)
        cam.on_update(lambda c, cid=handle.client_id: self._camera_message(cid, c))
        self.send_camera(client)

    def _disconnect(self, handle) -> None:
        self.clients.pop(handle.client_id, None)
        if handle in self.waiting:
            self.waiting.remove(handle)

    def _camera_message(self, client_id: int, cam) -> None:
        """viser's thread: a tab reports its camera; the drawing thread applies it."""
        state = (np.array(cam.position, np.float64), np.array(cam.wxyz, np.float64), float(cam.fov),
                 int(cam.image_width), int(cam.image_height), np.array(cam.look_at, np.float64),
                 np.array(cam.up_direction, np.float64))
        with self._poses_lock:
            self._poses[client_id] = state
        self._wake.set()

    def browser_camera(self, client_id: int, position, wxyz, fov, width, height, look_at, up) -> None:
        """A tab's camera as the browser has it: the session's camera becomes it (unless it has not moved)."""
        client = self.clients.get(client_id)
        if client is None or width <= 0 or height <= 0:
            return
        camera, orbit = from_viser(position, wxyz, fov, width, height), client.session.camera
        if client.expect is not None:
            sent, until = client.expect
            if not same_view(sent, camera) and time.perf_counter() < until:
                return  # a pose from before the browser took the one we sent
            client.expect = None
        if same_view(orbit.at(width, height), camera):  # not moved (the echo of a pose we sent keeps its lens)
            return
        client.size = (width, height)
        orbit.camera = camera
        orbit.distance = max(float(np.linalg.norm(np.asarray(look_at) - np.asarray(position))), 1e-9)
        if np.linalg.norm(up) > 0:
            orbit.up = np.asarray(up, np.float64) / np.linalg.norm(up)
        client.session.moved()

    def send_camera(self, client: WebClient) -> None:
        """Put the tab's browser camera where its session's camera is (a scene camera, home, a start camera)."""
        orbit, cam = client.session.camera, client.handle.camera
        position, wxyz, fov = to_viser(orbit.camera)
        up = orbit.up if abs(float(np.dot(orbit.up, orbit.forward))) < 0.99 else orbit.c2w[:, 1]  # looking down "up"
        with client.handle.atomic():
            cam.up_direction = up
            cam.position = position
            cam.wxyz = wxyz
            cam.look_at = orbit.pivot  # the orbit's pivot: the browser turns about the same point
            cam.fov = fov
        client.expect = (orbit.at(*client.size), time.perf_counter() + ECHO_S)

    def jump(self, client: WebClient, where) -> None:
        """Move a tab to a scene camera (its name, or "previous" / "next"), or "home"."""
        controls = client.session.controls
        if where == "home":
            controls.reset()
        elif where in ("previous", "next"):
            if not controls.presets:
                return
            controls.snap(controls.preset_index + (1 if where == "next" else -1))
        else:
            controls.snap_named(where)
        client.session.moved()
        self.send_camera(client)

    def changed(self) -> None:
        """The field changed (training, a reloaded checkpoint): every tab draws again."""
        for client in self.clients.values():
            client.session.dirty = True

    # -- drawing ---------------------------------------------------------------------------------------
    def _wait_s(self, wait: float) -> float:
        sessions = [c.session for c in self.clients.values()]
        if any(s.needs_frame() for s in sessions):
            return 0.0
        if any(s.res.pinned is None and not s.res.refined for s in sessions):
            return min(wait, SETTLE_WAIT_S)
        return wait

    def pump(self, wait: float = 0.0, draw: bool = True) -> int:
        """Apply what the tabs sent, then (``draw``) draw every tab whose picture is out of date. With ``wait`` > 0,
        first sleep up to that long unless something is to be done. Returns the number of pictures sent."""
        if wait > 0 and not self._wake.is_set():
            self._wake.wait(self._wait_s(wait))
        self._wake.clear()
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        for client in list(self.clients.values()):  # time passes first: a move applied below starts from still
            client.session.advance(dt)
        while True:
            try:
                fn = self._inbox.get_nowait()
            except queue.Empty:
                break
            fn()
        with self._poses_lock:
            poses, self._poses = self._poses, {}
        for client_id, state in poses.items():
            self.browser_camera(client_id, *state)
        drawn = 0
        for client in list(self.clients.values()):
            s = client.session
            s.live, s.paused, s.info = self.live, self.paused, self.info
            if draw and s.needs_frame():
                self.draw(client)
                drawn += 1
            if client.panel is not None:
                client.panel.refresh(now)
        return drawn

    def draw(self, client: WebClient) -> np.ndarray:
        """Render the tab's picture (``Session.frame`` at its canvas size) and send it; returns the picture."""
        client.scale = client.session.res.scale()
        img = client.session.frame(*client.size)
        start = time.perf_counter()
        client.handle.scene.set_background_image(img, format="jpeg", jpeg_quality=JPEG_QUALITY)
        client.handle.flush()
        client.send_seconds = time.perf_counter() - start
        client.frames += 1
        self.frames_sent += 1
        return img

    def stop(self, timeout: float = 5.0) -> None:
        """Close the tabs' connections and the server; returns when the port can be bound again."""
        if self.stopped:
            return
        self.stopped = True
        with quiet():
            self.server.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                check_port(self.host, self.port)
                return
            except InputError:
                time.sleep(0.05)


def serve(viewer: WebViewer, follow=None, announce=None) -> None:
    """Draw for the tabs until Ctrl-C, reloading the weights when ``follow`` (``app.Follow``) says the run's
    checkpoint changed; the server is stopped (its port freed) however the loop ends. ``announce()`` (the URL line)
    runs first, inside it: a Ctrl-C that follows the line at once still stops cleanly."""
    try:
        if announce is not None:
            announce()
        while True:
            viewer.pump(IDLE_WAIT_S)
            if follow is not None and follow.poll(viewer.view):
                viewer.changed()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


__all__ = ["JPEG_QUALITY", "WebClient", "WebViewer", "serve"]
