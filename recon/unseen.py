"""The carved hull's underside, which no camera of a ring above the object sees, relaxed to a minimal surface.

Cameras above an object (a ring at 20 deg, or views generated around an input photo) never see its base: the
hull keeps a cone under a flat base (each silhouette's lower edge sweeps a tangent plane below it), 0.15 deep
under the Stanford bunny, and no colour can remove it since no ray reaches it. Objects rest on their base, so
below the lowest surface any camera sees face-on the hull is replaced by the smallest surface spanning what
the cameras do see: gradient steps on the area of the SDF's zero level (mean-curvature flow), moving only
unseen vertices, only inwards. A cone with a flat rim relaxes to the flat disc. Thin parts higher up
(a tail, an ear's underside) are left alone: the same flow there thins them (measured on spot).
"""
from __future__ import annotations

import torch

from .fields.grid import DenseGrid
from .losses import surface_area


def facing_cameras(grid: DenseGrid, cameras: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    """Per vertex [R^3], the largest cosine between its SDF normal and the direction to any camera
    [C, 3] (occlusion ignored): ~0 on the hull's tangent cones, ~1 on a face a camera looks at."""
    r, h = grid.resolution, grid.voxel_size
    v = grid.values.detach()[:, 0].reshape(r, r, r)
    normal = torch.stack(torch.gradient(v, spacing=[float(s) for s in h]), dim=-1).reshape(-1, 3)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    positions = grid.vertex_positions().to(normal)
    best = torch.empty(r**3, device=normal.device)
    for s in range(0, r**3, chunk):
        to_cam = cameras.to(normal)[None] - positions[s:s + chunk, None]  # [n, C, 3]
        cos = (normal[s:s + chunk, None] * to_cam).sum(-1) / to_cam.norm(dim=-1).clamp_min(1e-9)
        best[s:s + chunk] = cos.amax(dim=1)
    return best


@torch.no_grad()
def unseen_base(grid: DenseGrid, cameras: torch.Tensor, seen_cos: float = 0.17, face_on_cos: float = 0.5) -> torch.Tensor:
    """Vertices [R^3] bool that may move: below the lowest surface vertex some camera sees face-on (normal
    within 60 deg of its direction: cosine >= ``face_on_cos``), except surface vertices some camera sees at
    all (cosine > ``seen_cos``, 80 deg). Deeper vertices move freely (their normals, which point to the
    nearest surface, are undefined on the distance field's ridges)."""
    voxel = float(grid.voxel_size.max())
    sdf = grid.values[:, 0]
    cos = facing_cameras(grid, cameras)
    z = grid.vertex_positions()[:, 2].to(sdf)
    surface = sdf.abs() < 1.5 * voxel
    face_on = surface & (cos >= face_on_cos)
    if not face_on.any():
        return torch.zeros_like(face_on)
    return (z < z[face_on].min()) & ~(surface & (cos > seen_cos))


def relax_unseen_base(grid: DenseGrid, cameras: torch.Tensor, steps: int, step_voxels: float = 0.3) -> int:
    """Mean-curvature flow of the unseen base of the SDF in ``grid`` (in place, inwards only); returns the
    number of vertices free to move. Adam on the area with ``step_voxels`` x voxel steps, the set of free
    vertices fixed at the start (recomputing it would let the flow climb the seen sides)."""
    free = unseen_base(grid, cameras)
    if steps <= 0 or not free.any():
        return int(free.sum())
    voxel = float(grid.voxel_size.max())
    start = grid.values.detach().clone()
    work = DenseGrid(grid.resolution, 1, grid.aabb_min, grid.aabb_max, start)  # a trainable copy
    optimizer = torch.optim.Adam([work.values], lr=step_voxels * voxel)
    for _ in range(steps):
        occ = work.band_occupancy(lambda x: torch.sigmoid(-x / voxel))
        if occ is None:
            break
        optimizer.zero_grad(set_to_none=True)
        surface_area(occ, voxel).backward()
        work.values.grad[~free] = 0.0
        optimizer.step()
        with torch.no_grad():
            work.values.copy_(torch.maximum(work.values, start))  # inwards only: never outside the hull
    with torch.no_grad():
        grid.values.copy_(work.values.detach())
    return int(free.sum())
