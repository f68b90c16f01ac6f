"""Hostile input, catalogued (issue 28, items 4 and 6): options out of range, degenerate inputs, decoders' colour
modes and bit depths, hand-edited run files.

Every case runs ``fieldfit.cli.main`` in this process and asserts what a user sees: exit 2 with at most two lines
on stderr naming the value or the file and no traceback (or, where a fit is the right answer, exit 0 and a sane
result), with the user's files byte-identical afterwards. Runs to work on are made once per module (a rings image
run and a csg shape run, a second or two each); each case works on its own copy.
"""

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from fieldfit.cli import main

TINY_IMAGE = ("--steps", "5", "--levels", "2", "--max-res", "32", "--units", "8")
TINY_SHAPE = ("--steps", "30", "--lr", "0.05", "--levels", "2", "--max-res", "16", "--units", "8", "--train-points",
              "2000", "--thin-frac", "0", "--iou-points", "2000", "--resolution", "16")  # a surface in 30 steps
HUGE = str(10**9)
NO_HANG_S = 10.0  # CPU seconds a case may take (the issue: each under 10 s; CPU time, as others load the machine)


# -- helpers --------------------------------------------------------------------------------------------------------
def cli(*args, cwd) -> tuple[int, str, str]:
    """``fieldfit ARGS`` in this process, from folder ``cwd``: (exit code, stdout, stderr). argparse's exits are
    exits; any other exception propagates (the traceback a user would see)."""
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    t0 = time.process_time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = e.code
    finally:
        os.chdir(here)
    assert time.process_time() - t0 < NO_HANG_S, args
    return code, out.getvalue(), err.getvalue()


def one_line(result, *names):
    """Exit 2, one line on stderr (two with argparse's usage line), no traceback, every name in it."""
    code, _, err = result
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2, err
    for n in names:
        assert str(n) in err, (n, err)


def fitted(result):
    """Exit 0, no traceback, at most two lines on stderr."""
    code, out, err = result
    assert "Traceback" not in err, err
    assert code == 0, (code, err, out[-500:])
    assert len(err.strip().splitlines()) <= 2, err


def snapshot(*folders) -> dict:
    """relative path -> sha256 of every file under ``folders`` (what must stay byte-identical)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def no_run_left(cwd):
    """A refused fit leaves no run folder under ``cwd/runs``."""
    runs = Path(cwd) / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def png16(path, rgb: np.ndarray) -> Path:
    """Write uint16 [H,W,3] as a 16-bit RGB PNG (written by hand: Pillow cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    head = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw)) +
                     chunk(b"IEND", b""))
    return path


def noise(h, w, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


# -- the runs the subcommand cases work on --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{"image": a rings run, "shape": a run of a small sphere mesh}, fitted once for the module."""
    import trimesh

    root = tmp_path_factory.mktemp("runs")
    trimesh.creation.icosphere(subdivisions=2).export(root / "ball.obj")
    fitted(cli("rings", *TINY_IMAGE, "--out", root / "image", cwd=root))
    fitted(cli(root / "ball.obj", *TINY_SHAPE, "--out", root / "shape", cwd=root))
    return {"image": root / "image", "shape": root / "shape"}


def copy_run(made, kind, tmp_path) -> Path:
    return Path(shutil.copytree(made[kind], tmp_path / f"run-{kind}"))


# -- fit options ----------------------------------------------------------------------------------------------------
FIT_OPTIONS = [
    pytest.param("rings", ("--time-budget", "-1"), "--time-budget -1", id="time-budget-negative"),
    pytest.param("rings", ("--time-budget", "nan"), "--time-budget nan", id="time-budget-nan"),
    pytest.param("rings", ("--time-budget", "inf"), "--time-budget inf", id="time-budget-inf"),
    pytest.param("rings", ("--time-budget", "0"), "--time-budget 0", id="time-budget-zero"),
    pytest.param("rings", ("--time-budget", "soon"), "--time-budget", id="time-budget-word"),
    pytest.param("rings", ("--steps", "5", "--time-budget", "nan"), "--time-budget nan", id="nan-with-steps"),
    pytest.param("rings", ("--steps", "-5"), "--steps -5", id="steps-negative"),
    pytest.param("rings", ("--steps", "0"), "--steps 0", id="steps-zero"),
    pytest.param("rings", ("--steps", "2.5"), "--steps", id="steps-fraction"),
    pytest.param("rings", ("--device", "cuda:7"), "--device cuda:7", id="device-cuda7"),
    pytest.param("rings", ("--device", "foo"), "--device foo", id="device-foo"),
    pytest.param("rings", ("--seed", "-1"), ("--seed", "-1"), id="seed-negative"),
    pytest.param("rings", ("--seed", str(2**70)), "--seed", id="seed-huge"),
    pytest.param("rings", ("--batch", "-1"), "--batch -1", id="batch-negative"),
    pytest.param("rings", ("--batch", "0"), "--batch 0", id="batch-zero"),
    pytest.param("rings", ("--batch", HUGE), f"--batch {HUGE}", id="batch-huge"),
    pytest.param("rings", ("--levels", "0"), "--levels 0", id="levels-zero"),
    pytest.param("rings", ("--kernel", "foo"), "--kernel foo", id="kernel-foo"),
    pytest.param("rings", ("--max-res", "0"), "--max-res 0", id="max-res-zero"),
    pytest.param("rings", ("--max-res", HUGE), f"--max-res {HUGE}", id="max-res-huge"),
    pytest.param("rings", ("--max-res", "60000", "--levels", "1"), "--max-res 60000", id="max-res-image-memory"),
    pytest.param("rings", ("--base-res", HUGE), f"--base-res {HUGE}", id="base-res-huge"),
    pytest.param("rings", ("--units", HUGE), f"--units {HUGE}", id="units-huge"),
    pytest.param("rings", ("--lr", "nan"), "--lr nan", id="lr-nan"),
    pytest.param("rings", ("--lr", "-1"), "--lr -1", id="lr-negative"),
    pytest.param("rings", ("--lr", "1e300"), "--lr 1e+300", id="lr-huge"),
    pytest.param("rings", ("--grid-ratio", "0"), "--grid-ratio 0", id="grid-ratio-zero"),
    pytest.param("rings", ("--grid", "triplane"), "--grid triplane", id="grid-triplane-on-image"),
    pytest.param("rings", ("--grid", "densehash"), "--grid densehash", id="grid-densehash-on-image"),
    pytest.param("csg", ("--grid", "densehash"), "--fine-levels", id="grid-densehash-without-fine-levels"),
    pytest.param("csg", ("--max-res", "4096"), "--max-res 4096", id="max-res-shape-memory"),
    pytest.param("csg", ("--train-points", str(10**12)), "--train-points", id="train-points-huge"),
    pytest.param("csg", ("--iou-points", str(10**12)), "--iou-points", id="iou-points-huge"),
    pytest.param("csg", ("--thin-frac", "2"), "--thin-frac 2", id="thin-frac-above-one"),
    pytest.param("csg", ("--resolution", "100000"), "--resolution 100000", id="resolution-huge"),
    pytest.param("csg", ("--method", "bsp", "--convexes", "0"), "--convexes 0", id="bsp-convexes-zero"),
    pytest.param("csg", ("--method", "bsp", "--convexes", HUGE), f"--convexes {HUGE}", id="bsp-convexes-huge"),
    pytest.param("csg", ("--method", "bsp", "--planes", HUGE), f"--planes {HUGE}", id="bsp-planes-huge"),
    pytest.param("blocks", ("--downscale", "0"), "--downscale 0", id="radiance-downscale-zero"),
    pytest.param("blocks", ("--batch", HUGE), f"--batch {HUGE}", id="radiance-batch-huge"),
    pytest.param("blocks", ("--distortion", "inf"), "--distortion inf", id="radiance-distortion-inf"),
    pytest.param("blocks", ("--method", "pronerf", "--samples", "0"), "--samples 0", id="pronerf-samples-zero"),
    pytest.param("blocks", ("--method", "pronerf", "--hidden", HUGE), f"--hidden {HUGE}", id="pronerf-hidden-huge"),
    pytest.param("blocks", ("--method", "dnmp", "--voxel", "nan"), "--voxel nan", id="dnmp-voxel-nan"),
    pytest.param("blocks", ("--method", "dnmp", "--points-frac", "-0.5"), "--points-frac -0.5",
                 id="dnmp-points-frac-negative"),
]


@pytest.mark.parametrize(("scene", "args", "names"), FIT_OPTIONS)
def test_a_fit_option_out_of_range_is_refused_before_work(tmp_path, scene, args, names):
    budget = () if "--time-budget" in args else ("--steps", "3")  # a case not refused then ends soon
    one_line(cli(scene, *budget, *args, cwd=tmp_path), *((names,) if isinstance(names, str) else names))
    no_run_left(tmp_path)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "x"])
def test_a_bad_seed_from_python_is_refused_before_work(tmp_path, monkeypatch, seed):
    import fieldfit
    from fieldfit.errors import InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="seed"):
        fieldfit.fit("rings", steps=3, seed=seed, device="cpu")
    no_run_left(tmp_path)


def test_config_fields_have_bounds_and_python_settings_must_be_finite():
    """Every int or float flag of every method has both bounds (so no value means "forever" or "all memory");
    a Python-only float setting (``fieldfit.fit(..., grid_cells=nan)``) is checked for finiteness too."""
    from fieldfit.config import config_flags, given_options
    from fieldfit.errors import InputError
    from fieldfit.methods import bsp, dnmp, pronerf, rbf

    for package in (rbf, bsp, dnmp, pronerf):
        for cls in package.CONFIGS.values():
            for name, f in config_flags(cls).items():
                if f.type in (int, float):
                    assert f.low is not None, (cls.__name__, name)
                    assert f.high is not None, (cls.__name__, name)
    with pytest.raises(InputError, match="grid_cells"):
        given_options(rbf.CONFIGS["radiance"], {"grid_cells": math.nan}, "rbf radiance")


# -- subcommand options ---------------------------------------------------------------------------------------------
SUBCOMMANDS = [
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--frames", "0"), "--frames 0",
                 id="render-frames-zero"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--frames", "-3"), "--frames -3",
                 id="render-frames-negative"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--frames", HUGE), f"--frames {HUGE}",
                 id="render-frames-huge"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--frames", "many"), "--frames",
                 id="render-frames-word"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--size", "0x0"), "--size",
                 id="render-size-not-an-option"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--path", "zigzag"), "zigzag",
                 id="render-path-unknown"),
    pytest.param("shape", ("render", "{run}"), "--out", id="render-without-out"),
    pytest.param("shape", ("render", "{run}", "--out", "{tmp}/v.mp4", "--device", "cuda:7"), "--device cuda:7",
                 id="render-device-cuda7"),
    pytest.param("image", ("view", "{run}", "--size", "100000x100000", "--screenshot", "{tmp}/x.png"),
                 "--size 100000x100000", id="view-size-huge"),
    pytest.param("image", ("view", "{run}", "--size", "abc", "--screenshot", "{tmp}/x.png"), "--size abc",
                 id="view-size-word"),
    pytest.param("image", ("view", "{run}", "--size", "0x0", "--screenshot", "{tmp}/x.png"), "--size 0x0",
                 id="view-size-zero"),
    pytest.param("image", ("view", "{run}", "--fps", "nan", "--screenshot", "{tmp}/x.png"), "--fps nan",
                 id="view-fps-nan"),
    pytest.param("image", ("view", "{run}", "--scale", "0", "--screenshot", "{tmp}/x.png"), "--scale 0",
                 id="view-scale-zero"),
    pytest.param("image", ("view", "{run}", "--scale", "nan", "--screenshot", "{tmp}/x.png"), "--scale nan",
                 id="view-scale-nan"),
    pytest.param("image", ("view", "{run}", "--threads", "-1", "--screenshot", "{tmp}/x.png"), "--threads -1",
                 id="view-threads-negative"),
    pytest.param("image", ("view", "{run}", "--camera", "test:99", "--screenshot", "{tmp}/x.png"), "test:99",
                 id="view-camera-unknown"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--resolution", "100000"),
                 "--resolution 100000", id="export-resolution-huge"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--resolution", "0"), "--resolution 0",
                 id="export-resolution-zero"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.xyz"), "m.xyz", id="export-mesh-extension"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--via", "bsp", "--convexes", "0"),
                 "--convexes 0", id="export-convexes-zero"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--via", "bsp", "--convexes", HUGE),
                 f"--convexes {HUGE}", id="export-convexes-huge"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--via", "bsp", "--steps", "0"),
                 "--steps 0", id="export-steps-zero"),
    pytest.param("shape", ("export", "{run}", "--mesh", "{tmp}/m.ply", "--via", "bsp", "--time-budget", "nan"),
                 "--time-budget nan", id="export-time-budget-nan"),
    pytest.param("shape", ("eval", "{tmp}/notes"), "notes", id="eval-not-a-run-folder"),
    pytest.param("shape", ("eval", "{tmp}/notes/todo.txt"), "todo.txt", id="eval-a-file"),
    pytest.param("shape", ("eval", "{tmp}/nowhere"), "nowhere", id="eval-missing-folder"),
    pytest.param("shape", ("export", "{tmp}/notes", "--mesh", "{tmp}/m.ply"), "notes", id="export-not-a-run-folder"),
    pytest.param("shape", ("eval", "{run}", "--device", "foo"), "--device foo", id="eval-device-foo"),
]


@pytest.mark.parametrize(("kind", "argv", "names"), SUBCOMMANDS)
def test_a_subcommand_option_out_of_range_is_refused_in_one_line(made, tmp_path, kind, argv, names):
    run = copy_run(made, kind, tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("my notes\n")
    before = snapshot(tmp_path)
    argv = [a.format(run=run, tmp=tmp_path) for a in argv]
    one_line(cli(*argv, cwd=tmp_path), names)
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


# -- hand-edited run files ------------------------------------------------------------------------------------------
def _edit_config(change):
    def edit(run):
        cfg = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps(change(cfg)))

    return edit


def _without(key):
    return _edit_config(lambda cfg: {k: v for k, v in cfg.items() if k != key})


def _write(name, data: bytes):
    return lambda run: (run / name).write_bytes(data)


def _truncate(name):
    def edit(run):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])

    return edit


GARBAGE = bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8))
EDITS = {
    "config-not-json": (_write("config.json", b'{"method": "rbf", '), "config.json"),
    "config-a-list": (_write("config.json", b"[1, 2, 3]\n"), "config.json"),
    "config-binary": (_write("config.json", GARBAGE), "config.json"),
    "config-without-method": (_without("method"), "config.json"),
    "config-unknown-method": (_edit_config(lambda c: {**c, "method": "nerfacto"}), "nerfacto"),
    "config-unknown-task": (_edit_config(lambda c: {**c, "task": "audio"}), "audio"),
    "config-without-field": (_without("field"), "config.json"),
    "config-field-a-number": (_edit_config(lambda c: {**c, "field": 3}), "config.json"),
    "checkpoint-truncated": (_truncate("checkpoint.safetensors"), "checkpoint.safetensors"),
    "checkpoint-garbage": (_write("checkpoint.safetensors", GARBAGE), "checkpoint.safetensors"),
    "checkpoint-empty": (_write("checkpoint.safetensors", b""), "checkpoint.safetensors"),
    "checkpoint-missing": (lambda run: (run / "checkpoint.safetensors").unlink(), "checkpoint.safetensors"),
    "metrics-garbage": (_write("metrics.json", GARBAGE), "metrics.json"),
    "metrics-a-list": (_write("metrics.json", b"[]\n"), "metrics.json"),
}
COMMANDS = {
    "eval": ("eval", "{run}"),
    "export": ("export", "{run}", "--mesh", "{tmp}/out.ply"),
    "render": ("render", "{run}", "--out", "{tmp}/frames", "--frames", "1"),
    "view": ("view", "{run}", "--screenshot", "{tmp}/shot.png", "--size", "32x24"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("edit", list(EDITS))
def test_a_hand_edited_run_file_is_one_line(made, tmp_path, edit, command):
    run = copy_run(made, "shape", tmp_path)
    change, name = EDITS[edit]
    change(run)
    before = snapshot(tmp_path)
    argv = [a.format(run=run, tmp=tmp_path) for a in COMMANDS[command]]
    one_line(cli(*argv, cwd=tmp_path), name)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_untouched_run_works_with_every_command(made, tmp_path, command):
    """The control of the case above: the same commands on the run as fitted exit 0."""
    run = copy_run(made, "shape", tmp_path)
    argv = [a.format(run=run, tmp=tmp_path) for a in COMMANDS[command]]
    fitted(cli(*argv, cwd=tmp_path))


# -- input files ----------------------------------------------------------------------------------------------------
def _image(h, w):
    def make(d):
        iio.imwrite(d / f"pic{w}x{h}.png", noise(h, w))
        return d / f"pic{w}x{h}.png"

    return make


def _png_truncated(d):
    iio.imwrite(d / "cut.png", noise(32, 32))
    data = (d / "cut.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    return d / "cut.png"


def _png_garbage(d):
    iio.imwrite(d / "junk.png", noise(16, 16))
    data = bytearray((d / "junk.png").read_bytes())
    data[60:] = GARBAGE[: len(data) - 60]  # the header stays, the pixel data does not
    (d / "junk.png").write_bytes(bytes(data))
    return d / "junk.png"


def _png_all_garbage(d):
    (d / "noise.png").write_bytes(GARBAGE)
    return d / "noise.png"


def _png_bad_crc(d):
    iio.imwrite(d / "crc.png", noise(16, 16))
    data = bytearray((d / "crc.png").read_bytes())
    at = data.index(b"IDAT") + 10
    data[at] ^= 0xFF  # one flipped byte in the compressed pixels
    (d / "crc.png").write_bytes(bytes(data))
    return d / "crc.png"


def _mesh(name, vertices, faces):
    def make(d):
        lines = [f"v {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in vertices]
        lines += [f"f {a} {b} {c}" for a, b, c in faces]
        (d / name).write_text("\n".join(lines) + "\n")
        return d / name

    return make


TETRA_F = [(1, 3, 2), (1, 2, 4), (2, 3, 4), (1, 4, 3)]
TETRA = np.array([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], np.float64)


def _pose(direction, distance):
    """A camera-to-world matrix at ``distance`` along ``direction`` looking at the origin (OpenGL: the camera looks
    along -z)."""
    back = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    p = back * distance
    right = np.cross([0.0, 0.0, 1.0], back)
    right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0, 0])
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, p
    return m.tolist()


def _transforms(flavour="blender", frames=3, angle=0.7, at=4.0, image=None):
    """A posed-image folder: ``frames`` 8x8 images on a circle of radius ``at`` (``image(d, k)`` writes frame k)."""

    def make(d):
        scene = d / "scene"
        scene.mkdir()
        entries = []
        for k in range(frames):
            a = 2 * math.pi * k / max(frames, 1)
            (image or (lambda s, k: iio.imwrite(s / f"f{k}.png", noise(8, 8, k))))(scene, k)
            entries.append({"file_path": f"f{k}.png", "transform_matrix": _pose((math.cos(a), math.sin(a), 0.5), at)})
        name = "transforms_train.json" if flavour == "blender" else "transforms.json"
        (scene / name).write_text(json.dumps({"camera_angle_x": angle, "frames": entries}))
        return scene

    return make


def _cut_image(scene, k):
    iio.imwrite(scene / f"f{k}.png", noise(8, 8, k))
    if k == 1:
        data = (scene / f"f{k}.png").read_bytes()
        (scene / f"f{k}.png").write_bytes(data[: len(data) // 2])


INPUTS = [
    pytest.param(_image(1, 1), (), "pic1x1.png", id="image-1x1"),
    pytest.param(_image(1, 40), (), "pic40x1.png", id="image-40x1"),
    pytest.param(_png_truncated, (), "cut.png", id="png-truncated"),
    pytest.param(_png_garbage, (), "junk.png", id="png-garbage-pixels"),
    pytest.param(_png_bad_crc, (), "crc.png", id="png-flipped-byte"),
    pytest.param(_png_all_garbage, (), "noise.png", id="png-all-garbage"),
    pytest.param(_transforms(frames=1), (), ("transforms_train.json", "two"), id="transforms-one-frame"),
    pytest.param(_transforms("nerfstudio", frames=1), (), ("transforms.json", "two"), id="nerfstudio-one-frame"),
    pytest.param(_transforms(frames=0), (), "transforms_train.json", id="transforms-no-frames"),
    pytest.param(_transforms(angle=math.pi), (), ("transforms_train.json", "camera_angle_x"), id="transforms-angle-pi"),
    pytest.param(_transforms(angle=4.0), (), ("transforms_train.json", "camera_angle_x"),
                 id="transforms-angle-above-pi"),
    pytest.param(_transforms(at=1e200), (), ("transforms_train.json", "camera position"),
                 id="transforms-cameras-at-1e200"),
    pytest.param(_transforms("nerfstudio", at=1e200), (), ("transforms.json", "camera position"),
                 id="nerfstudio-cameras-at-1e200"),
    pytest.param(_transforms(image=_cut_image), (), "f1.png", id="transforms-truncated-frame"),
    pytest.param(_mesh("line.obj", [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)], TETRA_F), (),
                 ("line.obj", "zero area"), id="mesh-collinear"),
    pytest.param(_mesh("point.obj", [(1, 2, 3)] * 4, TETRA_F), (), ("point.obj", "same point"), id="mesh-one-point"),
    pytest.param(_mesh("overflow.obj", [(-1.5e308, 0, 0), (1.5e308, 0, 0), (0, 1e308, 0), (0, 0, 1e308)], TETRA_F),
                 (), "overflow.obj", id="mesh-box-overflows"),
    pytest.param(_mesh("huge.obj", TETRA * 1e300, TETRA_F), (), ("huge.obj", "1e+300"), id="mesh-at-1e300"),
    pytest.param(_mesh("tiny.obj", TETRA * 1e-300, TETRA_F), (), ("tiny.obj", "1e-300"), id="mesh-at-1e-300"),
    pytest.param(_mesh("subnormal.obj", TETRA * 1e-310, TETRA_F), (), "subnormal.obj", id="mesh-box-subnormal"),
]


@pytest.mark.parametrize(("make", "args", "names"), INPUTS)
def test_a_degenerate_or_broken_input_is_refused_in_one_line(tmp_path, make, args, names):
    (tmp_path / "in").mkdir()
    scene = make(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    result = cli(scene, "--steps", "3", *args, cwd=tmp_path)
    one_line(result, *((names,) if isinstance(names, str) else names))
    assert "plugin" not in result[2]  # no decoder's advice to install plugins
    assert snapshot(tmp_path / "in") == before
    no_run_left(tmp_path)


def _text_png(d):
    (d / "notes.png").write_text("a shopping list, not a picture\n")
    return d / "notes.png"


def _empty_jpg(d):
    (d / "empty.jpg").write_bytes(b"")
    return d / "empty.jpg"


def _text_frame(scene, k):
    iio.imwrite(scene / f"f{k}.png", noise(8, 8, k))
    if k == 1:
        (scene / f"f{k}.png").write_text("not a picture")


UNDECODABLE = [
    pytest.param(_png_truncated, "cut.png", "truncated", id="png-truncated"),
    pytest.param(_text_png, "notes.png", "not a readable .png file", id="text-named-png"),
    pytest.param(_empty_jpg, "empty.jpg", "empty", id="jpg-zero-bytes"),
    pytest.param(_transforms(image=_text_frame), "f1.png", "not a readable .png file", id="transforms-text-frame"),
]


@pytest.mark.parametrize(("make", "name", "what"), UNDECODABLE)
def test_an_undecodable_image_is_exactly_one_line_and_the_decoders_advice_goes_to_the_log(tmp_path, make, name, what):
    (tmp_path / "in").mkdir()
    scene = make(tmp_path / "in")
    (tmp_path / "mine").mkdir()  # the user's own folder: kept, so its log keeps what the decoder said
    code, out, err = cli(scene, "--steps", "3", "--out", tmp_path / "mine", cwd=tmp_path)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0], lines[0]
    assert what in lines[0], lines[0]
    assert "replace the file" in lines[0] or "re-export" in lines[0], lines[0]
    assert "pip install imageio" not in out + err  # imageio's plugin advice never reaches the terminal
    log = (tmp_path / "mine" / "log").read_text()
    assert lines[0].removeprefix("fieldfit: error: ") in log
    if name != "empty.jpg":  # an empty file: nothing was decoded, so no decoder spoke
        assert "Error" in log.split(lines[0].removeprefix("fieldfit: error: "))[1]  # its message, in full, after


SMALL_FITS = [
    pytest.param(_image(2, 2), TINY_IMAGE, id="image-2x2"),
    pytest.param(_image(5, 7), TINY_IMAGE, id="image-7x5"),
    pytest.param(_image(2, 2), ("--steps", "5"), id="image-2x2-default-grid"),
    pytest.param(_mesh("far.obj", TETRA + 1e6, TETRA_F), TINY_SHAPE, id="mesh-far-from-origin",
                 marks=pytest.mark.slow),  # the shape metrics: ~3 s of CPU
    pytest.param(_mesh("small.obj", TETRA * 1e-20, TETRA_F), TINY_SHAPE, id="mesh-at-1e-20", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("make", "args"), SMALL_FITS)
def test_a_small_valid_input_fits_with_a_sane_result(tmp_path, make, args):
    (tmp_path / "in").mkdir()
    scene = make(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    fitted(cli(scene, *args, "--out", tmp_path / "run", cwd=tmp_path))
    assert snapshot(tmp_path / "in") == before
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    if m["task"] == "image":
        h, w = iio.imread(scene).shape[:2]
        assert iio.imread(tmp_path / "run" / "reconstruction.png").shape[:2] == (h, w)
        assert math.isfinite(m["psnr"]) or m["psnr"] == 1e308, m  # 1e308: a perfect fit (inf in JSON)
        assert -1.0 <= m["ssim"] <= 1.0, m
    else:
        from fieldfit.mesh.io import load_mesh

        src = load_mesh(scene).vertices
        out = load_mesh(tmp_path / "run" / "mesh.ply").vertices  # in the input's own frame and units
        lo, hi = src.min(0), src.max(0)
        assert np.all(out >= lo - (hi - lo)), (out.min(0), lo, hi)
        assert np.all(out <= hi + (hi - lo)), (out.max(0), lo, hi)


# -- decoders: colour modes and bit depths --------------------------------------------------------------------------
def test_a_cmyk_jpeg_is_read_as_rgb(tmp_path):
    from fieldfit.scenes._io import decode_image, read_image
    from fieldfit.scenes.inputs import load_image

    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[:, :4, 0] = 255  # cyan on the left, white on the right
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rgb = decode_image(tmp_path / "cmyk.jpg")
    assert rgb.shape == (8, 8, 3)
    assert rgb.dtype == np.uint8
    assert np.abs(rgb[:, :2].astype(int) - (0, 255, 255)).max() < 24, rgb[0, 0]
    assert np.abs(rgb[:, -2:].astype(int) - (255, 255, 255)).max() < 24, rgb[0, -1]
    assert load_image(tmp_path / "cmyk.jpg").shape == (8, 8, 3)
    assert read_image(tmp_path / "cmyk.jpg", tmp_path, "frame 0").shape == (8, 8, 3)
    fitted(cli(tmp_path / "cmyk.jpg", *TINY_IMAGE, "--out", tmp_path / "run", cwd=tmp_path))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["channels"] == 3


def test_a_16_bit_png_keeps_its_low_byte(tmp_path):
    from fieldfit.scenes._io import decode_image, read_image
    from fieldfit.scenes.inputs import load_image

    rgb = np.full((4, 6, 3), 0x1200, np.uint16)
    rgb[:, 3:] += 0x0034  # the right half differs from the left in the low byte only
    rgb[0, 0] = (0, 0x7FFF, 0xFFFF)
    png16(tmp_path / "deep.png", rgb)
    got = decode_image(tmp_path / "deep.png")
    assert got.dtype == np.uint16
    assert np.array_equal(got, rgb)
    for img in (read_image(tmp_path / "deep.png", tmp_path, "frame 0"), load_image(tmp_path / "deep.png")):
        assert img.dtype == np.float32
        assert np.allclose(img * 65535.0, rgb, atol=0.02)
        assert img[1, 4, 0] > img[1, 1, 0]  # read as 8 bits, both would be 0x12 / 255


def test_a_16_bit_png_fits_with_three_channels(tmp_path):
    png16(tmp_path / "deep.png", (np.random.default_rng(1).random((6, 8, 3)) * 65535).astype(np.uint16))
    fitted(cli(tmp_path / "deep.png", *TINY_IMAGE, "--out", tmp_path / "run", cwd=tmp_path))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["channels"] == 3
