"""SJC's voxel NeRF (recon.method=voxel): density + colour grids rendered by ray marching."""
from __future__ import annotations

from ..fields.voxel import VoxelNeRF
from ..render.volume import render_voxel, surface_density
from .base import Method, mesh_level_set


class Voxel(Method):
    section = "voxel"
    losses = ("density_laplacian",)
    geometry_grid = "density_grid"

    def make(self, cfg, box, init, device):
        return VoxelNeRF(cfg.voxel, box, density_init=init)

    def initial_values(self, cfg, start, box):
        if start.sdf is None:
            return None
        voxel = float((box.aabb_max - box.aabb_min).max()) / (start.resolution - 1)
        density = cfg.voxel.init_density * (-start.sdf / voxel).clamp(-1.0, 1.0)  # +d in, -d out: a 2-voxel ramp
        return self.sampled_to_first_grid(cfg, start, density)

    def render(self, cfg, field, rays, step, generator):
        return render_voxel(field, rays, cfg.voxel.step_size, generator=generator, background=cfg.background)

    def extra_losses(self, cfg, field, out, weight):
        if weight("density_laplacian") and out.surface_points is not None:
            return {"density_laplacian": weight("density_laplacian") * field.laplacian_loss(out.surface_points)}
        return {}

    def geometry_parameters(self, field):
        return [field.density_grid.values]

    def finish(self, cfg, field, foreground):
        """Measure where the renders put the surface, so meshing cuts at the matching density."""
        level = surface_density(field, foreground, cfg.voxel.step_size)
        if level == level:  # not nan
            field.surface_level.fill_(level)
        return {"surface_level": level}

    def mesh(self, field, mesh_cfg):
        return mesh_level_set(field.mesh_density, field, mesh_cfg.level(field.auto_threshold()), "above", mesh_cfg)
