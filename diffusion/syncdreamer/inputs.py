"""The input image exactly as SyncDreamer's own script prepares it (docs/reference.md section 9).

It starts from the RGBA the data stage gives (the image's own alpha, or rembg's), not from Zero-1-to-3's
recentred 256 px input: SyncDreamer frames the object its own way, and its details change the numbers.

- ``crop_size`` c > 0: the bounding box of every pixel with alpha > 0 is cropped with PIL, whose right and
  bottom edges are exclusive (the box's last row and column fall outside), resized (PIL bicubic) so its
  longer side is int(scale * side) with scale = c / longer side (truncation: it can land one pixel short of
  c), and pasted at ((size - w) // 2, (size - h) // 2) on a transparent black square of the model's size.
  c is in pixels of a 256 px image; a model of another size scales it.
- ``crop_size`` -1: the whole image is padded square (transparent black, centred the same way) and resized
  straight to the model's size.
PIL resizes RGBA premultiplied, so no colour bleeds in from transparent pixels. Then /255, composited on
white (rgb * a + 1 - a) and mapped to [-1, 1]. An RGB image (no alpha) is padded with black and not
composited; the crop needs an alpha, so it takes crop_size -1 only.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from img2mesh.data.errors import InputError

REFERENCE_SIZE = 256  # the size crop_size is measured at


def padded_square(image: Image.Image, size: int) -> Image.Image:
    """``image`` centred on a ``size`` x ``size`` canvas of zeros (transparent black for RGBA, black for RGB)."""
    canvas = Image.new(image.mode, (size, size), 0)
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def crop_to_object(image: Image.Image, alpha: np.ndarray, size: int, crop_size: int) -> Image.Image:
    """The alpha bounding box, its longer side resized to about ``crop_size`` (at 256 px), padded to ``size``."""
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        raise InputError("the input's mask is empty: there is no object to crop (use an image with an object)")
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))  # PIL: right and bottom excluded
    crop = image.crop(box)
    h, w = crop.height, crop.width
    if h == 0 or w == 0:
        raise InputError(f"the input's object is {xs.max() - xs.min() + 1}x{ys.max() - ys.min() + 1} px, too thin "
                         "to crop: use a larger image or diffusion.syncdreamer.crop_size=-1")
    target = crop_size * size / REFERENCE_SIZE if size != REFERENCE_SIZE else crop_size
    scale = target / max(h, w)
    new_h, new_w = int(scale * h), int(scale * w)
    if new_h < 1 or new_w < 1:
        raise InputError(f"the input's object would be {max(new_w, 0)}x{max(new_h, 0)} px after the crop: raise "
                         "diffusion.syncdreamer.crop_size")
    return padded_square(crop.resize((new_w, new_h), resample=Image.BICUBIC), size)


def prepare_input(rgb: np.ndarray, alpha: np.ndarray | None, size: int, crop_size: int = 200) -> np.ndarray:
    """uint8 RGB [H, W, 3] + uint8 alpha [H, W] (or None) -> float32 [size, size, 3] in [-1, 1]: what
    SyncDreamer's encoders see."""
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, f"rgb must be uint8 [H, W, 3], got {rgb.shape}"
    if crop_size != -1 and crop_size < 1:
        raise InputError(f"diffusion.syncdreamer.crop_size must be -1 (keep the framing) or a size in pixels, got {crop_size}")
    if alpha is None:
        if crop_size != -1:
            raise InputError("the input has no alpha channel to crop the object by: give it one (or let rembg make "
                             "it), or set diffusion.syncdreamer.crop_size=-1")
        image = Image.fromarray(rgb, "RGB")
    else:
        assert alpha.shape == rgb.shape[:2], f"alpha {alpha.shape} does not match rgb {rgb.shape[:2]}"
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    if crop_size != -1:
        image = crop_to_object(image, np.asarray(alpha), size, crop_size)
    else:
        image = padded_square(image, max(image.width, image.height)).resize((size, size), resample=Image.BICUBIC)
    pixels = np.asarray(image).astype(np.float32) / 255.0
    colour = pixels[:, :, :3]
    if image.mode == "RGBA":
        mask = pixels[:, :, 3:]
        colour = colour * mask + 1 - mask  # on white
    return colour * 2.0 - 1.0
