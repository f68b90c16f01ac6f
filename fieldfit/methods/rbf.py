"""The rbf method: Gaussian RBF networks for images, signed distance and radiance fields."""

from pathlib import Path

from ..errors import InputError
from ..runs import Run

TASKS = ("image", "sdf", "radiance")


def fit(inp, opts, run: Run) -> dict:
    if inp.task == "image":
        from fieldfit.scenes.builtin import rings_image
        from fieldfit.scenes.inputs import load_image

        from . import rbf_image

        image = rings_image() if inp.builtin else load_image(inp.path)
        return rbf_image.fit(image, inp.name, opts, run)
    if inp.task == "sdf":
        from fieldfit.scenes.shapes import load_shape

        from . import rbf_sdf

        return rbf_sdf.fit(load_shape(inp.path, inp.builtin), opts, run)
    if inp.task == "radiance":
        try:
            from . import rbf_radiance
        except ModuleNotFoundError as e:
            if "rbf_radiance" not in str(e):
                raise
            raise InputError(inp.path or inp.name, "radiance fields from posed images are not in this version yet",
                             "fit an image or a mesh for now") from None
        return rbf_radiance.fit(inp, opts, run)
    raise InputError(inp.path or inp.name, f"task {inp.task!r} is not supported by rbf")


def export_mesh(run: Run, out: Path, opts: dict) -> dict:
    cfg = run.config()
    if cfg["task"] == "sdf":
        import numpy as np
        from fieldfit.scenes.shapes import load_shape

        from . import rbf_sdf

        model, cfg = rbf_sdf.load(run, opts.get("device", "cpu"))
        src = cfg["source"]
        shape = load_shape(builtin=src) if not Path(src).exists() else load_shape(src)
        shape.center, shape.scale = np.asarray(cfg["center"]), float(cfg["scale"])
        extra = {**rbf_sdf.DEFAULTS, **cfg["options"], **{k: v for k, v in opts.items() if v is not None}}
        return rbf_sdf.export(model, shape, run, extra, opts.get("device", "cpu"), out)
    if cfg["task"] == "radiance":
        from . import rbf_radiance

        return rbf_radiance.export_mesh(run, out, opts)
    raise InputError(run.path, f"a {cfg['task']} run has no geometry to export")


def evaluate(run: Run, opts: dict) -> dict:
    """Metrics again from the checkpoint against the run's input (radiance: re-render the test views; image:
    the reconstruction; sdf: mesh, IoU, Chamfer), merged into metrics.json."""
    task = run.config()["task"]
    if task == "radiance":
        from . import rbf_radiance

        return rbf_radiance.evaluate(run, opts)
    if task == "image":
        from . import rbf_image

        m = rbf_image.evaluate(run, opts)
    else:
        m = export_mesh(run, run.path / "mesh.ply", {"device": opts.get("device", "cpu")})
    metrics = {**run.metrics(), **m}
    run.write_metrics(metrics)
    return metrics


def render_path(run: Run, path: str, out: Path, opts: dict) -> Path:
    """Render a camera path of a radiance run to a video."""
    task = run.config()["task"]
    if task == "radiance":
        from . import rbf_radiance

        return rbf_radiance.render_path(run, path, out, opts)
    raise InputError(run.path, f"a {task} run has no camera path to render",
                     "look at reconstruction.png or fieldfit view RUN" if task == "image" else "")
