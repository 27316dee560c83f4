"""Rendering a trained field from any camera: novel views, held-out views, consistency checks.

Rays are clipped to the field's box and rendered in chunks by the renderer given (the one the trainer uses,
with deterministic sample positions: no jitter), so what is rendered is what training saw.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from img2mesh.data.cameras import Camera, camera_rays

from .rays import RayBatch, ray_aabb
from .volume import RenderOutput


def render_cameras(render_rays: Callable[[RayBatch], RenderOutput], aabb, cameras: list[Camera], background: float,
                   device, *, chunk: int = 4096) -> list[np.ndarray]:
    """RGBA [H, W, 4] float32 per camera: straight colour, alpha = rendered opacity. ``render_rays``: a batch of
    rays -> its render composited on ``background``; ``aabb``: (min [3], max [3]) of the field's box."""
    lo, hi = (torch.as_tensor(np.asarray(b, np.float32), device=device) for b in aabb)
    images = []
    for cam in cameras:
        origins, dirs = camera_rays(cam, device)
        near, far = ray_aabb(origins, dirs, lo, hi)
        hit = torch.nonzero(far > near).squeeze(1)
        rgb = torch.ones(origins.shape[0], 3, device=device)
        opacity = torch.zeros(origins.shape[0], device=device)
        for s in range(0, len(hit), chunk):
            idx = hit[s:s + chunk]
            n = len(idx)
            batch = RayBatch(origins[idx], dirs[idx], torch.zeros(n, 3, device=device), torch.zeros(n, device=device),
                             near[idx], far[idx], torch.ones(n, device=device))
            with torch.enable_grad():  # NeuS normals may come from autograd
                out = render_rays(batch)
            rgb[idx], opacity[idx] = out.rgb.detach(), out.opacity.detach()
        a = opacity.clamp(0.0, 1.0)[:, None]
        straight = torch.where(a > 1e-4, (rgb - background * (1.0 - a)) / a.clamp_min(1e-4), torch.ones_like(rgb))
        rgba = torch.cat([straight.clamp(0.0, 1.0), a], dim=-1).reshape(cam.height, cam.width, 4)
        images.append(rgba.cpu().numpy().astype(np.float32))
    return images
