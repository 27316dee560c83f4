"""The views a reconstruction starts from: checked for what an optimiser cannot use, resized to the training
size."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from img2mesh.data.errors import InputError
from img2mesh.data.views import View, Views


def validate_views(views: Views) -> None:
    """Clear errors for views an optimiser cannot use (read_views has already checked the folder itself)."""
    if len(views) == 0:
        raise InputError("no views to reconstruct from: the views folder lists no frames")
    h, w = views[0].rgba.shape[:2]
    for v in views:
        if v.rgba.shape[:2] != (h, w):
            raise InputError(f"view {v.name or '?'} is {v.rgba.shape[1]}x{v.rgba.shape[0]} but the first is {w}x{h}: "
                             "all views must have the same size")
    for v in views:
        alpha = v.rgba[..., 3]
        if float(alpha.min()) > 0.5:
            raise InputError(f"view {v.name or '?'} has no mask (alpha is opaque everywhere): give RGBA views with "
                             "the background transparent (run background removal first)")
        if float(alpha.max()) < 0.5:
            raise InputError(f"view {v.name or '?'} has an empty mask (nothing opaque): the object must be visible "
                             "in every view")


def resize_views(views: Views, size: int) -> Views:
    """Views at ``size`` x ``size`` px (area filtering on premultiplied colour, so edges stay clean)."""
    if size <= 0 or all(v.rgba.shape[:2] == (size, size) for v in views):
        return views
    out = []
    for v in views:
        rgba = torch.from_numpy(np.ascontiguousarray(v.rgba)).permute(2, 0, 1)[None]  # [1, 4, H, W]
        premul = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
        small = F.interpolate(premul, size=(size, size), mode="area" if size < v.rgba.shape[0] else "bilinear")
        a = small[:, 3:]
        rgb = torch.where(a > 1e-6, small[:, :3] / a.clamp_min(1e-6), torch.zeros_like(small[:, :3]))
        arr = torch.cat([rgb.clamp(0, 1), a], dim=1)[0].permute(1, 2, 0).numpy().astype(np.float32)
        out.append(View(arr, v.camera.resized(size, size), v.name, v.is_input))
    return Views(out)
