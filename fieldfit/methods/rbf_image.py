"""rbf on an image: fit rgb(uv) to every pixel; write reconstruction.png at full resolution."""

import time
from dataclasses import replace

import numpy as np
import torch

from fieldfit.fields.gaussian_rbf import FieldConfig, ImageRBF
from fieldfit.fields.components.encodings import GridConfig, dense_shapes

from ..errors import InputError
from ..runs import Run, atomic_write
from ..trainer import Budget, fit_loop, plot_curve
from .common import count_params, load_model, make_adam, model_state, psnr_from_mse, resume_state, seed_everything, set_lr

# Batch 8192: on 2 CPU cores, many small steps beat few large ones (kodim05, 60 s, quiet machine:
# 65536 -> 49.2 dB, 16384 -> 49.9, 8192 -> 53.0, 4096 -> 52.7).
DEFAULTS = {"batch": 8192, "lr": 1e-2, "lr_final": 0.2, "time_budget": 60.0}
COMPRESSED = {"features": 2, "lr": 2e-2}  # defaults under --grid-ratio


def dense_grid_params(h: int, w: int, grid: GridConfig) -> int:
    """Parameters of ``grid`` as a dense 2D grid over an H x W image (DenseGrid's level shapes)."""
    top = max(h, w)
    shapes = dense_shapes(2, replace(grid, axis_scale=(w / top, h / top)))
    return sum(grid.features * a * b for a, b in shapes)


def fit_max_res(h: int, w: int, grid: GridConfig, cap: int) -> int:
    """The largest finest resolution whose dense grid has at most ``cap`` parameters."""
    lo, hi = grid.base_res, max(h, w)
    if dense_grid_params(h, w, replace(grid, max_res=lo)) > cap:
        raise InputError("--grid-ratio", f"a grid of {cap:,} parameters is too small for {grid.levels} levels "
                         f"from resolution {grid.base_res}", "raise the ratio or lower --levels, --base-res or --features")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if dense_grid_params(h, w, replace(grid, max_res=mid)) <= cap else (lo, mid - 1)
    return lo


def default_config(h: int, w: int, extra: dict, channels: int = 3) -> FieldConfig:
    """Dense multi-resolution 2D grid whose finest level has one vertex per pixel (W x H).
    With ``grid_ratio`` r, the finest level shrinks until the grid has at most r x H x W x C
    parameters (unless ``max_res`` is given)."""
    top = max(h, w)
    ratio = extra.get("grid_ratio")
    if ratio is not None and "max_res" not in extra:
        probe = GridConfig(levels=extra.get("levels", 6), base_res=extra.get("base_res", 24),
                           features=extra.get("features", 4))
        extra = {**extra, "max_res": fit_max_res(h, w, probe, int(ratio * h * w * channels))}
    grid = GridConfig(kind=extra.get("grid", "dense"), levels=extra.get("levels", 6), base_res=extra.get("base_res", 24),
                      max_res=extra.get("max_res", top), features=extra.get("features", 4),
                      table_log2=extra.get("table_log2", 19), init_scale=extra.get("init_scale", 1e-4),
                      axis_scale=(w / top, h / top))
    return FieldConfig(grid=grid, decoder=extra.get("decoder", "rbf"), units=extra.get("units", 64),
                       kernel=extra.get("kernel", "gaussian"), hidden=extra.get("hidden", 64),
                       layers=extra.get("layers", 2))


def pixel_uv(h: int, w: int, device) -> torch.Tensor:
    """uv [H*W,2] of pixel centres, row-major; u along width. The first and last pixel centres
    map to -1 and 1, so a grid level of exactly W x H vertices has one vertex on each pixel."""
    ys = torch.linspace(-1, 1, h, device=device)
    xs = torch.linspace(-1, 1, w, device=device)
    v, u = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


@torch.no_grad()
def render_image(model: ImageRBF, h: int, w: int, device, chunk: int = 2**18) -> torch.Tensor:
    uv = pixel_uv(h, w, device)
    out = torch.cat([model.rgb(uv[i:i + chunk]) for i in range(0, uv.shape[0], chunk)])
    return out.reshape(h, w, -1)


def fit(image: np.ndarray, name: str, opts, run: Run) -> dict:
    t0 = time.perf_counter()
    extra = {**DEFAULTS, **(COMPRESSED if "grid_ratio" in opts.extra else {}), **opts.extra}
    device = torch.device(opts.device)
    gen = seed_everything(opts.seed)
    h, w, c = image.shape
    target = torch.from_numpy(image).to(device).reshape(-1, c)
    uv = pixel_uv(h, w, device)
    cfg = default_config(h, w, extra, c)
    model = ImageRBF(cfg, channels=c, device=device).to(device)
    opt = make_adam([{"params": model.parameters(), "lr": extra["lr"]}])
    run.write_config({"task": "image", "method": "rbf", "source": name, "height": h, "width": w,
                      "channels": c, "field": cfg.to_dict(), "options": extra, "seed": opts.seed})
    params = count_params(model)
    run.log(f"image {name}: {w}x{h}x{c}, field {params:,} parameters ({model.param_groups()})")
    start, elapsed, history = (resume_state(run, model, opt, device) if opts.resume else (0, 0.0, None))
    batch = min(extra["batch"], h * w)
    prepare_s = time.perf_counter() - t0

    def step(i, progress):
        set_lr(opt, progress, extra["lr_final"])
        idx = torch.randint(0, h * w, (batch,), device=device, generator=gen if device.type == "cpu" else None)
        loss = torch.nn.functional.mse_loss(model.rgb(uv[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def evaluate():
        pred = render_image(model, h, w, device).reshape(-1, c)
        return psnr_from_mse(torch.mean((pred.clamp(0, 1) - target) ** 2).item())

    budget = Budget(steps=opts.steps, time_budget=None if opts.steps else (opts.time_budget or extra["time_budget"]))
    t1 = time.perf_counter()
    history = fit_loop(step, budget, run, evaluate=evaluate, state=model_state(model, opt), metric_name="psnr",
                       eval_every_s=max(5.0, (budget.time_budget or 60) / 12), start_step=start,
                       start_elapsed=elapsed, history=history)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = write_outputs(model, run, h, w, target.reshape(h, w, c), device)
    plot_curve(run, history, "psnr")
    metrics.update(task="image", params=params, grid_params=model.param_groups()["grid"],
                   image_values=h * w * c, steps=history.steps[-1] if history.steps else start,
                   prepare_seconds=prepare_s, train_seconds=train_s, export_seconds=time.perf_counter() - t2)
    run.write_metrics(metrics)
    return metrics


def write_outputs(model, run: Run, h, w, target, device) -> dict:
    import imageio.v3 as iio

    from fieldfit.render.metrics import psnr, ssim

    pred = render_image(model, h, w, device).clamp(0, 1)
    out = (pred.cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    if out.shape[-1] == 1:
        out = out[..., 0]
    atomic_write(run.path / "reconstruction.png", lambda tmp: iio.imwrite(tmp, out, extension=".png"))
    tgt = target.float()
    return {"psnr": psnr(pred, tgt), "ssim": ssim(pred, tgt)}


def evaluate(run: Run, opts: dict) -> dict:
    """psnr / ssim of the checkpoint's reconstruction against the run's input image (rewrites reconstruction.png)."""
    from fieldfit.scenes.builtin import rings_image
    from fieldfit.scenes.inputs import classify, load_image

    device = torch.device(opts.get("device", "cpu"))
    model, cfg = load(run, device)
    inp = classify(cfg["input"])
    image = rings_image() if inp.builtin else load_image(inp.path)
    h, w, c = cfg["height"], cfg["width"], cfg["channels"]
    if image.shape != (h, w, c):
        raise InputError(inp.path, f"is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} now; the run fitted "
                         f"{w}x{h}x{c}", "restore the image the run was fitted to")
    return write_outputs(model, run, h, w, torch.from_numpy(image).to(device), device)


def load(run: Run, device="cpu") -> tuple[ImageRBF, dict]:
    cfg = run.config()
    model = ImageRBF(FieldConfig.from_dict(cfg["field"]), channels=cfg["channels"], device=device).to(device)
    load_model(run, model, device)
    return model, cfg
