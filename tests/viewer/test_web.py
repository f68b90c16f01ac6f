"""The browser viewer (viewer/web.py): the server, the camera conventions, a picture in headless Chromium, the CLI.

Without a browser: the server listens on 127.0.0.1 only, viser's camera converts to ours and back with the same
rays, a tab's picture is the Session's (a stand-in tab records what is sent), stop() frees the port, training while
viewed pauses and resumes. With headless Chromium (apt-get install chromium): a tiny radiance run shown at a scene
camera is that camera's render (PSNR >= 30 dB, where its mirror image is far below), whether the pose went from us
to the browser (a start camera, the panel's "next" button clicked in the page) or from the browser to us (viser's
own look-at camera). The CLI: defaults, a taken port, Ctrl-C. Skips, saying why, without viser (pip install
'fieldfit[web]') or Chromium.
"""

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("viser", reason="viser is not installed (pip install 'fieldfit[web]')")

from conftest import run_main  # noqa: E402 - after the skip: every test here needs viser
from fieldfit.errors import InputError  # noqa: E402
from fieldfit.render.camera import look_at  # noqa: E402
from fieldfit.viewer.camera import lens  # noqa: E402
from fieldfit.viewer.web_camera import from_viser, matrix_to_quat, quat_to_matrix, to_viser  # noqa: E402

SHOT = (240, 180)  # the browser's viewport: small, as every picture is rendered on the CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _listening(port: int):
    """A server on ``port`` (SO_REUSEADDR, as servers set it: connections closed a moment ago do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        yield


def _psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny radiance run fitted with ``--view web`` (the serving after training replaced by a record of it)."""
    from fieldfit.viewer import web_live

    out, port, served = tmp_path_factory.mktemp("web") / "run", _free_port(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(web_live, "serve", lambda viewer: served.append(viewer.view is not None))  # no wait for Ctrl-C
        res = run_main("blocks", "--steps", "3", "--resolution", "16", "--view", "web", "--port", port, "--out", out)
    assert res.returncode == 0, res.stderr
    return SimpleNamespace(path=out, port=port, served=served, stdout=res.stdout)


@pytest.fixture(scope="module")
def radiance_run(fitted):
    return fitted.path


@pytest.fixture(scope="module")
def view(radiance_run):
    """The run's view with density everywhere (3 steps leave the field empty): a picture with content, and cheap
    (opaque at the first samples)."""
    from fieldfit.viewer.registry import open_view

    v = open_view(radiance_run, "cpu")
    v.model.field.density_shift = 4.0
    return v


def _preset(view, name):
    return next(p.camera for p in view.presets() if p.name == name)


def _render(view, name, size):
    """The model's own render of scene camera ``name`` at ``size`` (its pose, its vertical field of view)."""
    from fieldfit.viewer.views.base import to_uint8

    cam = _preset(view, name).resized(*size)
    return to_uint8(view.model.render(cam).rgb.reshape(cam.height, cam.width, 3))


def _viewer(view, **kw):
    from fieldfit.viewer.web import WebViewer

    return WebViewer(view, port=_free_port(), **kw)


# -- without a browser ------------------------------------------------------------------------------------
def test_quaternions_round_trip_every_rotation():
    rng = np.random.default_rng(0)
    rotations = [np.diag(d).astype(float) for d in ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])]  # 0, 180 deg
    rotations += [q * np.sign(np.linalg.det(q)) for q in (np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(50))]
    for r in rotations:
        q = matrix_to_quat(r)
        assert q[0] >= 0
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(quat_to_matrix(q), r, atol=1e-10)


def test_camera_to_viser_and_back_has_the_same_rays():
    rng = np.random.default_rng(1)
    for _ in range(10):
        eye = rng.normal(size=3) * 3
        cam = lens(64, 48, look_at(eye, rng.normal(size=3) * 0.2, rng.normal(size=3)), fov_y=rng.uniform(20, 90))
        position, wxyz, fov = to_viser(cam)
        r = quat_to_matrix(wxyz)  # viser: camera-to-world with OpenCV axes
        np.testing.assert_allclose(r[:, 2], cam.forward, atol=1e-12)  # it looks along +z
        np.testing.assert_allclose(r[:, 1], -cam.c2w[:, 1], atol=1e-12)  # its y points down
        np.testing.assert_allclose(r[:, 0], cam.c2w[:, 0], atol=1e-12)
        np.testing.assert_allclose(position, cam.position)
        assert fov == pytest.approx(cam.fov_y)
        back = from_viser(position, wxyz, fov, cam.width, cam.height)
        for ours, theirs in zip(cam.rays(dtype=torch.float64), back.rays(dtype=torch.float64), strict=True):
            np.testing.assert_allclose(theirs.numpy(), ours.numpy(), atol=1e-10)


def _outside_address():
    """An address of this machine other than loopback (None when it has none): no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_the_server_listens_on_loopback_only_and_stop_frees_the_port(view):
    from fieldfit.viewer.web import WebViewer

    viewer = _viewer(view)
    port = viewer.port
    try:
        assert viewer.url == f"http://127.0.0.1:{port}"
        assert b"<html" in urllib.request.urlopen(viewer.url, timeout=30).read().lower()  # viser's page
        other = _outside_address()
        if other is not None:
            with pytest.raises((ConnectionRefusedError, TimeoutError)):
                socket.create_connection((other, port), timeout=5).close()
    finally:
        viewer.stop()
    with _listening(port):  # free again at once
        pass
    WebViewer(view, port=port).stop()
    with _listening(port), pytest.raises(InputError, match=f"--port {port}: already in use"):
        WebViewer(view, port=port)


class FakeTab:
    """Stands in for a viser client handle: the camera the server sends, the pictures it pushes."""

    def __init__(self, width, height):
        self.client_id = 0
        self.camera = SimpleNamespace(image_width=width, image_height=height)
        self.sent = []
        self.scene = SimpleNamespace(set_background_image=lambda img, **kw: self.sent.append((img.copy(), kw)))

    def flush(self):
        pass

    def atomic(self):
        return contextlib.nullcontext()


def _tab(viewer, view, size, **options):
    from fieldfit.viewer.session import Session
    from fieldfit.viewer.web import WebClient

    client = WebClient(FakeTab(*size), Session(view, aspect=size[0] / size[1], **options), size)
    viewer.clients[0] = client
    return client


def _still(viewer, client, timeout=30.0):
    """Pump until the tab has had its full-scale picture after the last move."""
    deadline = time.monotonic() + timeout
    while not client.session.res.refined or client.session.needs_frame():
        assert time.monotonic() < deadline, "no full-scale picture"
        viewer.pump(0.05)


def test_a_tabs_pictures_are_the_sessions(view):
    """A scene camera's picture equals Session.frame; a pose the browser reports moves the camera: a picture at
    the moving scale, then one at full scale once still, then nothing more while nothing changes."""
    from fieldfit.viewer.session import Session

    size = (48, 36)
    viewer = _viewer(view)
    try:
        client = _tab(viewer, view, size, overlay=False)
        viewer.jump(client, "test:1")
        cam = _preset(view, "test:1")
        np.testing.assert_allclose(client.handle.camera.position, cam.position)  # the browser is sent the pose
        assert client.handle.camera.fov == pytest.approx(cam.fov_y)
        assert viewer.pump() == 1  # at once
        _still(viewer, client)
        img, how = client.handle.sent[-1]
        assert how["format"] == "jpeg"
        reference = Session(view, overlay=False)
        reference.controls.snap_named("test:1")
        assert np.array_equal(img, reference.frame(*size))
        # the browser echoes the pose it was sent: not a move
        position, wxyz, fov = to_viser(cam)
        viewer.browser_camera(0, position, wxyz, fov, *size, cam.position + cam.forward, cam.c2w[:, 1])
        assert client.expect is None
        assert sum(viewer.pump(0.05) for _ in range(4)) == 0
        # the browser moved to test:2 (reported in its own convention)
        target = _preset(view, "test:2")
        position, wxyz, fov = to_viser(target)
        client.session.res.moving_scale = 0.5  # as after slow frames
        viewer.browser_camera(0, position, wxyz, fov, *size, target.position + target.forward, target.c2w[:, 1])
        assert viewer.pump() == 1
        assert client.scale == 0.5
        assert client.handle.sent[-1][0].shape == (size[1], size[0], 3)  # brought to the canvas size
        _still(viewer, client)
        assert client.scale == 1.0
        reference.controls.snap_named("test:2")
        assert np.abs(client.handle.sent[-1][0].astype(int) - reference.frame(*size)).max() <= 1  # the same rays
        assert sum(viewer.pump(0.05) for _ in range(4)) == 0  # still: nothing drawn
    finally:
        viewer.stop()


def test_training_while_viewed_draws_and_pauses(radiance_run):
    import fieldfit
    from fieldfit.viewer.web_live import LiveWeb

    run = fieldfit.load(radiance_run, "cpu").run
    state = lambda: run.load_checkpoint("cpu")  # noqa: E731 - the trainer's checkpoint closure
    logged = []
    run.log = lambda msg, **kw: logged.append(msg)
    hook = LiveWeb(run, "cpu", port=_free_port())
    try:
        assert "ssh -L" in logged[0]
        assert f"http://127.0.0.1:{hook.viewer.port}" in logged[0]
        hook(1, state)
        assert hook.viewer.view is not None  # the run is described: the view is open
        client = _tab(hook.viewer, hook.viewer.view, (24, 18), overlay=True)
        hook(2, state)
        assert len(client.handle.sent) == 1
        hook.viewer.paused = True  # the panel's button; pressed again 0.3 s later on another thread
        threading.Timer(0.3, lambda: hook.viewer.post(lambda: setattr(hook.viewer, "paused", False))).start()
        hook(3, state)
        assert not hook.viewer.paused
        assert any("paused at step 3" in m for m in logged)
        assert any("resumed at step 3" in m for m in logged)
    finally:
        hook.close()


# -- in headless Chromium -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium():
    from fieldfit.viewer.chromium import Chromium, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with Chromium(*SHOT) as browser:
        yield browser


def _settle(viewer, timeout=120.0):
    """Pump until every tab has a picture of its latest camera; the tabs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        viewer.pump(0.05)
        tabs = list(viewer.clients.values())
        if tabs and all(t.frames and (t.expect is None or time.perf_counter() > t.expect[1])
                        and not t.session.needs_frame() for t in tabs):
            return tabs
    raise AssertionError(f"no picture in {timeout:.0f} s")


CLICK = """(() => {{
  const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === '{}');
  if (b) b.click();
  return !!b;
}})()"""


def _shown(browser, viewer, expected, timeout=60.0):
    """The browser's picture once it shows ``expected`` (PSNR >= 30 dB), or the last one after ``timeout``."""
    from fieldfit.viewer.chromium import HIDE_ALL_BUT_CANVAS

    deadline = time.monotonic() + timeout
    while True:
        viewer.pump(0.05)
        assert browser.evaluate(HIDE_ALL_BUT_CANVAS)  # the panel and notifications hidden: the picture alone
        shot = browser.screenshot()
        if _psnr(shot, expected) >= 30.0 or time.monotonic() > deadline:
            return shot
        time.sleep(0.2)


def test_the_browser_shows_the_scene_cameras_render(view, chromium):
    viewer = _viewer(view, camera="test:1", scale=1.0)
    try:
        chromium.open(viewer.url)
        (tab,) = _settle(viewer)
        assert tab.size == SHOT  # the canvas: the viewport, one pixel each
        assert tab.panel.mode.value == "colour"
        assert tab.panel.camera.value == "test:1"
        expected = _render(view, "test:1", SHOT)
        shot = _shown(chromium, viewer, expected)
        assert _psnr(shot, expected) >= 30.0
        assert _psnr(shot[:, ::-1], expected) < 20.0  # a mirrored camera would fail by far
        cam, target = tab.handle.camera, _preset(view, "test:1")  # where the browser itself looks
        direction = (cam.look_at - cam.position) / np.linalg.norm(cam.look_at - cam.position)
        assert direction @ target.forward > 0.9999
        assert cam.fov == pytest.approx(target.fov_y, rel=1e-6)
        # the panel's "next" button, clicked in the page: the next scene camera
        assert chromium.evaluate(CLICK.format("next"))
        expected = _render(view, "test:2", SHOT)
        shot = _shown(chromium, viewer, expected)
        assert tab.session.controls.presets[tab.session.controls.preset_index].name == "test:2"
        assert _psnr(shot, expected) >= 30.0
        # the browser moved to test:0 through viser's own look-at camera (no convention of ours involved)
        target = _preset(view, "test:0")
        with tab.handle.atomic():
            cam.up_direction = target.c2w[:, 1]
            cam.position = target.position
            cam.look_at = target.position + target.forward
        expected = _render(view, "test:0", SHOT)
        shot = _shown(chromium, viewer, expected)
        assert _psnr(shot, expected) >= 30.0
        assert _psnr(shot[::-1], expected) < 20.0
    finally:
        viewer.stop()


# -- the command line ----------------------------------------------------------------------------------------
def test_cli_defaults_and_the_view_flag():
    from fieldfit.cli import _base_parser, check_view
    from fieldfit.viewer.app import check_numbers, parser

    args = parser().parse_args(["run", "--web"])
    check_numbers(args)
    assert (args.host, args.port) == ("127.0.0.1", 7007)
    with pytest.raises(InputError, match="only goes with --web"):
        check_numbers(parser().parse_args(["run", "--port", "7008"]))
    with pytest.raises(InputError, match="--screenshot: does not go with --web"):
        check_numbers(parser().parse_args(["run", "--web", "--screenshot", "x.png"]))
    port = _free_port()
    args = _base_parser().parse_args(["blocks", "--view", "web", "--port", str(port)])
    check_view(args)
    assert (args.view, args.host, args.port) == ("web", "127.0.0.1", port)
    args = _base_parser().parse_args(["blocks", "--view"])
    check_view(args)
    assert args.view == "native"
    args = _base_parser().parse_args(["--view", "blocks"])  # as before --view took a value: the window on blocks
    check_view(args)
    assert (args.view, args.scene) == ("native", "blocks")
    with pytest.raises(InputError, match="native or web"):
        check_view(_base_parser().parse_args(["blocks", "--view", "browser"]))
    with pytest.raises(InputError, match="only goes with --view web"):
        check_view(_base_parser().parse_args(["blocks", "--view", "--port", "7008"]))


def test_port_in_use_is_one_line_and_exit_2(radiance_run, tmp_path):
    port = _free_port()
    with _listening(port):
        for args in (("view", radiance_run, "--web", "--port", port),
                     ("blocks", "--view", "web", "--port", port, "--steps", "1", "--out", tmp_path / "fit")):
            res = run_main(*args)
            assert res.returncode == 2
            err = res.stderr.strip().splitlines()
            assert len(err) == 1, err
            assert f"--port {port}: already in use" in err[0]
            assert "--port" in err[0].split("(", 1)[1]  # the fix names the option
    assert not (tmp_path / "fit").exists()  # checked before the run folder is made


def test_fit_view_web_serves_while_training_and_frees_the_port(fitted):
    assert fitted.served == [True]  # after training, the final model is served
    assert f"web viewer at http://127.0.0.1:{fitted.port}" in (fitted.path / "log").read_text()
    assert "training done" in fitted.stdout
    with _listening(fitted.port):  # closed after the fit
        pass


def test_view_web_stops_cleanly_on_ctrl_c(radiance_run):
    port = _free_port()
    env = dict(os.environ, FIELDFIT_NO_TCMALLOC="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "fieldfit", "view", radiance_run, "--web", "--port", port, "--camera", "test:1"]
    # SIGINT as a terminal gives it: a test run started in the background hands its children SIGINT ignored
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()  # printed once the server listens
        assert f"http://127.0.0.1:{port}" in line
        assert f"ssh -L {port}:127.0.0.1:{port}" in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out
    with _listening(port):
        pass
