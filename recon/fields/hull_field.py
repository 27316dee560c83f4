"""The ``hull`` method's field: the carved soft hull grid (min over views of the sampled mask), saved like any
other field so the app meshes every method the same way."""
from __future__ import annotations

import numpy as np
import torch
import trimesh
from torch import nn

from ..start.hull import HullResult


class HullField(nn.Module):
    """soft [R, R, R] over [-bounds, bounds]^3; the object is where soft >= threshold (0.5)."""

    def __init__(self, soft: torch.Tensor, bounds: float, threshold: float = 0.5):
        super().__init__()
        self.register_buffer("soft", soft.float())
        self.bounds, self.threshold = float(bounds), float(threshold)

    @classmethod
    def from_hull(cls, hull: HullResult) -> "HullField":
        return cls(torch.from_numpy(np.ascontiguousarray(hull.soft)), hull.bounds)

    def meta(self) -> dict:
        return {"bounds": self.bounds, "threshold": self.threshold}

    @classmethod
    def from_meta(cls, meta: dict, state: dict) -> "HullField":
        return cls(state["soft"], meta["bounds"], meta.get("threshold", 0.5))

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(3, -self.bounds), np.full(3, self.bounds)

    def mesh(self, mesh_cfg) -> trimesh.Trimesh:
        """The carved hull's surface (the grid's own resolution: the carving already fixed the detail)."""
        from ..mesh.meshing import mesh_from_grid

        level = mesh_cfg.level(self.threshold)
        return mesh_from_grid(self.soft.cpu().numpy(), -self.bounds, self.bounds, level, inside="above",
                              keep_components=mesh_cfg.keep_components, smooth_iters=mesh_cfg.smooth_iters)
