"""Hard mask edges, softened before training.

A binary mask (a thresholded matte, SAM, a renderer without antialiasing) says every edge pixel is wholly
object or wholly background: an edge sharper than the pixel grid can show. The mask loss then keeps rewarding
a sharper silhouette, and NeuS's sharpness (inv_s) runs away until samples miss the surface and colour
training collapses. The edge pixels' coverage is what a soft mask would have said: a blur of the binary mask
by about a pixel estimates it, so the silhouette has a finite width to match and the sharpness settles.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from img2mesh.data.errors import InputError
from img2mesh.data.views import View, Views

SOFT_SHARE = 0.2  # an edge where fewer than this share of pixels are partly covered is a binary one


def edge_pixels(alpha: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels with both object (>= 0.5) and background in their 3x3 neighbourhood."""
    inside = torch.from_numpy(alpha >= 0.5).float()[None, None]
    grown = F.max_pool2d(inside, 3, stride=1, padding=1)
    shrunk = -F.max_pool2d(-inside, 3, stride=1, padding=1)
    return (grown > shrunk)[0, 0].numpy()


def is_binary_mask(alpha: np.ndarray) -> bool:
    """True when the mask's edge carries no partial coverage (almost every edge pixel is 0 or 1)."""
    edge = edge_pixels(alpha)
    if not edge.any():
        return False
    a = alpha[edge]
    return float(((a > 0.02) & (a < 0.98)).mean()) < SOFT_SHARE


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """[H, W, C] float32 blurred by a separable Gaussian of ``sigma_px`` pixels (edges replicated)."""
    radius = max(1, int(np.ceil(3 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    k = k / k.sum()
    c = image.shape[2]
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, C, H, W]
    t = F.pad(t, (radius, radius, radius, radius), mode="replicate")
    t = F.conv2d(t, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    t = F.conv2d(t, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return t[0].permute(1, 2, 0).numpy()


def soften_edges(rgba: np.ndarray, sigma_px: float = 0.5) -> np.ndarray:
    """RGBA [H, W, 4] with its alpha blurred by ``sigma_px`` pixels and the pixels that gain coverage coloured by
    the object around them (their own colour is background's). At 0.5 px a straight edge's border pixels get
    about 0.9 and 0.1: the mean coverage of a pixel whose centre fell inside (outside) an edge that lies
    anywhere between the two centres is 0.875 (0.125). The 0.5 level, which carving uses, does not move."""
    alpha = rgba[..., 3:]
    blurred = gaussian_blur(np.concatenate([rgba[..., :3] * alpha, alpha], axis=-1), sigma_px)
    soft = blurred[..., 3:].clip(0.0, 1.0)
    around = blurred[..., :3] / np.maximum(soft, 1e-6)
    rgb = np.where(alpha >= 0.5, rgba[..., :3], around).clip(0.0, 1.0)
    return np.concatenate([rgb, soft], axis=-1).astype(np.float32)


def soften_binary_masks(views: Views, mode: str = "auto") -> tuple[Views, int]:
    """Views whose binary masks are softened (``mode``: auto = those detected as binary, soften = all,
    keep = none); returns them and how many were softened."""
    if mode not in ("auto", "soften", "keep"):
        raise InputError(f"recon.mask_edges={mode!r}: use auto, soften or keep")
    out, n = [], 0
    for v in views:
        if mode == "soften" or (mode == "auto" and is_binary_mask(v.rgba[..., 3])):
            v, n = View(soften_edges(v.rgba), v.camera, v.name, v.is_input), n + 1
        out.append(v)
    return Views(out), n
