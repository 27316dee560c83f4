"""Loading user images robustly: any common format, mode and bit depth, EXIF orientation honoured.

Documented fallbacks (each logged as a warning, never silent):
- larger than ``max_side`` pixels on a side: downscaled (Lanczos) so the longer side is ``max_side``;
- an alpha channel that is fully opaque carries no mask: it is dropped and the background is removed
  from the colour image instead.
Refused with one :class:`InputError` line saying why: anything that cannot be read, an image smaller than
``MIN_SIDE`` pixels on a side (no object to see), and a fully transparent image (nothing visible).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

log = logging.getLogger(__name__)

MAX_SIDE = 8192
MIN_SIDE = 16  # below this no object can be made out; Zero-1-to-3 itself works at 256 px
Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit below, with a downscale instead of an error
SUPPORTED = "PNG, JPEG, WebP, BMP, TIFF"


@dataclass
class LoadedImage:
    rgb: np.ndarray  # [H, W, 3] uint8
    alpha: np.ndarray | None  # [H, W] uint8, or None where the image carries no usable mask
    path: Path
    notes: list[str]  # fallbacks that were applied, in words


def _to_8bit(im: Image.Image) -> Image.Image:
    """High-bit-depth single-channel modes ('I;16', 'I', 'F') -> 'L', scaled by the type's range."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        scale = 65535.0
    elif im.mode == "F":
        scale = 1.0 if a.max() <= 1.0 else float(a.max())
    else:  # 'I' (32-bit): PNG 16-bit greyscale can arrive as this
        scale = 65535.0 if a.max() > 255 else 255.0
    return Image.fromarray((np.clip(a / scale, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "L")


def load_image(path: str | os.PathLike, max_side: int = MAX_SIDE) -> LoadedImage:
    """Read an image file into 8-bit RGB plus an optional alpha mask."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image {path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image (use --views for a folder of posed views)")
    if path.stat().st_size == 0:
        raise InputError(f"image {path} is an empty file (0 bytes)")
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            im.load()  # decode now so truncated files fail here, not later
            im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image img2mesh can read (supported: {SUPPORTED})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path} could not be decoded, the file looks truncated or corrupt ({e})") from None
    if im.width == 0 or im.height == 0:
        raise InputError(f"image {path} has zero size ({im.width}x{im.height})")
    if min(im.size) < MIN_SIDE:
        raise InputError(f"image {path} is {im.width}x{im.height} pixels, too small to show an object: give one at "
                         f"least {MIN_SIDE} px on each side (256 px or more works best)")

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = _to_8bit(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if im.mode == "CMYK":
        im = im.convert("RGB")
    im = im.convert("RGBA") if has_alpha else im.convert("RGB")

    if max(im.size) > max_side:
        old = im.size
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        notes.append(f"downscaled from {old[0]}x{old[1]} to {im.width}x{im.height} (limit {max_side} px)")

    arr = np.asarray(im)
    rgb = np.ascontiguousarray(arr[..., :3])
    alpha = np.ascontiguousarray(arr[..., 3]) if has_alpha else None
    if alpha is not None:
        if alpha.max() == 0:
            raise InputError(f"image {path} is fully transparent (alpha 0 everywhere): nothing in it is visible; if "
                             "its colours show the object, save it without the alpha channel")
        if alpha.min() == 255:
            notes.append("alpha channel is fully opaque: ignored, background removed from the colours")
            alpha = None
    for note in notes:
        log.warning("%s: %s", path.name, note)
    return LoadedImage(rgb, alpha, path, notes)
