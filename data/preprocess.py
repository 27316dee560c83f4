"""Recentre and resize an object image the way Zero-1-to-3 was trained (docs/reference.md section 2).

Foreground = alpha > 127; the colours are composited onto white; the foreground's bounding box is
cropped and resized so its longer side is ``foreground_ratio * size`` (200 of 256 px by default), then
pasted centred on a white ``size x size`` canvas. The mask goes through the same crop and resize.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .cameras import Camera
from .config import DataConfig
from .errors import InputError
from .views import on_white

ALPHA_THRESHOLD = 127


@dataclass
class PreparedInput:
    """The input view, ready for the generator."""

    rgba: np.ndarray  # [size, size, 4] float32 in [0, 1]: colour on white, alpha = resized mask
    camera: Camera  # the input camera at `size` px

    @property
    def rgb_on_white(self) -> np.ndarray:  # [size, size, 3] float32
        return on_white(self.rgba)


def foreground_box(alpha: np.ndarray, threshold: int = ALPHA_THRESHOLD) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the pixels with alpha > threshold."""
    ys, xs = np.nonzero(alpha > threshold)
    if len(xs) == 0:
        raise InputError("no foreground object found in the image (the mask is empty); "
                         "use an image with a clear object or give it an alpha channel")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def recentre(rgb: np.ndarray, alpha: np.ndarray, size: int = 256, foreground_ratio: float = 200 / 256) -> np.ndarray:
    """uint8 RGB [H, W, 3] + uint8 alpha [H, W] -> float32 RGBA [size, size, 4], object centred on white."""
    assert rgb.shape[:2] == alpha.shape, f"rgb {rgb.shape} and alpha {alpha.shape} differ in size"
    if not 0.0 < foreground_ratio <= 1.0:
        raise InputError(f"foreground_ratio must be in (0, 1], got {foreground_ratio}")
    x0, y0, x1, y1 = foreground_box(alpha)
    a = alpha.astype(np.float32)[..., None] / 255.0
    composited = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    crop = np.concatenate([composited, alpha.astype(np.float32)[..., None]], axis=-1)[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    target = max(1, round(foreground_ratio * size))
    scale = target / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    channels = [
        np.asarray(Image.fromarray(crop[..., c]).resize((new_w, new_h), Image.BICUBIC)) for c in range(4)
    ]
    resized = np.clip(np.stack(channels, axis=-1), 0.0, 255.0)
    canvas = np.zeros((size, size, 4), dtype=np.float32)
    canvas[..., :3] = 255.0
    ox, oy = (size - new_w) // 2, (size - new_h) // 2
    canvas[oy:oy + new_h, ox:ox + new_w] = resized
    return canvas / 255.0


def preprocess(rgb: np.ndarray, alpha: np.ndarray, camera: Camera, cfg: DataConfig) -> PreparedInput:
    rgba = recentre(rgb, alpha, cfg.size, cfg.foreground_ratio)
    return PreparedInput(rgba=rgba, camera=camera.resized(cfg.size))
