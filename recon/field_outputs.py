"""What a trained field gives, by its method's rule: its mesh, its colour, its renders from any camera."""
from __future__ import annotations

import numpy as np
import trimesh

from img2mesh.data.cameras import Camera

from .mesh.config import MeshConfig
from .methods import METHODS
from .render.field_views import render_cameras


def field_colors(field_):
    """The field's colour function for vertex colours and baked textures (points [N, 3] -> [N, 3]), or None."""
    return METHODS[field_.method].colors(field_)


def field_to_mesh(field_, mesh_cfg: MeshConfig) -> trimesh.Trimesh:
    """The field's surface by its method's rule (SDF at 0, density at its threshold, the hull's level), cleaned,
    with vertex colours."""
    return METHODS[field_.method].mesh(field_, mesh_cfg)


def render_field(field_, cfg, cameras: list[Camera], *, chunk: int = 4096) -> list[np.ndarray]:
    """RGBA [H, W, 4] float32 per camera (straight colour, alpha = rendered opacity), rendered by the field's
    method as in training at its last step; ``cfg``: the recon config it was trained with."""
    method = METHODS[cfg.method]
    device = next(field_.buffers()).device
    return render_cameras(lambda batch: method.render(cfg, field_, batch, cfg.steps, None), field_.aabb(), cameras,
                          cfg.background, device, chunk=chunk)
