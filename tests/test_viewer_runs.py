"""The viewer on real (tiny) runs: screenshots, the no-display error, and the window under Xvfb.

Window tests need ``Xvfb`` (and ``xdotool`` for real key and mouse events); they skip with
the reason when those are not installed (Debian/Ubuntu: apt-get install xvfb xauth xdotool
libgl1 libglx-mesa0 libgl1-mesa-dri) or when glfw / PyOpenGL are missing (pip install glfw PyOpenGL).
"""

import json
import os
import shutil
import subprocess
import sys
import time

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


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    import imageio.v3 as iio

    d = tmp_path_factory.mktemp("viewer_image")
    y, x = np.mgrid[0:24, 0:40]
    img = np.stack([x / 39, y / 23, 0.5 + 0.5 * np.sin(x / 3.0) * np.cos(y / 2.0)], -1)
    iio.imwrite(d / "smooth.png", (img * 255).astype(np.uint8))
    assert run_cli(d / "smooth.png", "--steps", "50", "--batch", "960", "--out", d / "run") == 0
    return d / "run"


@pytest.fixture(scope="module")
def sdf_run(tmp_path_factory):
    import trimesh

    d = tmp_path_factory.mktemp("viewer_sdf")
    trimesh.creation.icosphere(subdivisions=3).export(d / "ball.obj")
    assert run_cli(d / "ball.obj", "--steps", "100", "--out", d / "run", "--samples", "20000", "--resolution", "32",
                   "--grid", "triplane", "--batch", "2048", "--lr", "0.03", "--max-res", "64", "--base-res", "32",
                   "--levels", "2", "--units", "16") == 0
    return d / "run"


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


def test_forward_facing_runs_can_be_viewed(tmp_path):
    """An NDC (LLFF) run's config.json holds its infinite far as 1e308; loading it used to overflow float32."""
    from conftest import data_path

    run = tmp_path / "run"
    assert run_cli(data_path("fern_llff"), "--steps", "2", "--downscale", "16", "--out", run) == 0
    shot = tmp_path / "shot.png"
    assert run_cli("view", run, "--screenshot", shot, "--camera", "test:0") == 0
    assert _psnr(_png(shot), _png(run / "renders" / "test_000.png")) >= 30.0


@pytest.fixture(scope="module")
def radiance_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("viewer_radiance")
    assert run_cli("blocks", "--steps", "3", "--resolution", "16", "--out", d / "run") == 0
    return d / "run"


def test_screenshot_of_a_test_camera_matches_the_methods_render(radiance_run, tmp_path):
    """The issue's check, on CPU: a scene camera in the viewer is the radiance method's render of it."""
    from fieldfit.methods.radiance_eval import render_frame
    from fieldfit.runs import Run
    from fieldfit.viewer.registry import open_view
    from fieldfit.viewer.session import Session
    from fieldfit.viewer.views.base import to_uint8

    out = tmp_path / "t1.png"
    assert run_cli("view", radiance_run, "--screenshot", out, "--camera", "test:1") == 0
    assert _psnr(_png(out), _png(radiance_run / "renders" / "test_001.png")) >= 30.0
    # 3 steps leave the field empty: give it density so the picture has content, then compare again
    view = open_view(Run.open(radiance_run))
    view.model.field.density_shift = 0.0
    session = Session(view, overlay=False)
    preset = session.controls.snap_named("test:1")
    ours = session.frame(*preset.size)
    frame = view.scene.frames[view.scene.split("test")[1]]
    theirs = to_uint8(render_frame(view.model, view.scene, frame, view.march, "cpu")[0])
    assert ours.std() > 5.0 and ours.shape == theirs.shape
    assert _psnr(ours, theirs) >= 30.0
    for mode in view.modes[1:]:
        assert session.view.render(session.camera, 24, 24, mode).shape == (24, 24, 3)


def test_clear_errors(sdf_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    cases = [((), ("no display", "--screenshot")),
             (("--screenshot", tmp_path / "x.png", "--camera", "test:3"), ("no such camera", "front")),
             (("--screenshot", tmp_path / "x.png", "--mode", "colour"), ("not a mode", "shaded"))]
    for args, needles in cases:
        assert run_cli("view", sdf_run, *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fieldfit: error:"), err
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
    from fieldfit.runs import Run
    from fieldfit.viewer.registry import open_view

    view = open_view(Run.open(sdf_run))
    front, home_distance = view.presets()[0], view.home(1.5).distance
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
        wid = _find_window(display, "training", proc)
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
    assert "training paused at step" in text and "training resumed" in text
    assert (tmp_path / "run" / "reconstruction.png").is_file()
