"""The picture the window shows: the rendered frame brought to the window size, plus text.

Composition happens here, on the CPU, for the window and ``--screenshot`` alike, so a
screenshot is the window's picture pixel for pixel; the window only uploads it as a texture.
"""

import numpy as np
import torch

_FONT = None


def upscale(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [h,w,3] -> uint8 [height,width,3], bilinear (pixel centres aligned); a copy-free
    pass-through when the sizes already agree."""
    if img.shape[0] == height and img.shape[1] == width:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


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
    """``lines`` on a dark translucent box in a corner of ``img`` (uint8 [H,W,3]); returns a new array."""
    if not lines:
        return img
    from PIL import Image, ImageDraw

    font = _font()
    base = Image.fromarray(img).convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    boxes = [draw.textbbox((0, 0), ln, font=font) for ln in lines]
    line_h = max(b[3] - b[1] for b in boxes) + 4
    w = max(b[2] - b[0] for b in boxes) + 2 * pad
    h = line_h * len(lines) + 2 * pad
    x = pad if corner.endswith("left") else max(base.size[0] - w - pad, 0)
    y = pad if corner.startswith("top") else max(base.size[1] - h - pad, 0)
    draw.rectangle([x, y, x + w, y + h], fill=(0, 0, 0, 150))
    for k, ln in enumerate(lines):
        draw.text((x + pad, y + pad + k * line_h), ln, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))


def compose(frame: np.ndarray, width: int, height: int, status: list[str] = (), help_lines: list[str] = ()) -> np.ndarray:
    """The window's picture: ``frame`` scaled to width x height, status top-left, help bottom-right."""
    out = upscale(frame, width, height)
    if status:
        out = draw_text(out, list(status), "top-left")
    if help_lines:
        out = draw_text(out, list(help_lines), "bottom-right")
    return out
