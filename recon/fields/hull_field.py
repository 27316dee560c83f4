"""The ``hull`` method's field: the carved soft hull grid (min over views of the sampled mask), saved like any
other field so the app meshes every method the same way."""
from __future__ import annotations

import numpy as np
import torch
import trimesh
from torch import nn


class HullField(nn.Module):
    """soft [R, R, R] over the cube ``center`` +- ``bounds``; the object is where soft >= threshold (0.5)."""

    def __init__(self, soft: torch.Tensor, bounds: float, center=(0.0, 0.0, 0.0), threshold: float = 0.5):
        super().__init__()
        self.register_buffer("soft", soft.float())
        self.bounds, self.threshold = float(bounds), float(threshold)
        self.center = np.asarray(center, dtype=np.float64).reshape(3)

    def meta(self) -> dict:
        return {"bounds": self.bounds, "center": self.center.tolist(), "threshold": self.threshold}

    @classmethod
    def from_meta(cls, meta: dict, state: dict) -> "HullField":
        return cls(state["soft"], meta["bounds"], meta.get("center", (0.0, 0.0, 0.0)), meta.get("threshold", 0.5))

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.bounds, self.center + self.bounds

    def mesh(self, mesh_cfg) -> trimesh.Trimesh:
        """The carved hull's surface (the grid's own resolution: the carving already fixed the detail)."""
        from ..mesh.meshing import mesh_from_grid

        level = mesh_cfg.level(self.threshold)
        return mesh_from_grid(self.soft.cpu().numpy(), self.center - self.bounds, self.center + self.bounds, level,
                              inside="above", keep_components=mesh_cfg.keep_components,
                              smooth_iters=mesh_cfg.smooth_iters)
