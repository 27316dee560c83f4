"""The hull's unseen base relaxed to a minimal surface: a carved cone under a flat base flattens."""
import math

import numpy as np
import torch

from img2mesh.data.cameras import ring_cameras
from img2mesh.recon.fields.grid import DenseGrid
from img2mesh.recon.unseen import relax_unseen_base, unseen_base

R, LO, HI = 48, [-0.5] * 3, [0.5] * 3
RIM, RADIUS, TOP = -0.2, 0.3, 0.3
TIP = RIM - RADIUS * math.tan(math.radians(20.0))  # the cone a 20-degree ring carves under a flat base


def carved_cylinder() -> DenseGrid:
    """The hull a ring at 20 deg carves around a flat-bottomed cylinder: the cylinder plus a cone below.
    Its SDF is the max of the side's, the top's and the cone's (exact inside, close enough outside)."""
    grid = DenseGrid(R, 1, LO, HI)
    p = grid.vertex_positions()
    r, z = p[:, :2].norm(dim=-1), p[:, 2]
    slope = math.radians(20.0)
    cone = (RIM - z - (RADIUS - r) * math.tan(slope)) * math.cos(slope)
    sdf = torch.maximum(torch.maximum(r - RADIUS, z - TOP), cone)
    with torch.no_grad():
        grid.values.copy_(sdf[:, None])
    return grid


def axis_bottom(grid: DenseGrid) -> float:
    """Height where the SDF crosses zero going up the z axis from below."""
    z = torch.linspace(-0.45, 0.0, 451)
    sdf = grid(torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], dim=-1))[:, 0].detach()
    return float(z[torch.nonzero(sdf <= 0)[0, 0]])


def cameras() -> torch.Tensor:
    return torch.tensor(np.stack([c.position for c in ring_cameras(36, 20.0)]), dtype=torch.float32)


def test_only_the_unseen_base_may_move():
    grid = carved_cylinder()
    free = unseen_base(grid, cameras())
    z = grid.vertex_positions()[:, 2]
    r = grid.vertex_positions()[:, :2].norm(dim=-1)
    assert free.any()
    assert z[free].max() < RIM  # nothing at or above the rim, where the sides are seen face-on
    cone_inside = (z < RIM - 0.03) & (r < 0.1) & (grid.values[:, 0] < 0)
    assert free[cone_inside].float().mean() > 0.85


def test_relaxing_flattens_the_cone_and_keeps_the_seen_surface():
    grid = carved_cylinder()
    before = grid.values.detach().clone()
    assert abs(axis_bottom(grid) - TIP) < 0.015
    relax_unseen_base(grid, cameras(), steps=150)
    voxel = 1.0 / (R - 1)
    assert abs(axis_bottom(grid) - RIM) < 1.2 * voxel, axis_bottom(grid)  # was 0.11 below the rim
    assert (grid.values >= before).all()  # inwards only
    z = grid.vertex_positions()[:, 2]
    assert torch.equal(grid.values[z > RIM + 0.01], before[z > RIM + 0.01])  # the seen cylinder untouched
