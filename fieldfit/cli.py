"""The fieldfit command line.

    fieldfit SCENE --method rbf            fit (SCENE: image, mesh, posed-image folder, built-in name)
    fieldfit export RUN --mesh out.ply     re-extract a mesh (.ply .obj .stl .glb)
    fieldfit render RUN --path orbit --out orbit.mp4
    fieldfit eval RUN                      metrics again, from the checkpoint
    fieldfit view RUN                      the viewer window
    fieldfit scenes                        list the built-in scenes
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import FitError, InputError

SUBCOMMANDS = ("export", "render", "eval", "view", "scenes")
TCMALLOC = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4")

# Method-specific flags: name -> (type, help). Only flags the user sets reach the method.
EXTRA_FLAGS = {
    "grid": (str, "feature grid: dense | triplane | hash | tcnn | densehash"),
    "levels": (int, "grid levels"),
    "base-res": (int, "coarsest grid resolution"),
    "max-res": (int, "finest grid resolution"),
    "features": (int, "features per level"),
    "fine-levels": (int, "grid densehash: hashed levels above --max-res"),
    "fine-max-res": (int, "grid densehash: finest hashed resolution"),
    "grid-ratio": (float, "images: cap the grid at this fraction of the image's values (e.g. 0.25)"),
    "table-log2": (int, "hash table size (log2)"),
    "units": (int, "RBF units K"),
    "kernel": (str, "RBF kernel: gaussian | inverse_quadratic | inverse_multiquadric | multiquadric"),
    "decoder": (str, "decoder: rbf | mlp | siren"),
    "hidden": (int, "mlp / siren width"),
    "layers": (int, "mlp / siren hidden layers"),
    "batch": (int, "points / pixels / rays per step"),
    "lr": (float, "learning rate"),
    "samples": (int, "training samples (sdf, bsp); samples per ray (pronerf: 8, 12, 32)"),
    "resolution": (int, "marching-cubes resolution"),
    "thin-frac": (float, "sdf: share of training points drawn across walls/gaps thinner than 0.02 (default 0.1; 0: off)"),
    "eval-every": (float, "seconds between progress evaluations"),
    "convexes": (int, "convexes (bsp)"),
    "samples-per-ray": (int, "samples per ray (pronerf)"),
    "field": (str, "pronerf field: rbf (default) | nerf (MLP NeRF)"),
    "voxel": (float, "fine voxel size, world units (dnmp; default 3 pixel footprints)"),
    "geo-frac": (float, "dnmp: share of the budget for the photometric geometry stage (default 0; sphere shapes 0.1)"),
    "points": (str, "where dnmp's primitives come from: auto | scene | carve | rbf | an rbf run folder"),
    "shapes": (str, "dnmp primitives start as: density (fitted to the rbf point fit; default) | sphere"),
    "sh-degree": (int, "dnmp colour: spherical harmonics of this degree per point (default: an MLP reads the direction)"),
    "antialias": (str, "dnmp: 2x2 samples in the pixels along outlines, training and rendering: on | off (default)"),
    "rim": (str, "dnmp: opacity also reads |normal . view| so outlines can fade: on (default) | off"),
    "points-frac": (float, "dnmp: share of the budget for the rbf fit that places the primitives (default 0.5)"),
    "background": (str, "radiance training background: random | black (default: random with alpha, else black)"),
    "downscale": (int, "downscale posed images by N (area average)"),
    "test-every": (int, "every N-th image is a test view when the scene has no split"),
}


def _fit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fieldfit", description="Fit a neural field to SCENE.",
                                epilog="Other commands: " + ", ".join(SUBCOMMANDS) + " (fieldfit COMMAND -h)")
    p.add_argument("scene", nargs="?", help="image, mesh, posed-image folder, or built-in scene (fieldfit scenes)")
    p.add_argument("--method", default="rbf", help="rbf | bsp | dnmp | pronerf")
    p.add_argument("--time-budget", type=float, help="seconds of optimisation")
    p.add_argument("--steps", type=int, help="optimisation steps (instead of a time budget)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", help="run folder (default runs/<scene>-<method>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", metavar="RUN", help="continue the training of RUN")
    p.add_argument("--view", action="store_true", help="open the viewer while training")
    for name, (typ, help_) in EXTRA_FLAGS.items():
        p.add_argument(f"--{name}", type=typ, help=help_)
    return p


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda", "no CUDA device is available", "use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"--device {name}", "unknown device", "use auto, cpu or cuda")
    return name


def cmd_fit(argv) -> int:
    from .registry import Options, get_method
    from .runs import Run
    from fieldfit.scenes.inputs import classify

    args = _fit_parser().parse_args(argv)
    extra = {k.replace("-", "_"): getattr(args, k.replace("-", "_")) for k in EXTRA_FLAGS}
    extra = {k: v for k, v in extra.items() if v is not None}
    if args.resume:
        run = Run.open(args.resume)
        cfg = run.config()
        scene, method_name = args.scene or cfg.get("input"), cfg.get("method", args.method)
        extra = {**cfg.get("options", {}), **extra}  # the run's options, overridden by flags given now
    else:
        if not args.scene:
            _fit_parser().print_usage(sys.stderr)
            raise InputError("SCENE", "missing", "try: fieldfit csg --method rbf   (fieldfit scenes lists built-ins)")
        scene, method_name = args.scene, args.method
    inp = classify(scene)
    method = get_method(method_name)
    if inp.task not in method.TASKS:
        raise InputError(scene, f"--method {method_name} does not fit {inp.task} inputs",
                         f"it fits: {', '.join(method.TASKS)}")
    fresh = None
    if not args.resume:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(args.out) if args.out else Path("runs") / f"{inp.name}-{method_name}-{stamp}"
        fresh = None if path.exists() else path
        run = Run.create(path)
    run.header = {"input": scene, "method": method_name, "command": "fieldfit " + " ".join(argv)}
    opts = Options(time_budget=args.time_budget, steps=args.steps, device=resolve_device(args.device),
                   seed=args.seed, resume=bool(args.resume), extra=extra)
    if args.view:  # the viewer draws between training steps (fieldfit.viewer.live)
        from fieldfit.viewer.live import LiveView

        run.step_hook = LiveView(run, opts.device)
    run.log(f"fieldfit {method_name} on {scene} ({inp.task}) -> {run.path}")
    try:
        metrics = method.fit(inp, opts, run)
    except InputError:
        _drop_if_empty(fresh)
        raise
    except KeyboardInterrupt:
        resumable = getattr(method, "resumable", lambda r: r.has_checkpoint())
        if resumable(run):
            raise Interrupted(f"the last checkpoint is kept: continue with fieldfit --resume {run.path}") from None
        raise Interrupted("before the first checkpoint (one per minute of training): nothing to resume, "
                          "run it again") from None
    print(_summary(metrics))
    print(f"results: {run.path.resolve()}")
    if args.view:
        run.step_hook.finish()
    return 0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a fit, with what is left of it (a checkpoint to resume, or nothing)."""


def _drop_if_empty(path: Path | None) -> None:
    """Remove a run folder this command made when bad input stopped it before any result (only its log)."""
    if path is not None and path.is_dir() and {p.name for p in path.iterdir()} <= {"log"}:
        shutil.rmtree(path)


def _summary(m: dict) -> str:
    keys = ("psnr", "ssim", "iou", "chamfer_l2", "normal_consistency", "watertight", "params", "train_seconds")
    parts = [f"{k} {m[k]:.4g}" if isinstance(m.get(k), float) else f"{k} {m[k]}" for k in keys if k in m]
    if "test" in m:
        parts = [f"test.{k} {v:.4g}" for k, v in m["test"].items() if isinstance(v, float)] + parts
    return "done: " + ", ".join(parts)


def cmd_export(argv) -> int:
    from .registry import get_method
    from .runs import Run

    p = argparse.ArgumentParser(prog="fieldfit export", description="Export a watertight mesh of a run.")
    p.add_argument("run")
    p.add_argument("--mesh", required=True, help="output mesh (.ply .obj .stl .glb)")
    p.add_argument("--resolution", type=int, help="marching-cubes resolution")
    p.add_argument("--via", choices=("mc", "bsp"), default="mc", help="bsp: low-poly convex proxy")
    p.add_argument("--convexes", type=int)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    run = Run.open(a.run)
    opts = {"resolution": a.resolution, "convexes": a.convexes, "device": resolve_device(a.device)}
    method = get_method("bsp" if a.via == "bsp" else run.config().get("method", "rbf"))
    fn = getattr(method, "export_from_run" if a.via == "bsp" else "export_mesh", None)
    if fn is None:
        raise InputError(run.path, f"method {run.config().get('method')} cannot export meshes")
    m = fn(run, Path(a.mesh), opts)
    if m.get("mesh_error") or not Path(a.mesh).is_file():  # e.g. a radiance field with no density yet
        raise InputError(run.path, f"no mesh written: {m.get('mesh_error') or 'the export produced no file'}",
                         "train longer (--time-budget / --steps)")
    print(f"wrote {a.mesh}: " + ", ".join(f"{k} {v}" for k, v in m.items() if k in ("faces", "watertight", "iou", "chamfer_l2")))
    return 0


def cmd_simple(name, argv) -> int:
    from .registry import get_method
    from .runs import Run

    p = argparse.ArgumentParser(prog=f"fieldfit {name}")
    p.add_argument("run")
    p.add_argument("--device", default="auto")
    if name == "render":
        p.add_argument("--path", default="orbit", choices=("orbit", "spiral", "test"))
        p.add_argument("--out", required=True)
        p.add_argument("--frames", type=int, default=60)
    a = p.parse_args(argv)
    run = Run.open(a.run)
    method = get_method(run.config().get("method", "rbf"))
    opts = {"device": resolve_device(a.device)}
    if name == "eval":
        fn = getattr(method, "evaluate", None)
        if fn is None:
            raise InputError(run.path, "this run cannot be re-evaluated yet")
        print(_summary(fn(run, opts)))
        return 0
    task = run.config().get("task")
    if task == "sdf":  # shapes: a turntable of the viewer's picture (the shaded surface, the convexes)
        from fieldfit.viewer.turntable import turntable

        if a.path != "orbit":
            raise InputError(f"--path {a.path}", "shape runs have no scene cameras", "use --path orbit")
        written, note = turntable(run, Path(a.out), a.frames, device=opts["device"])
        print(f"wrote {written}" + (f" ({note})" if note else ""))
        return 0
    fn = getattr(method, "render_path", None)
    if fn is None:
        raise InputError(run.path, f"a {task} run has no camera path to render")
    print(f"wrote {fn(run, a.path, Path(a.out), dict(opts, frames=a.frames))}")
    return 0


def cmd_scenes(argv) -> int:
    from fieldfit.scenes.builtin import BUILTIN

    for name, b in BUILTIN.items():
        print(f"{name:8s} {b.task:9s} {b.description}")
    return 0


def cmd_view(argv) -> int:
    try:
        from fieldfit.viewer.app import main as view_main
    except ModuleNotFoundError:
        raise InputError("fieldfit view", "the viewer is not in this version yet",
                         "render pictures with fieldfit render RUN --path test --out video.mp4") from None
    return view_main(argv)


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


def main(argv=None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if from_shell and argv and argv[0] not in ("-h", "--help", "scenes"):
        _maybe_tcmalloc(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            cmd = argv[0]
            fn = {"export": cmd_export, "scenes": cmd_scenes, "view": cmd_view}.get(cmd)
            return fn(argv[1:]) if fn else cmd_simple(cmd, argv[1:])
        return cmd_fit(argv)
    except InputError as e:
        print(f"fieldfit: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\nfieldfit: interrupted {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nfieldfit: interrupted", file=sys.stderr)
        return 130
    except (FloatingPointError, FitError) as e:
        print(f"fieldfit: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
