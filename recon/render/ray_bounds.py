"""Where the training rays are marched: inside the dilated hull (or a sphere), and which pixels' rays can
reach it at all."""
from __future__ import annotations

import numpy as np
import torch

from img2mesh.data.views import Views

from ..sections import InitConfig
from ..start.hull import hull_box
from ..start.prepare import Start
from .rays import march_bounds, ray_aabb, ray_sphere


def ray_bounds_fn(cfg: InitConfig, start: Start):
    """(origins, dirs) -> (near, far): inside the dilated hull (``recon.init.bounds=hull``) or the sphere."""
    lo, hi = (torch.from_numpy(b) for b in start.box)
    if cfg.bounds == "sphere":
        return lambda o, d: ray_sphere(o, d, torch.zeros(3, device=o.device), cfg.sphere_radius)
    hull = start.hull

    def bounds(o: torch.Tensor, d: torch.Tensor):
        t0, t1 = ray_aabb(o, d, lo.to(o.device), hi.to(o.device))
        return march_bounds(o, d, t0, t1, hull.coarse_sdf, start.margin, 0.5 * hull.voxel_size)

    return bounds


def candidate_dilation(cfg: InitConfig, start: Start, views: Views) -> int:
    """Pixels a ray may sit off the mask and still meet the dilated hull: the margin (+1 voxel) seen from
    the nearest camera distance to the hull's bounding sphere, rounded up, plus a pixel. -1 (all pixels)
    for sphere bounds."""
    if cfg.bounds != "hull":
        return -1
    reach = start.margin + start.hull.voxel_size
    lo, hi = hull_box(start.hull)
    center, radius = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo) / 2.0)  # the hull box's bounding sphere
    nearest = min(float(np.linalg.norm(v.camera.position - center)) for v in views) - radius
    focal = max(v.camera.focal for v in views)
    return int(np.ceil(reach * focal / max(nearest, 1e-3))) + 1
