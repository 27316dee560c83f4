"""Where a field lives: its box and the carved hull it is bounded by when meshed."""
from __future__ import annotations

import torch

from .grid import DenseGrid


class FieldBox:
    """Where a field lives, saved with it: the box its grids cover and the carved hull's signed distance
    over it (meshing keeps the surface within ``bound_margin`` of the hull, where the views saw the object)."""

    def __init__(self, aabb_min, aabb_max, bound_sdf: torch.Tensor | None = None, bound_resolution: int = 0,
                 bound_margin: float = 0.0):
        self.aabb_min = torch.as_tensor(aabb_min, dtype=torch.float32).reshape(3)
        self.aabb_max = torch.as_tensor(aabb_max, dtype=torch.float32).reshape(3)
        self.bound_sdf, self.bound_resolution, self.bound_margin = bound_sdf, int(bound_resolution), float(bound_margin)

    @property
    def center(self) -> torch.Tensor:
        return (self.aabb_min + self.aabb_max) / 2.0

    @property
    def radius(self) -> float:
        return float((self.aabb_max - self.aabb_min).norm() / 2.0)

    def meta(self) -> dict:
        return {"aabb_min": self.aabb_min.tolist(), "aabb_max": self.aabb_max.tolist(),
                "bound_resolution": self.bound_resolution, "bound_margin": self.bound_margin}

    @classmethod
    def from_meta(cls, meta: dict, state: dict) -> "FieldBox":
        return cls(meta["aabb_min"], meta["aabb_max"], state.get("bound.values"), meta.get("bound_resolution", 0),
                   meta.get("bound_margin", 0.0))

    def bound_grid(self) -> DenseGrid | None:
        if self.bound_sdf is None:
            return None
        return DenseGrid(self.bound_resolution, 1, self.aabb_min, self.aabb_max, self.bound_sdf, trainable=False)
