"""The viewer on real (tiny) runs of every method: screenshots, training while viewing, turntables, the
no-display error, and the window under Xvfb.

Every run here is fitted with ``--view`` (``fieldfit.viewer.live.LiveView`` as the step hook) in a window
that is a stand-in (``FakeWindow``: no display needed; it records the pictures and plays scripted keys), so
each fixture also checks that the live view follows that method while it trains. The real window tests need
``Xvfb`` (and ``xdotool`` for real key and mouse events); they skip with the reason when those are not
installed (Debian/Ubuntu: apt-get install xvfb xauth xdotool libgl1 libglx-mesa0 libgl1-mesa-dri) or when
glfw / PyOpenGL are missing (pip install glfw PyOpenGL).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fieldfit.cli import main as cli


def run_cli(*args):
    """``fieldfit ARGS`` in this process (no interpreter start-up per call): the exit code."""
    return cli([str(a) for a in args])


def _png(path):
    import imageio.v3 as iio

    return iio.imread(path)


def _psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- training while viewing, without a display ------------------------------------------------------
class FakeWindow:
    """Stands in for viewer.window.Window: a fixed small framebuffer, the pictures shown, scripted keys
    (``keys``: poll number -> key pressed then). It closes once it has shown a picture after training."""

    SIZE = (48, 36)

    def __init__(self, session, width, height, title="fieldfit", keys=None):
        self.session, self.title, self.keys = session, title, dict(keys or {})
        self.requested, self.size = (width, height), self.SIZE
        self.shown, self.polls, self.closing = [], 0, False

    def poll(self, wait: float = 0.0) -> None:
        self.polls += 1
        if self.polls in self.keys:
            self.session.press(self.keys[self.polls])

    def show(self, img) -> None:
        assert img.shape == (self.size[1], self.size[0], 3)
        assert img.dtype == np.uint8
        self.shown.append((self.session.live, self.session.mode, img.copy()))
        if not self.session.live:  # LiveView.finish: the picture of the trained model, then "the user closes it"
            self.closing = True

    def closed(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def _fit_live(tmp_path_factory, name, *args, keys=None):
    """Fit with ``--view`` in a FakeWindow; P pressed at the 2nd poll and again at the 5th (pause, resume).
    Returns (run folder, the windows opened)."""
    from fieldfit.viewer import window

    out = tmp_path_factory.mktemp(f"viewer_{name}") / "run"
    windows = []

    def make(session, width, height, title="fieldfit"):
        windows.append(FakeWindow(session, width, height, title, keys or {2: "p", 5: "p"}))
        return windows[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(window, "check_display", lambda: None)
        mp.setattr(window, "Window", make)
        assert run_cli(*args, "--out", out, "--view") == 0
    return SimpleNamespace(path=out, windows=windows)


@pytest.fixture(scope="module")
def image_live(tmp_path_factory):
    import imageio.v3 as iio

    d = tmp_path_factory.mktemp("viewer_image_src")
    y, x = np.mgrid[0:24, 0:40]
    img = np.stack([x / 39, y / 23, 0.5 + 0.5 * np.sin(x / 3.0) * np.cos(y / 2.0)], -1)
    iio.imwrite(d / "smooth.png", (img * 255).astype(np.uint8))
    return _fit_live(tmp_path_factory, "image", d / "smooth.png", "--steps", "50", "--batch", "960")


@pytest.fixture(scope="module")
def image_run(image_live):
    return image_live.path


@pytest.fixture(scope="module")
def sdf_live(tmp_path_factory):
    import trimesh

    d = tmp_path_factory.mktemp("viewer_sdf_src")
    trimesh.creation.icosphere(subdivisions=3).export(d / "ball.obj")
    return _fit_live(tmp_path_factory, "sdf", d / "ball.obj", "--steps", "100", "--train-points", "20000",
                     "--resolution", "32", "--grid", "triplane", "--batch", "2048", "--lr", "0.03", "--max-res", "64",
                     "--base-res", "32", "--levels", "2", "--units", "16")


@pytest.fixture(scope="module")
def sdf_run(sdf_live):
    return sdf_live.path


@pytest.fixture(scope="module")
def radiance_live(tmp_path_factory):
    return _fit_live(tmp_path_factory, "radiance", "blocks", "--steps", "3", "--resolution", "16")


@pytest.fixture(scope="module")
def radiance_run(radiance_live):
    return radiance_live.path


@pytest.fixture(scope="module")
def bsp_live(tmp_path_factory):
    import trimesh

    d = tmp_path_factory.mktemp("viewer_bsp_src")
    trimesh.creation.box([1.0, 0.6, 0.8]).export(d / "box.obj")
    return _fit_live(tmp_path_factory, "bsp", d / "box.obj", "--method", "bsp", "--steps", "40", "--convexes", "4",
                     "--train-points", "20000", "--batch", "1024")


@pytest.fixture(scope="module")
def pronerf_live(tmp_path_factory):
    return _fit_live(tmp_path_factory, "pronerf", "blocks", "--method", "pronerf", "--steps", "5", "--downscale", "4",
                     "--levels", "2", "--max-res", "32", "--samples", "8", "--resolution", "16")


@pytest.fixture(scope="module")
def dnmp_live(tmp_path_factory):
    from fieldfit.methods.dnmp import autoencoder as dnmp_ae

    cache = tmp_path_factory.mktemp("viewer_dnmp_cache")
    enc, dec, code = dnmp_ae.train_autoencoder(steps=20, batch=64)  # any weights will do for drawing
    dnmp_ae.save(cache / dnmp_ae.FILE, enc, dec, code)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIELDFIT_CACHE", str(cache))
        return _fit_live(tmp_path_factory, "dnmp", "blocks", "--method", "dnmp", "--steps", "6", "--downscale", "4",
                         "--points-frac", "0.3", "--resolution", "16", "--batch", "1024")


LIVE = {  # fixture -> (the view's modes, whether a trained view of the run draws the same pictures)
    "image_live": (("colour",), "equal"),
    "sdf_live": (("shaded", "normals", "depth"), "surface"),  # live meshes are coarser than mesh.ply
    "radiance_live": (("colour", "depth", "normals", "opacity"), "equal"),
    "bsp_live": (("convexes", "normals", "depth"), "close"),  # the union itself against convexes.ply (float32)
    "pronerf_live": (("colour", "depth", "opacity"), "equal"),
    "dnmp_live": (("colour", "opacity"), "equal"),  # rasterized primitives carry no depth
}


@pytest.mark.slow
@pytest.mark.parametrize("fixture", sorted(LIVE))
def test_training_while_viewing_every_method(fixture, request):
    from fieldfit.viewer.registry import open_view

    live = request.getfixturevalue(fixture)
    modes, same = LIVE[fixture]
    assert len(live.windows) == 1, "the live view did not open"
    win = live.windows[0]
    assert win.title.endswith("(training)")
    during = [img for training, _, img in win.shown if training]
    after = [img for training, _, img in win.shown if not training]
    assert during
    assert len(after) == 1
    text = (live.path / "log").read_text()
    assert "viewer: training paused at step" in text
    assert "viewer: training resumed at step" in text
    assert "cannot draw" not in text
    view = win.session.view
    assert tuple(view.modes) == modes
    # the live view holds the trainer's last weights: it draws what a view of the finished run draws
    trained = open_view(live.path, "cpu")
    if same == "surface":
        assert len(view.mesh.faces) > 0
        camera = trained.home(4 / 3).at(64, 48)
        img = view.render(camera, "shaded").astype(int)
        assert np.abs(img[24, 32] - img[0, 0]).sum() > 30  # the ball over the background
        return
    camera = view.home(4 / 3).at(40, 30)
    for mode in modes:
        ours, theirs = view.render(camera, mode), trained.render(camera, mode)
        if same == "equal":
            assert np.array_equal(ours, theirs), mode
        else:
            assert _psnr(ours, theirs) >= 30.0, mode
    assert after[0].std() > 0


def test_screenshot_of_an_image_run_is_its_reconstruction(image_run, tmp_path):
    out = tmp_path / "shot.png"
    assert run_cli("view", image_run, "--screenshot", out, "--size", "40x24") == 0
    shot, rec = _png(out), _png(image_run / "reconstruction.png")
    assert shot.shape == rec.shape == (24, 40, 3)
    assert _psnr(shot, rec) >= 40.0
    # any size: the field is evaluated on the visible window, overlay only on request
    assert run_cli("view", image_run, "--screenshot", tmp_path / "big.png", "--size", "160x120", "--overlay", "on") == 0
    assert _png(tmp_path / "big.png").shape == (120, 160, 3)


def test_screenshot_of_an_sdf_run_modes_and_cameras(sdf_run, tmp_path):
    for mode in ("shaded", "normals", "depth"):
        out = tmp_path / f"{mode}.png"
        assert run_cli("view", sdf_run, "--screenshot", out, "--size", "96x64", "--mode", mode) == 0
        img = _png(out)
        assert img.shape == (64, 96, 3)
        centre, corner = img[32, 48].astype(int), img[0, 0].astype(int)
        assert np.abs(centre - corner).sum() > 30, mode  # the ball is drawn over the background
    assert run_cli("view", sdf_run, "--screenshot", tmp_path / "top.png", "--camera", "top") == 0
    assert _png(tmp_path / "top.png").shape == (800, 800, 3)  # a camera's own size by default


def test_an_sdf_run_without_its_mesh_is_meshed_from_the_field(sdf_run, tmp_path):
    from fieldfit.viewer.registry import open_view

    run = tmp_path / "run"
    shutil.copytree(sdf_run, run)
    (run / "mesh.ply").unlink()
    view, with_file = open_view(run, "cpu"), open_view(sdf_run, "cpu")
    assert len(view.mesh.faces) > 0
    assert view.follow
    assert not with_file.follow
    camera = with_file.home(1.0).at(64, 64)
    assert _psnr(view.render(camera, "shaded"), with_file.render(camera, "shaded")) >= 25.0  # the same surface


def test_bsp_runs_show_their_convexes(bsp_live, tmp_path):
    from fieldfit.viewer.registry import open_view

    shot = tmp_path / "c.png"
    assert run_cli("view", bsp_live.path, "--screenshot", shot, "--size", "64x48") == 0
    img = _png(shot)
    colours = {tuple(c) for c in img.reshape(-1, 3)[::7]}
    assert len(colours) > 4  # background and shaded faces of several convexes
    # without convexes.ply (a run whose fit has not finished), the union is extracted from the checkpoint
    run = tmp_path / "run"
    shutil.copytree(bsp_live.path, run)
    (run / "convexes.ply").unlink()
    view, with_file = open_view(run, "cpu"), open_view(bsp_live.path, "cpu")
    assert view.follow
    assert not with_file.follow
    camera = with_file.home(4 / 3).at(64, 48)
    for mode in view.modes:
        assert _psnr(view.render(camera, mode), with_file.render(camera, mode)) >= 30.0, mode


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["radiance_live", "pronerf_live", "dnmp_live"])
def test_a_scene_camera_screenshot_is_the_methods_render(fixture, request, tmp_path, capsys):
    run = request.getfixturevalue(fixture).path
    shot = tmp_path / "t1.png"
    assert run_cli("view", run, "--screenshot", shot, "--camera", "test:1") == 0
    assert np.array_equal(_png(shot), _png(run / "renders" / "test_001.png")[..., :3])
    modes = LIVE[fixture][0]
    for mode in ("colour", "depth", "normals", "opacity"):
        code = run_cli("view", run, "--screenshot", tmp_path / f"{mode}.png", "--size", "24x20", "--mode", mode)
        assert code == (0 if mode in modes else 2), mode
        if code:
            assert "not a mode" in capsys.readouterr().err
        else:
            assert _png(tmp_path / f"{mode}.png").shape == (20, 24, 3)


@pytest.mark.slow
def test_forward_facing_runs_can_be_viewed(tmp_path):
    """An NDC (LLFF) run's config.json holds its infinite far as 1e308; loading it used to overflow float32."""
    from conftest import data_path

    run = tmp_path / "run"
    assert run_cli(data_path("fern_llff"), "--steps", "2", "--downscale", "16", "--resolution", "16", "--out", run) == 0
    shot = tmp_path / "shot.png"
    assert run_cli("view", run, "--screenshot", shot, "--camera", "test:0") == 0
    assert _psnr(_png(shot), _png(run / "renders" / "test_000.png")) >= 30.0


def test_a_scene_camera_in_the_session_is_the_models_render(radiance_run):
    """With density (3 steps leave the field empty): the session's frame at a snapped scene camera is the run's
    own render of that camera, in every mode the view has."""
    import fieldfit
    from fieldfit.viewer.registry import open_view
    from fieldfit.viewer.session import Session
    from fieldfit.viewer.views.base import to_uint8

    view = open_view(radiance_run, "cpu")
    view.model.field.density_shift = 0.0
    session = Session(view, overlay=False)
    preset = session.controls.snap_named("test:1")
    ours = session.frame(*preset.size)
    model = fieldfit.load(radiance_run, "cpu")
    model.field.density_shift = 0.0
    theirs = to_uint8(model.render(model.cameras("test")[1]).rgb)
    assert ours.std() > 5.0
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    pictures = {mode: view.render(session.camera.at(24, 24), mode) for mode in view.modes}
    assert all(img.shape == (24, 24, 3) and img.dtype == np.uint8 for img in pictures.values())
    assert pictures["depth"].std() > 0
    assert pictures["normals"].std() > 0
    assert len({img.tobytes() for img in pictures.values()}) == len(pictures)  # four different pictures


def test_turntable_of_a_loaded_run(sdf_run, image_run, tmp_path):
    import fieldfit
    from fieldfit.errors import InputError
    from fieldfit.viewer.turntable import turntable

    written, note = turntable(fieldfit.load(sdf_run, "cpu"), tmp_path / "turn.gif", 3, size=(64, 48))
    import imageio.v3 as iio

    frames = iio.imread(written)[..., :3].astype(int)
    assert written.suffix == ".gif"
    assert frames.shape == (3, 48, 64, 3)
    assert np.abs(frames[0] - frames[1]).mean() > 1.0
    assert frames[0].std() > 10
    with pytest.raises(InputError, match="no turntable"):
        turntable(fieldfit.load(image_run, "cpu"), tmp_path / "x.gif", 2)


def test_clear_errors(sdf_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cases = [((), ("no display", "--screenshot")),
             (("--screenshot", tmp_path / "x.png", "--camera", "test:3"), ("no such camera", "front")),
             (("--screenshot", tmp_path / "x.png", "--mode", "colour"), ("not a mode", "shaded"))]
    for args, needles in cases:
        assert run_cli("view", sdf_run, *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("fieldfit: error:"), err
        assert all(n in err[0] for n in needles), err[0]


# -- the window, under Xvfb ------------------------------------------------------------------
@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri)")
    for mod in ("glfw", "OpenGL"):
        pytest.importorskip(mod, reason=f"{mod} is not installed (pip install glfw PyOpenGL)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=[w], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


def _viewer(display, *args):
    env = dict(os.environ, DISPLAY=display, FIELDFIT_NO_TCMALLOC="1")
    return subprocess.Popen([sys.executable, "-m", "fieldfit", "view", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_window_draws_what_the_screenshot_shows(display, image_run, sdf_run, tmp_path):
    for run, size in ((image_run, "40x24"), (sdf_run, "96x64")):
        grab, shot = tmp_path / "grab.png", tmp_path / "shot.png"
        proc = _viewer(display, run, "--frames", "4", "--grab", grab, "--size", size, "--overlay", "off")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert run_cli("view", run, "--screenshot", shot, "--size", size) == 0
        assert _png(grab).shape == _png(shot).shape
        assert _psnr(_png(grab), _png(shot)) >= 40.0  # read back from OpenGL: the same picture


def _xdotool(display, *args):
    return subprocess.run(["xdotool", *map(str, args)], env=dict(os.environ, DISPLAY=display),
                          capture_output=True, text=True, timeout=60)


def _find_window(display, name, proc, timeout=120.0) -> str:
    """The X id of the window titled ``name``, once it is mapped and has the keyboard focus (keys sent to a
    window still being mapped are lost: the training-while-viewing test once waited 120 s for a P that
    never arrived); fails early when the process died first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = _xdotool(display, "search", "--onlyvisible", "--name", name).stdout.split()
        if found:
            _xdotool(display, "windowfocus", "--sync", found[0])
            if _xdotool(display, "getwindowfocus").stdout.strip() == found[0]:
                return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no focused window {name!r} after {timeout:.0f} s")


def test_keys_and_wheel_move_the_camera(display, sdf_run):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool): no way to send X events")
    from fieldfit.viewer.registry import open_view

    view = open_view(sdf_run, "cpu")
    front, home_distance = view.presets()[0].camera, view.home(1.5).distance
    proc = _viewer(display, sdf_run, "--size", "96x64", "--print-camera")
    try:
        wid = _find_window(display, "fieldfit view", proc)
        _xdotool(display, "key", "--delay", "50", "bracketright")  # ]: the first scene camera ("front")
        _xdotool(display, "keydown", "w")  # fly forward while held
        time.sleep(1.0)  # long enough for several frames on a loaded machine
        _xdotool(display, "keyup", "w")
        _xdotool(display, "mousemove", "--window", wid, "48", "32")
        _xdotool(display, "click", "--repeat", "2", "--delay", "50", "4")  # wheel up: zoom in
        time.sleep(0.3)
        _xdotool(display, "key", "Escape")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    cam = json.loads(out.strip().splitlines()[-1])
    c2w = np.array(cam["c2w"])
    np.testing.assert_allclose(c2w[:, :3], front.c2w[:, :3], atol=1e-9)  # snapped: front's rotation
    travel = c2w[:, 3] - front.c2w[:, 3]
    assert travel @ -front.c2w[:, 2] > 0.05 * home_distance  # W moved it forward
    assert cam["distance"] < 0.95 * home_distance  # the wheel zoomed in


def _wait_for(condition, timeout=120.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def test_training_while_viewing_with_pause(display, tmp_path):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool): no way to send X events")
    import imageio.v3 as iio

    y, x = np.mgrid[0:24, 0:32]
    iio.imwrite(tmp_path / "g.png", (np.stack([x / 31, y / 23, x * 0 + 0.5], -1) * 255).astype(np.uint8))
    env = dict(os.environ, DISPLAY=display, FIELDFIT_NO_TCMALLOC="1")
    proc = subprocess.Popen([sys.executable, "-m", "fieldfit", str(tmp_path / "g.png"), "--time-budget", "1.5",
                             "--batch", "768", "--out", str(tmp_path / "run"), "--view"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _find_window(display, "training", proc)
        log = tmp_path / "run" / "log"
        _xdotool(display, "key", "p")
        _wait_for(lambda: "training paused" in log.read_text())  # a second P sent too early would cancel it
        _xdotool(display, "key", "p")
        _wait_for((tmp_path / "run" / "metrics.json").is_file)  # training is over; the window stays open
        _xdotool(display, "key", "Escape")
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    text = log.read_text()
    assert "training paused at step" in text
    assert "training resumed" in text
    assert (tmp_path / "run" / "reconstruction.png").is_file()
