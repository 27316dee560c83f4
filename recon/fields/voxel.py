"""SJC's voxel NeRF: a dense density grid and a colour grid, trilinearly interpolated.

sigma(x) = softplus(d(x) * exp(d_scale) + shift), with d the density grid, d_scale a learned scalar and
shift = -1 (SJC), so an untouched voxel is nearly empty. Colour is a sigmoid of a 3-channel grid, optionally
made view dependent by a tiny MLP on (colour features, view direction).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .grid import DenseGrid


class VoxelNeRF(nn.Module):
    """density(x [N, 3]) -> sigma [N] per world unit; color(x, dirs) -> rgb [N, 3]. The density grid has
    ``resolution``^3 vertices (from ``density_init`` [R^3] or 0); ``cfg``: the voxel settings."""

    def __init__(self, cfg, box, resolution: int, density_init: torch.Tensor | None = None):
        super().__init__()
        self.box = box
        aabb_min, aabb_max = box.aabb_min, box.aabb_max
        self.shift = float(cfg.density_shift)
        self.density_grid = DenseGrid(resolution, 1, aabb_min, aabb_max, 0.0 if density_init is None else density_init)
        self.d_scale = nn.Parameter(torch.tensor(float(cfg.density_scale_init)))
        channels = 3 if not cfg.view_dependent else 8
        self.color_grid = DenseGrid(cfg.color_resolution, channels, aabb_min, aabb_max, 0.0)
        self.color_mlp = None
        if cfg.view_dependent:
            self.color_mlp = nn.Sequential(nn.Linear(channels + 3, 32), nn.ReLU(), nn.Linear(32, 3))
        # Meshing level measured after training (volume_render.surface_density); 0 = not measured.
        self.register_buffer("surface_level", torch.tensor(0.0))
        self.bound = box.bound_grid()
        self.bound_margin = box.bound_margin  # world units the surface may stand outside the hull (NeuSField)

    def raw_density(self, x: torch.Tensor) -> torch.Tensor:
        return self.density_grid(x)[:, 0] * torch.exp(self.d_scale) + self.shift  # [N]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.raw_density(x))

    def opacity(self, x: torch.Tensor, cell: float) -> torch.Tensor:
        """Opacity [N] of a ``cell``-long section through points [N, 3] (the occupancy grid's measure)."""
        return 1.0 - torch.exp(-self.density(x) * cell)

    def color(self, x: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        feat = self.color_grid(x)  # [N, C]
        if self.color_mlp is None:
            return torch.sigmoid(feat)
        return torch.sigmoid(self.color_mlp(torch.cat([feat, dirs], dim=-1)))

    def laplacian_loss(self, points: torch.Tensor) -> torch.Tensor:
        """The density grid's squared Laplacian at the vertices nearest ``points`` [N, 3] (visible samples)."""
        return self.density_grid.laplacian_loss(points)

    def mesh_density(self, x: torch.Tensor) -> torch.Tensor:
        """Density for meshing, zero outside the hull dilated by ``bound_margin``, where the views saw empty space."""
        sigma = self.density(x)
        if self.bound is not None:
            sigma = torch.where(self.bound(x)[:, 0] > self.bound_margin, torch.zeros_like(sigma), sigma)
        return sigma

    def aabb(self) -> tuple[list[float], list[float]]:
        return self.density_grid.aabb_min.tolist(), self.density_grid.aabb_max.tolist()

    def vertex_color(self, x: torch.Tensor) -> torch.Tensor:
        """Colour [N, 3] at points [N, 3]; a view-dependent model is asked from outside, towards the centre."""
        centre = 0.5 * (self.density_grid.aabb_min + self.density_grid.aabb_max)
        dirs = centre - x
        return self.color(x, dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-6))

    def auto_threshold(self) -> float:
        """Default meshing level: the density that makes one voxel half opaque (ln 2 / voxel size), or the
        density at which training renders cross half transmittance (measured after training) if lower.
        The measured one alone sits too high once d_scale has made the shell a step (it samples the step's
        top), which cuts thin parts such as legs off."""
        one_voxel = float(math.log(2.0) / self.density_grid.voxel_size.mean())
        measured = float(self.surface_level)
        return min(measured, one_voxel) if measured > 0 else one_voxel
