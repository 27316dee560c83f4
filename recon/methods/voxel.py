"""SJC's voxel NeRF (recon.method=voxel): density + colour grids rendered by ray marching, and its settings
(`recon.voxel`)."""
from dataclasses import dataclass

from img2mesh.data.settings import check_fields, number

from ..fields.voxel import VoxelNeRF
from ..render.volume import render_voxel, surface_density
from .base import GridMethod, check_coarse_to_fine, mesh_level_set


@dataclass
class VoxelConfig:
    """SJC's voxel NeRF (`recon.method=voxel`): dense density + colour grids,
    sigma = softplus(d * exp(d_scale) + shift)."""

    resolution: int = number(128, low=4)  # density voxels per side of the box
    coarse_resolution: int = number(0, low=0)  # >0: the density grid starts at this resolution ...
    upsample_at: float = number(0.5, low=0, high=1)  # ... upsampled at this fraction of the steps
    color_resolution: int = number(128, low=2)  # colour voxels per side
    density_shift: float = -1.0  # SJC's shift: empty space has sigma = softplus(-1) at d = 0
    step_size: float = number(0.004, above=0)  # ray-march step in world units: about half a voxel
    init_density: float = number(1.0, above=0)  # hull start: grid value inside the hull (outside: -init_density)
    density_scale_init: float = 5.3  # d_scale at step 0: sigma ramps from empty to opaque across 2 voxels
    view_dependent: bool = False  # colour grid only (SJC); true adds a tiny MLP on (features, view dir)
    lr: float = number(0.01, low=0)  # Adam on dense grids (SJC's Adamax 0.05 drove an SDS loss, not views)
    geometry_lr_scale: float = number(1.0, low=0)  # density-grid lr = lr * this
    geometry_lr_view_size: int = number(0, low=0)  # as in NeuSConfig
    # Squared Laplacian of the density grid at the visible samples: damps voxel-scale noise. Density values
    # are ~1 across the shell (an SDF's ~1 voxel), so useful weights are ~100x below an SDF's curvature's.
    lambda_density_laplacian: float = number(1e-5, low=0)

    def check(self, key: str) -> None:
        """Refuse a bad value of this section (``key``: its dotted name) with one line (InputError)."""
        check_fields(self, key)
        check_coarse_to_fine(self, key)


class Voxel(GridMethod):
    section, config = "voxel", VoxelConfig
    losses = ("density_laplacian",)
    geometry_grid = "density_grid"

    def make(self, settings, box, init, device):
        return VoxelNeRF(settings, box, self.first_resolution(settings), density_init=init)

    def initial_values(self, settings, start, box):
        if start.initial_sdf is None:
            return None
        voxel = float((box.aabb_max - box.aabb_min).max()) / (start.resolution - 1)
        density = settings.init_density * (-start.initial_sdf / voxel).clamp(-1.0, 1.0)  # +d in, -d out: a 2-voxel ramp
        return self.sampled_to_first_grid(settings, start, density)

    def render(self, cfg, field, rays, step, generator):
        return render_voxel(field, rays, self.settings(cfg).step_size, generator=generator, background=cfg.background)

    def extra_losses(self, cfg, field, out, weight):
        if weight("density_laplacian") and out.surface_points is not None:
            return {"density_laplacian": weight("density_laplacian") * field.laplacian_loss(out.surface_points)}
        return {}

    def geometry_parameters(self, field):
        return [field.density_grid.values]

    def finish(self, cfg, field, foreground):
        """Measure where the renders put the surface, so meshing cuts at the matching density."""
        level = surface_density(field, foreground, self.settings(cfg).step_size)
        if level == level:  # not nan
            field.surface_level.fill_(level)
        return {"surface_level": level}

    def mesh(self, field, mesh_cfg):
        return mesh_level_set(field.mesh_density, field, mesh_cfg.level(field.auto_threshold()), "above", mesh_cfg)
