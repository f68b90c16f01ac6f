"""The fieldfit command line (a thin layer over ``fieldfit.api``).

    fieldfit SCENE --method rbf            fit (SCENE: image, mesh, posed-image folder, built-in name)
    fieldfit export RUN --mesh out.ply     a watertight mesh (.ply .obj .stl .glb); --via bsp: low-poly convexes;
                                           --faces N: decimated; --points out.ply; --parts out.glb | DIR/
    fieldfit render RUN --path orbit --out orbit.mp4   (--camera-path path.json, --pass rgb|depth|normal)
    fieldfit eval RUN                      metrics again, from the checkpoint
    fieldfit view RUN                      the viewer window (--web: in a browser, e.g. on a remote machine)
    fieldfit scenes                        list the built-in scenes
    fieldfit poses PHOTOS_OR_VIDEO --out SCENE   camera poses by structure-from-motion (pip install "fieldfit[sfm]")
    fieldfit SCENE --blocks AxB            a large scene as overlapping blocks under one parent run

A method's flags come from its Config dataclasses (``fieldfit/methods/<method>/config.py``): ``fieldfit
--method bsp --help`` lists bsp's; a flag another method or task owns is an error (exit 2) naming the valid ones.
"""

import argparse
import errno
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from .args import Parser
from .errors import FitError, InputError, Silent, Stopped

SUBCOMMANDS = ("export", "render", "eval", "view", "scenes", "poses")
# errno values of a disk or a folder refusing work (full, read-only, not ours): one line, exit 2, no traceback
SYSTEM_ERRORS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EIO)
TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4")
RANK0_GRACE_S = 10.0  # how long a rank other than 0 waits for rank 0 to report an error they share
MAX_FRAMES = 2000  # render: frames of one video (they are held in memory until written)


def _base_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = Parser(prog="fieldfit", description="Fit a neural field to SCENE.", add_help=add_help,
                                epilog="Other commands: " + ", ".join(SUBCOMMANDS) + " (fieldfit COMMAND -h). "
                                       "fieldfit --method M --help lists method M's options.")
    p.add_argument("scene", nargs="?", help="image, mesh, posed-image folder, or built-in scene (fieldfit scenes)")
    p.add_argument("--method", help="rbf (default) | bsp | dnmp | pronerf")
    p.add_argument("--time-budget", type=float, help="seconds of optimisation (default: the method's)")
    p.add_argument("--steps", type=int, help="optimisation steps (instead of a time budget)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", help="run folder (default runs/<scene>-<method>-<time>); must be new or empty")
    p.add_argument("--overwrite", action="store_true",
                   help="fit into a non-empty --out folder: the files a fit writes there (config.json, checkpoint, "
                        "metrics, log, meshes, renders/) are removed first, other files are left alone")
    p.add_argument("--seed", type=int, default=0, help="random seed, 0 .. 2^32 - 1")
    p.add_argument("--resume", metavar="RUN", help="continue the training of RUN")
    p.add_argument("--view", nargs="?", const="native", metavar="native|web",
                   help="view while training: --view opens the viewer window, --view web serves it to a browser")
    p.add_argument("--port", type=int, help="--view web: the port (default 7007)")
    p.add_argument("--host", help="--view web: the address to listen on (default 127.0.0.1: reach it through ssh -L)")
    p.add_argument("--log", default="csv", choices=("csv", "tensorboard"),
                   help="csv: RUN/metrics.csv (always written); tensorboard: also event files in RUN/tensorboard "
                        "(pip install 'fieldfit[tensorboard]')")
    p.add_argument("--log-image-every", type=float, default=60.0, metavar="SECONDS",
                   help="--log tensorboard: a test-view picture every SECONDS of training (image and radiance fits)")
    p.add_argument("--blocks", metavar="AxB",
                   help="a large world-space scene as A x B overlapping blocks, each its own rbf run, under one "
                        "parent run (fieldfit SCENE --blocks 2x2 -h lists its options)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="train data-parallel on N GPUs of this machine (torchrun --nproc_per_node N -m fieldfit ...; "
                        "on CPUs or several machines call torchrun yourself, see README)")
    return p


def check_view(args) -> None:
    """--view native|web, --port and --host checked (before the run folder is made): for web, viser is installed
    and the port is free. ``fieldfit --view SCENE`` still means the window on SCENE."""
    if args.view not in (None, "native", "web"):
        if args.scene is not None:
            raise InputError(f"--view {args.view}", "expected native or web",
                             "--view (the window) or --view web (a browser)")
        args.scene, args.view = args.view, "native"
    if args.view != "web":
        for flag, given in (("--port", args.port), ("--host", args.host)):
            if given is not None:
                raise InputError(flag, "only goes with --view web", f"add --view web, or drop {flag}")
        return
    from fieldfit.viewer.web_net import DEFAULT_HOST, DEFAULT_PORT, check_port, require_viser

    args.host = DEFAULT_HOST if args.host is None else args.host
    args.port = DEFAULT_PORT if args.port is None else args.port
    require_viser()
    check_port(args.host, args.port)


def method_flags(package) -> dict:
    """name -> Flag of every option of the method's Configs (the union over its tasks)."""
    from .config import config_flags

    out = {}
    for cls in package.CONFIGS.values():
        for name, flag in config_flags(cls).items():
            out.setdefault(name, flag)
    return out


def _fit_parser(method: str) -> tuple[argparse.ArgumentParser, dict]:
    from .registry import get_method

    p = _base_parser()
    flags = method_flags(get_method(method))
    group = p.add_argument_group(f"options of --method {method}")
    for name, f in sorted(flags.items()):
        default = "" if f.default is None else f" (default {f.default})"
        if f.type is bool:  # --flag alone means on
            group.add_argument(f.flag, dest=f"opt_{name}", metavar="on|off", nargs="?", const="on",
                               help=f.help + default)
        else:
            group.add_argument(f.flag, dest=f"opt_{name}", metavar=f.type.__name__.upper(), help=f.help + default)
    return p, flags


def cmd_fit(argv) -> int:
    from . import dist
    from .api import open_run, prepare

    pre, _ = _base_parser(add_help=False).parse_known_args(argv)
    if pre.blocks is not None:
        return _blocks(argv)
    method = pre.method or (open_run(pre.resume).config()["method"] if pre.resume else "rbf")
    parser, flags = _fit_parser(method)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        listing = ", ".join(sorted(f.flag for f in flags.values()))
        raise InputError(unknown[0], f"not an option of --method {method}", f"its options: {listing}")
    check_view(args)
    if args.gpus is not None:
        return _launch(argv, args.gpus)
    if not args.scene and not args.resume:
        parser.print_usage(sys.stderr)
        raise InputError("SCENE", "missing", "try: fieldfit csg --method rbf   (fieldfit scenes lists built-ins)")
    options = {name: getattr(args, f"opt_{name}") for name in flags}
    package, job = prepare(args.scene, args.method, time_budget=args.time_budget, steps=args.steps,
                           device=args.device, seed=args.seed, out=args.out, resume=args.resume,
                           overwrite=args.overwrite, options=options, command="fieldfit " + " ".join(argv),
                           log=args.log, log_image_every=args.log_image_every)
    try:  # the run is locked for writing until the fit ends, however it ends
        code = _fit(package, job, args, method)
        dist.barrier()  # every rank done before any leaves the group
        return code
    finally:
        job.run.release()
        dist.teardown()


def _launch(argv: list, n: int) -> int:
    """``--gpus N``: this command again under torch's launcher, one rank per GPU (``fieldfit.dist``)."""
    import torch

    from . import dist

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 1 or n > have:
        raise InputError(f"--gpus {n}", f"this machine has {have} CUDA device(s)",
                         "on CPUs run: torchrun --nproc_per_node N -m fieldfit SCENE --device cpu ...")
    if dist.launched() > 1:
        raise InputError(f"--gpus {n}", "already started by torchrun", "leave --gpus out under torchrun")
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "fieldfit",
           *rest]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
    return 0  # not reached


def _live_view(args, job):
    """The step hook that draws between training steps: the window (fieldfit.viewer.live), a browser
    (fieldfit.viewer.web_live), or None (also on the ranks other than 0 of a distributed fit)."""
    from . import dist

    if not dist.is_main():
        return None
    if args.view == "web":
        from fieldfit.viewer.web_live import LiveWeb

        return LiveWeb(job.run, job.device, host=args.host, port=args.port)
    if args.view:
        from fieldfit.viewer.live import LiveView

        return LiveView(job.run, job.device)
    return None


def _fit(package, job, args, method: str) -> int:
    job.run.step_hook = _live_view(args, job)
    try:
        return _fit_viewed(package, job, args, method)
    finally:
        close = getattr(job.run.step_hook, "close", None)
        if close is not None:  # the browser viewer's server: stopped (its port freed) however the fit ends
            close()


def _fit_viewed(package, job, args, method: str) -> int:
    from . import dist

    fresh = job.run.path if job.fresh else None
    job.run.log(f"fieldfit {method} on {job.input.name} ({job.input.task}) -> {job.run.path}; "
                f"budget {job.budget.describe()}")
    try:
        metrics = package.fit(job)
    except InputError as e:  # why the fit stopped, in its log; a library's long advice (detail) there only
        job.run.log(f"error: {e}" + (f"\n{e.detail}" if e.detail else ""), echo=False)
        _drop_if_empty(fresh)
        raise
    except Stopped:  # SIGINT / SIGTERM: the trainer saved a checkpoint and says how to resume
        raise
    except KeyboardInterrupt:
        resumable = getattr(package, "resumable", lambda r: r.has_checkpoint())
        if resumable(job.run):
            raise Interrupted(f"the last checkpoint is kept: continue with fieldfit --resume {job.run.path}") from None
        raise Interrupted("before the first checkpoint (one per minute of training): nothing to resume, "
                          "run it again") from None
    if dist.is_main():
        print(_summary(metrics))
        print(f"results: {job.run.path.resolve()}")
    if job.run.step_hook is not None:
        job.run.step_hook.finish()
    return 0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a fit, with what is left of it (a checkpoint to resume, or nothing)."""


def _drop_if_empty(path: Path | None) -> None:
    """Remove a run folder this command made when bad input stopped it before any result (only its log)."""
    from .runs import entries

    if path is not None and path.is_dir() and set(entries(path)) <= {"log"}:
        shutil.rmtree(path)


def _summary(m: dict) -> str:
    keys = ("psnr", "ssim", "iou", "chamfer_l2", "normal_consistency", "watertight", "params", "train_seconds")
    parts = [f"{k} {m[k]:.4g}" if isinstance(m.get(k), float) else f"{k} {m[k]}" for k in keys if k in m]
    if "test" in m:
        parts = [f"test.{k} {v:.4g}" for k, v in m["test"].items() if isinstance(v, float)] + parts
    return "done: " + ", ".join(parts)


def cmd_export(argv) -> int:
    from .api import load

    p = Parser(prog="fieldfit export", description="Export a run's geometry: a watertight mesh, points or parts.")
    p.add_argument("run")
    p.add_argument("--mesh", help="output mesh (.ply .obj .stl .glb)")
    p.add_argument("--faces", type=int, help="--mesh: decimate to at most N faces, keeping watertight and topology")
    p.add_argument("--points", help="output point cloud (.ply, binary: x y z [nx ny nz] red green blue)")
    p.add_argument("--max-points", type=int, default=200_000, help="--points: at most N points (default 200000)")
    p.add_argument("--parts", help="output convex parts: a .glb (a node per part) or a folder of part_NNN.obj")
    p.add_argument("--resolution", type=int, help="marching-cubes resolution")
    p.add_argument("--via", choices=("mc", "bsp"), default="mc", help="bsp: a low-poly union of convexes")
    p.add_argument("--convexes", type=int, help="--via bsp: convexes (default 64)")
    p.add_argument("--time-budget", type=float, help="--via bsp: seconds of fitting (default 120)")
    p.add_argument("--steps", type=int, help="--via bsp: fitting steps instead of a time budget")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    budget = _check_export(a)
    model = load(a.run, a.device)
    out = Path(a.mesh or a.points or a.parts)
    if _inside(out, model.run.path):  # it writes into the run: not while a fit writes there too
        model.run.acquire()
    try:
        return _export(model, out, a, budget)
    finally:
        model.run.release()


def _check_export(a):
    """export's arguments checked before the run is loaded; returns the --via bsp budget (None for mc)."""
    from fieldfit.mesh.io import SUPPORTED_MESH_EXTS
    from fieldfit.mesh.parts import parts_target

    from .exports import MAX_FACES, MAX_POINTS

    given = [f for f in ("mesh", "points", "parts") if getattr(a, f)]
    if len(given) != 1:
        raise InputError("fieldfit export", "needs exactly one of --mesh, --points, --parts" +
                         (f" (got {', '.join('--' + g for g in given)})" if given else ""),
                         "e.g. fieldfit export RUN --mesh out.ply")
    if a.resolution is not None and not 16 <= a.resolution <= 2048:
        raise InputError(f"--resolution {a.resolution}", "must be between 16 and 2048", "e.g. --resolution 256")
    if a.faces is not None and (not a.mesh or not 4 <= a.faces <= MAX_FACES):
        raise InputError(f"--faces {a.faces}", f"applies to --mesh, between 4 and {MAX_FACES}",
                         "e.g. --mesh out.ply --faces 5000")
    if not 1 <= a.max_points <= MAX_POINTS:
        raise InputError(f"--max-points {a.max_points}", f"must be between 1 and {MAX_POINTS}",
                         "e.g. --max-points 200000")
    if a.mesh and Path(a.mesh).suffix.lower() not in SUPPORTED_MESH_EXTS:
        raise InputError(a.mesh, f"cannot export to '{Path(a.mesh).suffix}'",
                         f"use one of {' '.join(SUPPORTED_MESH_EXTS)}")
    if a.points and Path(a.points).suffix.lower() != ".ply":
        raise InputError(a.points, "point clouds are written as .ply", "e.g. --points points.ply")
    if a.parts:
        parts_target(a.parts)
    if a.via != "bsp":
        return None
    if a.points:
        raise InputError("--via bsp", "applies to --mesh and --parts", "leave --via out for --points")
    from fieldfit.config import config_flags
    from fieldfit.methods.bsp.config import BSPConfig
    from fieldfit.trainer import Budget

    config_flags(BSPConfig)["convexes"].parse(a.convexes)
    return Budget.of(a.time_budget, a.steps, 120.0)


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _export(model, out: Path, a, budget) -> int:
    from . import exports

    if a.points:
        m = exports.points(model, out, a.max_points)
        print(f"wrote {out}: {m['points']} points" + (", with normals" if m["normals"] else ""))
        return 0
    if a.parts:
        m = exports.parts(model, out, a.via == "bsp", a.convexes, budget)
        print(f"wrote {out}: {m['parts']} convex parts, volume sum {m['volume_sum']:.4g}")
        return 0

    def write(path):
        if a.via == "bsp":
            from fieldfit.methods.bsp.proxy import export_via_bsp

            return export_via_bsp(model, path, convexes=a.convexes, budget=budget)
        return model.export_mesh(path, a.resolution)

    m = exports.decimated_mesh(model, out, a.faces, write) if a.faces else write(out)
    if m.get("mesh_error") or not out.is_file():  # e.g. a radiance field with no density yet
        raise InputError(model.run.path, f"no mesh written: {m.get('mesh_error') or 'the export produced no file'}",
                         "train longer (--time-budget / --steps)")
    if a.faces:
        print(f"wrote {out}: faces {m['faces']} (before {m['faces_before']}), watertight {m['watertight']}, "
              f"euler {m['euler']} (before {m['euler_before']}), components {m['components']} "
              f"(before {m['components_before']}), chamfer_l2 {m['chamfer_l2']:.4g}")
        if m["note"]:
            print(m["note"])
        return 0
    keys = ("faces", "watertight", "euler", "iou", "chamfer_l2")
    print(f"wrote {out}: " + ", ".join(f"{k} {m[k]}" for k in keys if k in m))
    return 0


def cmd_render(argv) -> int:
    from fieldfit.viewer.app import parse_size  # WxH, each side 1..8192

    from .api import load

    p = Parser(prog="fieldfit render", description="Render a camera path of a run to a video.")
    p.add_argument("run")
    p.add_argument("--device", default="auto")
    p.add_argument("--path", default="orbit", choices=("orbit", "spiral", "test"))
    p.add_argument("--camera-path", metavar="JSON", help="a nerfstudio camera_path.json (instead of --path)")
    p.add_argument("--out", required=True, help=".mp4 / .gif, or a folder for PNG frames")
    p.add_argument("--frames", type=int, default=60, help=f"frames of the video (1..{MAX_FRAMES})")
    p.add_argument("--fps", type=float, help="frames per second (default: the camera path's, else 24)")
    p.add_argument("--size", help="frame size WxH (default: the camera path's, the scene's, 512x512 for shapes)")
    p.add_argument("--pass", dest="kind", default="rgb", choices=("rgb", "depth", "normal"),
                   help="what the frames show: colour, depth (colour-mapped) or normals")
    a = p.parse_args(argv)
    if not 1 <= a.frames <= MAX_FRAMES:
        raise InputError(f"--frames {a.frames}", f"must be between 1 and {MAX_FRAMES}", "e.g. --frames 60")
    from fieldfit.render.video import check_video_out

    if a.fps is not None and not (math.isfinite(a.fps) and 0 < a.fps <= 1000):
        raise InputError(f"--fps {a.fps:g}", "must be a number in (0, 1000]", "e.g. --fps 24")
    size = parse_size(a.size) if a.size else None
    cameras, fps = None, a.fps or 24.0
    if a.camera_path:
        from fieldfit.render.camera_path import load_camera_path

        path = load_camera_path(a.camera_path, size, a.fps)
        if len(path.cameras) > MAX_FRAMES:
            raise InputError(a.camera_path, f"has {len(path.cameras)} frames, more than {MAX_FRAMES}",
                             "render it in parts")
        cameras, fps = path.cameras, path.fps
    from . import dist
    from .api import resolve_device

    device = dist.setup(resolve_device(a.device)) if dist.launched() > 1 else a.device  # frames dealt to the ranks
    model = load(a.run, device)
    check_video_out(a.out)  # before any rendering: a .mp4 needs imageio-ffmpeg
    if model.task == "sdf":  # shapes: a turntable of the viewer's picture (the shaded surface, the convexes)
        from fieldfit.viewer.turntable import turntable

        if dist.active():
            raise InputError(a.run, "shape turntables are drawn by one process", "run fieldfit render without torchrun")

        if a.path != "orbit" and cameras is None:
            raise InputError(f"--path {a.path}", "shape runs have no scene cameras", "use --path orbit")
        written, note = turntable(model, Path(a.out), a.frames, size or (512, 512), cameras=cameras, fps=fps,
                                  kind=a.kind)
    else:
        written, note = model.render_video(a.path, Path(a.out), a.frames, cameras=cameras, fps=fps, size=size,
                                           kind=a.kind)
    if dist.is_main():
        if note:
            print(note)
            model.run.log(note, echo=False)
        print(f"wrote {written}")
    dist.barrier()
    dist.teardown()
    return 0


def cmd_eval(argv) -> int:
    from .api import load

    p = Parser(prog="fieldfit eval", description="Measure a run again from its checkpoint.")
    p.add_argument("run")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    print(_summary(load(a.run, a.device).evaluate()))
    return 0


def cmd_scenes(argv) -> int:
    from fieldfit.scenes.builtin import BUILTIN

    for name, b in BUILTIN.items():
        print(f"{name:8s} {b.task:9s} {b.description}")
    return 0


def cmd_view(argv) -> int:
    from fieldfit.viewer.app import main as view_main

    return view_main(argv)


def cmd_poses(argv) -> int:
    from .sfm import PosesOptions, SfmOptions, default_threads, make_scene
    from .sfm.colmap import CAMERA_MODELS, MATCHERS

    p = Parser(prog="fieldfit poses", description="Camera poses for a folder of photos or a video, by structure-"
               "from-motion (COLMAP through pycolmap, on the CPU): writes a scene folder that fieldfit fits.",
               epilog="Writes SCENE/images, SCENE/sparse/0 (COLMAP binary model), SCENE/transforms.json, "
                      "SCENE/points3D.ply and SCENE/poses.json; then fit it with: fieldfit SCENE --method rbf")
    p.add_argument("source", metavar="PHOTOS_OR_VIDEO",
                   help="a folder of .jpg / .png photos (sorted by name) or a video (.mp4 .mov .avi .mkv .webm)")
    p.add_argument("--out", required=True, metavar="SCENE", help="the scene folder to write; must be new or empty")
    frames = p.add_mutually_exclusive_group()
    frames.add_argument("--frames", type=int, metavar="N",
                        help="video: keep this many frames, the sharpest of each equal stretch (default 100)")
    frames.add_argument("--every", type=int, metavar="K", help="video: keep the sharpest of every K frames")
    p.add_argument("--downscale", type=int, default=1, metavar="N",
                   help="the scene keeps each image averaged over N x N pixel blocks (default 1), so fit it "
                        "without a further --downscale; photos are matched at full size, the model then scaled")
    p.add_argument("--matcher", choices=MATCHERS, default="auto",
                   help="image pairs to match: every pair (exhaustive) or neighbours in name order (sequential); "
                        "auto: sequential for a video, exhaustive up to 60 photos")
    p.add_argument("--camera-model", choices=CAMERA_MODELS, default="SIMPLE_RADIAL",
                   help="lens model COLMAP fits (default SIMPLE_RADIAL: one focal length and one radial term)")
    p.add_argument("--single-camera", action=argparse.BooleanOptionalAction, default=True,
                   help="one camera (lens) shared by all images (default: on; off when their sizes differ)")
    p.add_argument("--max-size", type=int, default=1600, metavar="PX",
                   help="features are found on images shrunk to at most this many pixels per side (default 1600)")
    p.add_argument("--threads", type=int, default=default_threads(), metavar="N",
                   help="CPU threads (default: all cores)")
    p.add_argument("--vocab-tree", metavar="FILE", help="a COLMAP vocabulary tree: sequential matching then also "
                   "detects loops (back at an earlier place)")
    p.add_argument("--keep-database", action="store_true", help="keep COLMAP's database.db (features, matches)")
    p.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    a = p.parse_args(argv)
    _check_poses(a)
    sfm = SfmOptions(camera_model=a.camera_model, single_camera=a.single_camera, matcher=a.matcher,
                     max_size=a.max_size, threads=a.threads, vocab_tree=Path(a.vocab_tree) if a.vocab_tree else None,
                     verbose=a.verbose)
    opts = PosesOptions(frames=a.frames, every=a.every, downscale=a.downscale, keep_database=a.keep_database, sfm=sfm)
    t = time.perf_counter()
    s = make_scene(a.source, a.out, opts, log=lambda line: print(line, flush=True))
    print(f"wrote {a.out}: {s['registered']}/{s['images']} images registered, {s['points']} points in "
          f"{time.perf_counter() - t:.0f} s")
    print(f"fit it: fieldfit {shlex.quote(str(a.out))} --method rbf")
    return 0


def _check_poses(a) -> None:
    """poses' numeric options in range (one line each, before any work)."""
    for flag, value, low, high in (("--frames", a.frames, 3, 100000), ("--every", a.every, 1, 100000),
                                   ("--downscale", a.downscale, 1, 64), ("--max-size", a.max_size, 64, 100000),
                                   ("--threads", a.threads, 1, 4096)):
        if value is not None and not low <= value <= high:
            raise InputError(f"{flag} {value}", f"must be between {low} and {high}", "fieldfit poses -h")
    if a.vocab_tree and not Path(a.vocab_tree).is_file():
        raise InputError(a.vocab_tree, "vocabulary tree not found", "give the path of a COLMAP vocab tree file")


def _echoes(e: Exception) -> bool:
    """Whether this process prints error ``e``: always, except on the ranks other than 0 of a distributed fit,
    which print only their own news (another rank lost); rank 0 says the rest."""
    if os.environ.get("RANK", "0") in ("0", "") or os.environ.get("WORLD_SIZE", "1") == "1":
        return True
    from .dist import RankLost

    return isinstance(e, RankLost)


def _give_rank0_the_word() -> None:
    """A rank other than 0 that stops on an error rank 0 reports: wait up to RANK0_GRACE_S before leaving. torchrun
    stops every rank as soon as one exits with an error, so a rank leaving first could have rank 0 stopped before
    its one line was printed (seen on 2 loaded cores); rank 0's own exit ends the wait."""
    time.sleep(RANK0_GRACE_S)


def _blocks(argv: list) -> int:
    """``fieldfit SCENE --blocks AxB ...``: the scene as A x B overlapping blocks under one parent run
    (``fieldfit.methods.blocks.command``; its options: fieldfit SCENE --blocks AxB -h)."""
    from .methods.blocks.command import main as blocks_main

    return blocks_main(argv)


def _maybe_tcmalloc(argv) -> None:
    """Re-exec once with tcmalloc preloaded when present: ~1.5x faster CPU training."""
    if os.environ.get("FIELDFIT_NO_TCMALLOC") or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = next((p for p in TCMALLOC if os.path.exists(p)), None)
    if lib is None:
        return
    env = dict(os.environ, LD_PRELOAD=(lib + " " + os.environ.get("LD_PRELOAD", "")).strip(), FIELDFIT_NO_TCMALLOC="1")
    try:
        os.execve(sys.executable, [sys.executable, "-m", "fieldfit", *argv], env)
    except OSError:
        return


COMMANDS = {"export": cmd_export, "render": cmd_render, "eval": cmd_eval, "view": cmd_view, "scenes": cmd_scenes,
            "poses": cmd_poses}


def main(argv=None) -> int:
    from_shell = argv is None
    code = _main(argv)
    if from_shell and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        # a rank of torchrun leaves at once: the interpreter's own shutdown after a process group, with library
        # threads still parked, sometimes aborts or hangs (2 of about 120 runs on 2 loaded cores)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv=None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if from_shell and argv and argv[0] not in ("-h", "--help", "scenes", "poses"):
        _maybe_tcmalloc(argv)
    try:
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return cmd_fit(argv)
    except InputError as e:
        if _echoes(e):
            print(f"fieldfit: error: {e}", file=sys.stderr)
        else:
            _give_rank0_the_word()
        return 2
    except Silent as e:  # a rank other than 0: rank 0 said why
        _give_rank0_the_word()
        return e.exit_code
    except Stopped as e:
        print(("\n" if sys.stdout.isatty() else "") + f"fieldfit: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"\nfieldfit: interrupted {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nfieldfit: interrupted", file=sys.stderr)
        return 130
    except (FloatingPointError, FitError) as e:
        if _echoes(e):
            print(f"fieldfit: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the system refused a read or write no InputError named: still one line
        if e.errno not in SYSTEM_ERRORS:
            raise
        print(f"fieldfit: error: {e.filename or 'fieldfit'}: {os.strerror(e.errno)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
