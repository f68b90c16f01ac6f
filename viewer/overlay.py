"""The picture the window shows: the rendered frame brought to the window size, plus text.

Composition happens here, for the window and ``--screenshot`` alike, so a screenshot is the window's
picture pixel for pixel; the window only uploads it as a texture. A frame that a view left on a GPU is
scaled there and copied to the host once; the text is drawn on the CPU.
"""

import numpy as np
import torch

_FONT = None


def upscale(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [h,w,3] -> uint8 [height,width,3], bilinear (pixel centres aligned); a copy-free
    pass-through when the sizes already agree.

    torch's uint8 channels-last bilinear path: 1.6 ms for 800x800 on 2 CPU cores, against 32-40 ms
    through float32 (a fixed cost of every dynamic-resolution frame, whatever the render scale)."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]  # channels-last uint8
    t = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return np.ascontiguousarray(t[0].permute(1, 2, 0).numpy())


def _font():
    global _FONT
    if _FONT is None:
        from PIL import ImageFont

        try:
            _FONT = ImageFont.load_default(size=13)
        except TypeError:  # Pillow < 10.1: the bitmap font
            _FONT = ImageFont.load_default()
    return _FONT


def draw_text(img: np.ndarray, lines: list[str], corner: str = "top-left", pad: int = 6) -> np.ndarray:
    """``lines`` on a dark translucent box in a corner of ``img`` (uint8 [H,W,3]); returns a new array.

    Only the box is converted and blended (a full-frame RGBA composite would cost ~10 ms at 800x800).
    """
    if not lines:
        return img
    from PIL import Image, ImageDraw

    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [probe.textbbox((0, 0), ln, font=font) for ln in lines]
    line_h = max(b[3] - b[1] for b in boxes) + 4
    H, W = img.shape[:2]
    w = min(max(b[2] - b[0] for b in boxes) + 2 * pad, W)
    h = min(line_h * len(lines) + 2 * pad, H)
    x = pad if corner.endswith("left") else max(W - w - pad, 0)
    y = pad if corner.startswith("top") else max(H - h - pad, 0)
    x, y = min(x, max(W - w, 0)), min(y, max(H - h, 0))
    region = img[y:y + h, x:x + w].astype(np.float32) * (1 - 150 / 255)  # the box darkens what is under it
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    for k, ln in enumerate(lines):
        draw.text((pad, pad + k * line_h), ln, font=font, fill=255)
    alpha = np.asarray(layer, np.float32)[..., None] / 255.0
    out = img.copy()
    out[y:y + h, x:x + w] = (region * (1 - alpha) + 255.0 * alpha + 0.5).astype(np.uint8)
    return out


def upscale_on_device(img: torch.Tensor, width: int, height: int) -> np.ndarray:
    """uint8 [h,w,3] tensor on a GPU -> uint8 [height,width,3] numpy: bilinear there (float, rounded), then one
    copy of the final picture to the host."""
    if img.shape[0] != height or img.shape[1] != width:
        t = img.permute(2, 0, 1)[None].float()
        t = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
        img = (t[0].permute(1, 2, 0) + 0.5).clamp(0, 255).to(torch.uint8)
    return img.contiguous().cpu().numpy()


def compose(frame, width: int, height: int, status=(), help_lines=()) -> np.ndarray:
    """The window's picture: ``frame`` (uint8 [h,w,3], numpy or a GPU tensor) scaled to width x height,
    status top-left, help bottom-right."""
    if torch.is_tensor(frame):
        out = upscale_on_device(frame, width, height) if frame.device.type != "cpu" else \
            upscale(frame.numpy(), width, height)
    else:
        out = upscale(frame, width, height)
    if status:
        out = draw_text(out, list(status), "top-left")
    if help_lines:
        out = draw_text(out, list(help_lines), "bottom-right")
    return out
