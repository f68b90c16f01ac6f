"""rbf on an image: fit rgb(uv) to every pixel; write reconstruction.png at full resolution.

uv: the pixel centres of an H x W image span [-1,1] (first and last centres at -1 and 1, u along the width),
so a dense grid level of exactly W x H vertices has one vertex on each pixel.
"""

import time

import numpy as np
import torch

from fieldfit import dist
from fieldfit.errors import InputError
from fieldfit.fields.components.encodings import DenseGrid
from fieldfit.fields.gaussian_rbf import FieldConfig, ImageRBF
from fieldfit.model import Model, Rendering, model_tensors
from fieldfit.optim import ShuffledRows, WeightAverage, count_params, make_adam, seed_everything, set_lr
from fieldfit.render.metrics import psnr_from_mse
from fieldfit.runs import Run, atomic_write, load_model, model_state
from fieldfit.trainer import fit_loop, plot_curve, resume_state

from .config import ImageConfig, dense_grid_params, field_for_device, fit_max_res


def field_config(cfg: ImageConfig, h: int, w: int) -> FieldConfig:
    """The image field of ``cfg``: the dense grid stretched to the image's aspect."""
    top = max(h, w)
    return cfg.field_config(axis_scale=(w / top, h / top))


def param_groups(model: ImageRBF, cfg: ImageConfig) -> list[dict]:
    """Adam's groups (as ``radiance.param_groups``): all weights at ``cfg.lr``; with ``cfg.level_lr`` P > 0 and a
    dense grid, the decoder at lr and each grid level in its own group at lr x (its resolution / the finest's)^P."""
    enc, lr, power = model.encoding, cfg.lr, cfg.level_lr
    if not power or not isinstance(enc, DenseGrid):
        return [{"params": list(model.parameters()), "lr": lr}]
    top = max(enc.res)
    levels = [{"params": [g], "lr": lr * (r / top) ** power} for r, g in zip(enc.res, enc.grids, strict=True)]
    return [{"params": list(model.decoder.parameters()), "lr": lr}, *levels]  # the first group's rate is logged


def pixel_uv(h: int, w: int, device) -> torch.Tensor:
    """uv [H*W,2] of pixel centres, row-major (see the module doc)."""
    ys = torch.linspace(-1, 1, h, device=device)
    xs = torch.linspace(-1, 1, w, device=device)
    v, u = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([u, v], -1).reshape(-1, 2)


@torch.no_grad()
def render_image(model: ImageRBF, h: int, w: int, device, chunk: int = 2**18) -> torch.Tensor:
    uv = pixel_uv(h, w, device)
    out = torch.cat([model.rgb(uv[i:i + chunk]) for i in range(0, uv.shape[0], chunk)])
    return out.reshape(h, w, -1)


def read_input(inp) -> np.ndarray:
    from fieldfit.scenes.builtin import rings_image
    from fieldfit.scenes.inputs import load_image

    return rings_image() if inp.builtin else load_image(inp.path)


def fit(job) -> dict:
    t0 = time.perf_counter()
    run, device = job.run, torch.device(job.device)
    image = read_input(job.input)
    gen = seed_everything(job.seed)
    dist.fork_generator(gen, job.seed)  # each rank its own batches (rank 0 as in one process)
    h, w, c = image.shape
    cfg = ImageConfig.from_dict(job.saved["config"]).replace(**job.options) if job.resume else \
        ImageConfig.for_image(h, w, c, **job.options)
    target = torch.from_numpy(image).to(device).reshape(-1, c)
    fcfg = field_for_device(field_config(cfg, h, w), device, run)
    model = ImageRBF(fcfg, channels=c, device=device).to(device)
    opt = make_adam(param_groups(model, cfg))
    average = WeightAverage(model, cfg.average) if cfg.average else None
    shown = model if average is None else average.module  # what is evaluated and saved
    params = count_params(model)
    run.log(f"image {job.input.name}: {w}x{h}x{c}, field {params:,} parameters ({model.param_groups()})")
    start, elapsed, history = resume_state(run, model, opt, device, average) if job.resume else (0, 0.0, None)
    # after the checkpoint has loaded into this model: a resume that cannot go on leaves the run as it was
    run.write_config({"task": "image", "method": "rbf", "source": job.input.name, "height": h, "width": w,
                      "channels": c, "field": fcfg.to_dict(), "config": cfg.to_dict(), "seed": job.seed})
    batch = dist.share(min(cfg.batch, h * w))
    # every pixel once a pass
    pixels = ShuffledRows((pixel_uv(h, w, device), target), gen if device.type == "cpu" else None)
    prepare_s = time.perf_counter() - t0

    def step(i, progress):
        lr = set_lr(opt, progress, cfg.lr_final)
        uv, rgb = pixels.rows(batch)
        loss = torch.nn.functional.mse_loss(model.rgb(uv), rgb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update()
        return {"loss": loss.detach(), "mse": loss.detach(), "batch": batch, "lr": lr}

    def preview():
        return render_image(shown, h, w, device).clamp(0, 1)

    def evaluate():
        pred = render_image(shown, h, w, device).reshape(-1, c)
        return psnr_from_mse(torch.mean((pred.clamp(0, 1) - target) ** 2).item())

    budget = job.budget
    t1 = time.perf_counter()
    history = fit_loop(step, budget, run, evaluate=evaluate, state=model_state(model, opt, average), metric_name="psnr",
                       eval_every_s=budget.eval_every(12), start_step=start, start_elapsed=elapsed,
                       history=history, unit="pixels", preview=preview)
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics = write_outputs(shown, run, h, w, target.reshape(h, w, c), device)
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


class ImageModel(Model):
    """A fitted image: ``rgb(uv)`` at any uv, ``render_pixels`` at any size."""

    task = "image"
    render_modes = ("colour",)

    def __init__(self, run: Run, config: dict, device="cpu", trained: bool = True):
        super().__init__(run, config, device)
        self.height, self.width, self.channels = int(config["height"]), int(config["width"]), int(config["channels"])
        self.field = ImageRBF(FieldConfig.from_dict(config["field"]), channels=self.channels,
                              device=self.device).to(self.device)
        if trained:
            load_model(run, self.field, self.device)
        self.field.eval()

    @torch.no_grad()
    def rgb(self, uv: torch.Tensor) -> torch.Tensor:
        """[N,3] colours (grey images repeated) at uv [N,2] (see the module doc)."""
        out = self.field.rgb(uv.to(self.device)).float().clamp(0, 1)
        return out if out.shape[-1] == 3 else out[:, :1].expand(-1, 3)

    def render(self, camera=None, mode: str = "colour") -> Rendering:
        """The image at its own size (the field at every pixel centre; ``camera`` is not used)."""
        rgb = render_image(self.field, self.height, self.width, self.device).float().clamp(0, 1)
        rgb = rgb if rgb.shape[-1] == 3 else rgb[..., :1].expand(-1, -1, 3)
        ones = torch.ones(self.height, self.width)
        return Rendering(rgb.cpu(), ones, torch.full_like(ones, float("nan")))

    def evaluate(self) -> dict:
        """psnr / ssim of the checkpoint's reconstruction against the run's input image (rewrites
        reconstruction.png)."""
        from fieldfit.scenes.inputs import classify

        try:
            inp = classify(self.config["input"])
        except InputError as e:
            raise InputError(self.config["input"], f"the image this run was fitted to is not there any more "
                             f"({e.problem})", "restore it to measure the run again; render and view need only "
                             "the run") from None
        image = read_input(inp)
        h, w, c = self.height, self.width, self.channels
        if image.shape != (h, w, c):
            raise InputError(inp.path, f"is {image.shape[1]}x{image.shape[0]}x{image.shape[2]} now; the run fitted "
                             f"{w}x{h}x{c}", "restore the image the run was fitted to")
        m = write_outputs(self.field, self.run, h, w, torch.from_numpy(image).to(self.device), self.device)
        metrics = {**self.run.metrics(), **m}
        self.run.write_metrics(metrics)
        return metrics

    def sync(self, tensors: dict) -> None:
        self.field.load_state_dict(model_tensors(tensors))


def load(run: Run, device="cpu", trained: bool = True) -> ImageModel:
    return ImageModel(run, run.config(), device, trained)


__all__ = ["ImageModel", "dense_grid_params", "fit", "fit_max_res", "load", "param_groups", "pixel_uv",
           "render_image"]
