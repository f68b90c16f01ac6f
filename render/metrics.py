"""Image metrics: PSNR, SSIM (Gaussian window, as skimage), LPIPS where its weights load.

Images are [H,W,C] (or [H,W]) tensors or arrays with values in [0, max_val]; the
metrics return Python floats and are computed in float64 without gradient.

LPIPS needs the optional ``lpips`` package and its network's weights (the linear layers ship with the package;
the AlexNet / VGG backbone comes from torchvision's download cache). ``load_lpips`` says why it is unavailable
when it is, so a report can carry the reason beside its null value.
"""

import math

import numpy as np
import torch


def _as64(x) -> torch.Tensor:
    if not torch.is_tensor(x):
        x = torch.from_numpy(np.array(x, dtype=np.float64))  # copies: read-only arrays are fine
    return x.detach().to(torch.float64)


def psnr(pred, target, max_val: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10 log10(max_val^2 / MSE) over all pixels and channels.

    Identical images (MSE = 0) give ``float('inf')``; no cap is applied (average PSNR
    over views with ``mean`` of per-view MSE, or drop infinities, as the caller needs).
    """
    p, t = _as64(pred), _as64(target)
    if p.shape != t.shape:
        raise ValueError(f"psnr: pred {tuple(p.shape)} and target {tuple(t.shape)} differ")
    mse = float(((p - t) ** 2).mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(max_val * max_val / mse)


def psnr_from_mse(mse: float, max_val: float = 1.0) -> float:
    """PSNR of a mean squared error: 10 log10(max_val^2 / mse); inf for mse 0."""
    return math.inf if mse <= 0 else 10.0 * math.log10(max_val * max_val / mse)


def _gaussian_window(sigma: float, truncate: float = 3.5, max_radius: int | None = None) -> torch.Tensor:
    # scipy.ndimage.gaussian_filter's kernel as skimage uses it: radius int(truncate*sigma+0.5), cut to max_radius
    radius = int(truncate * sigma + 0.5)
    if max_radius is not None:
        radius = min(radius, max_radius)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(
    pred,
    target,
    data_range: float = 1.0,
    sigma: float = 1.5,
    K1: float = 0.01,
    K2: float = 0.03,
) -> float:
    """Mean structural similarity with a Gaussian window (11 x 11 for sigma 1.5).

    Matches ``skimage.metrics.structural_similarity(pred, target, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``: the local
    statistics come from a separable Gaussian filter, the SSIM map is averaged over the
    valid region (the border of radius 5 is excluded) and then over channels.

    Images smaller than the window (a side under 11 px for sigma 1.5) are measured with the window cut to
    the largest odd size that fits, 2 r + 1 <= the shorter side (same weights, renormalised; r = 0 compares
    pixel by pixel), where skimage refuses them.

    Args:
        pred, target: [H,W,C] or [H,W], at least 1 x 1.
    """
    x, y = _as64(pred), _as64(target)
    if x.shape != y.shape:
        raise ValueError(f"ssim: pred {tuple(x.shape)} and target {tuple(y.shape)} differ")
    if x.dim() == 2:
        x, y = x[..., None], y[..., None]
    if min(x.shape[:2]) < 1:
        raise ValueError(f"ssim: empty image {tuple(x.shape[:2])}")
    w1 = _gaussian_window(sigma, max_radius=(min(x.shape[:2]) - 1) // 2)
    k = w1.numel()
    c = x.shape[-1]
    wx = w1.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = w1.view(1, 1, k, 1).expand(c, 1, k, 1)

    def filt(img):  # [C,H,W] -> valid-region Gaussian mean [C,H-k+1,W-k+1]
        out = torch.nn.functional.conv2d(img[None], wx, groups=c)
        return torch.nn.functional.conv2d(out, wy, groups=c)[0]

    x, y = x.permute(2, 0, 1), y.permute(2, 0, 1)
    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2)).mean())


_LPIPS_CACHE = {}  # (net, device) -> (metric, None) or (None, why not): a failure is tried once


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_lpips(net: str = "alex", device=None):
    """(LPIPS metric ``f(pred [H,W,3], target [H,W,3]) -> float`` on inputs in [0,1], None), or (None, the reason
    it is unavailable: "lpips package not installed", "weights could not be loaded: ...").

    ``lpips`` is imported lazily, here and never at import of fieldfit. The network is built once per (net,
    device) and cached, and so is a failure."""
    key = (net, str(device))
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = _build_lpips(net, device)
    return _LPIPS_CACHE[key]


def lpips_fn(net: str = "alex", device=None):
    """The LPIPS metric of ``load_lpips``, or None where it is unavailable."""
    return load_lpips(net, device)[0]


def _build_lpips(net: str, device):
    try:
        import lpips  # noqa: PLC0415 - optional dependency, lazy on purpose
    except ImportError as e:
        if getattr(e, "name", None) == "lpips":
            return None, "lpips package not installed (pip install lpips)"
        return None, f"lpips package cannot be imported ({_first_line(e)})"
    try:  # the backbone's weights may need a download (none on an offline machine)
        model = lpips.LPIPS(net=net, verbose=False).eval()
        if device is not None:
            model = model.to(device)
    except Exception as e:  # noqa: BLE001 - whatever stops the weights from loading is the reason reported
        return None, f"weights could not be loaded: {_first_line(e)}"
    return _lpips_metric(model), None


def _lpips_metric(model):
    def fn(pred, target) -> float:
        dev = next(model.parameters()).device
        p = torch.as_tensor(pred, dtype=torch.float32, device=dev).permute(2, 0, 1)[None]
        t = torch.as_tensor(target, dtype=torch.float32, device=dev).permute(2, 0, 1)[None]
        with torch.no_grad():
            return float(model(p * 2 - 1, t * 2 - 1))

    return fn
