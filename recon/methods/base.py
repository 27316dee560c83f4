"""What a reconstruction method is: the one object that knows everything that differs between methods.

The trainer, the recon stage, field files and meshing ask the method and never test which one it is. A new
method is a subclass in a file of its own plus one entry in ``METHODS`` (recon/methods/__init__.py).
"""
from __future__ import annotations

import torch
import trimesh
from torch import nn

from ..config import ReconConfig
from ..fields.box import FieldBox
from ..fields.grid import DenseGrid
from ..render.rays import RayBatch
from ..start.prepare import Start
from ..render.volume import RenderOutput


class Method:
    """A method trained by volume rendering. Subclasses set:

    ``section``: its config section under ``recon`` (``lr``, ``geometry_lr_scale``, its ``lambda_*``, and for
    grid methods ``resolution`` / ``coarse_resolution`` / ``upsample_at``);
    ``losses``: the names of the losses it adds, each weighted by ``recon.<section>.lambda_<name>``;
    ``geometry_grid``: the module name of the grid that goes coarse-to-fine ("" for none).
    """

    section: str = ""
    losses: tuple[str, ...] = ()
    geometry_grid: str = ""
    trains = True

    def settings(self, cfg: ReconConfig):
        return getattr(cfg, self.section)

    # -- building, saving, loading --------------------------------------------------------------------------
    def start_resolution(self, cfg: ReconConfig) -> int | None:
        """The grid resolution the start's initial SDF is computed at (None: the method needs none): a grid
        method's full resolution, where the unseen priors work best."""
        return self.settings(cfg).resolution if self.geometry_grid else None

    def sampled_to_first_grid(self, cfg: ReconConfig, start: Start, values: torch.Tensor) -> torch.Tensor:
        """Values [R^3] on the start's grid at the geometry grid's first resolution (the coarse one in a
        coarse-to-fine run: the fine start sampled down)."""
        from ..start.prepare import sampled_down

        s = self.settings(cfg)
        return sampled_down(values, start.resolution, s.coarse_resolution or s.resolution, start.box)

    def make(self, cfg: ReconConfig, box: FieldBox, init: torch.Tensor | None, device) -> nn.Module:
        """The field from its settings and box (the same call builds a new field and rebuilds a saved one)."""
        raise NotImplementedError

    def initial_values(self, cfg: ReconConfig, start: Start, box: FieldBox) -> torch.Tensor | None:
        """The geometry grid's starting values from the start's SDF (None: the method's own blank start)."""
        return None

    def build(self, cfg: ReconConfig, start: Start, device="cpu") -> nn.Module:
        box = box_from_start(start)
        return self.make(cfg, box, self.initial_values(cfg, start, box), device).to(device)

    def meta(self, field) -> dict:
        """What load() needs beyond the config and the state dict."""
        return {**field.box.meta(), "grid_resolutions": grid_resolutions(field)}

    def load(self, cfg: ReconConfig, meta: dict, state: dict, device="cpu") -> nn.Module:
        field = self.make(cfg, FieldBox.from_meta(meta, state), None, device)
        match_grids(field, meta.get("grid_resolutions", {}))
        field.load_state_dict(state)
        return field.to(device)

    # -- training ---------------------------------------------------------------------------------------------
    def render(self, cfg: ReconConfig, field, rays: RayBatch, step: int, generator) -> RenderOutput:
        raise NotImplementedError

    def extra_losses(self, cfg: ReconConfig, field, out: RenderOutput, weight) -> dict[str, torch.Tensor]:
        """The method's own weighted losses; ``weight(name)`` is the scheduled weight of ``lambda_<name>``."""
        return {}

    def geometry_parameters(self, field) -> list[nn.Parameter]:
        """Parameters stepped at ``lr * geometry_lr_scale`` (the rest at ``lr``)."""
        return []

    def coarse_to_fine(self, cfg: ReconConfig) -> tuple[int, str, int]:
        """(step, grid, resolution): when the geometry grid goes to its full resolution; step -1 if never."""
        if not self.geometry_grid:
            return -1, "", 0
        s = self.settings(cfg)
        if not s.coarse_resolution or s.coarse_resolution == s.resolution:
            return -1, self.geometry_grid, s.resolution
        return int(s.upsample_at * cfg.steps), self.geometry_grid, s.resolution

    def live_stats(self, field) -> dict[str, float]:
        """Numbers worth watching during training (shown with the progress bar, kept in run.json)."""
        return {}

    def surface_width(self, field) -> float | None:
        """How soft the rendered surface is, in world units (NeuS: 1 / inv_s); None where it has no such scale.
        The guard stops a run whose surface sharpens far below a pixel."""
        return None

    def finish(self, cfg: ReconConfig, field, foreground: RayBatch) -> dict:
        """After training, with a sample of foreground rays: anything the field fixes before it is saved."""
        return {}

    # -- meshing ----------------------------------------------------------------------------------------------
    def mesh(self, field, mesh_cfg) -> trimesh.Trimesh:
        raise NotImplementedError

    def colors(self, field):
        """The field's view-independent colour, points [N, 3] -> [N, 3] in [0, 1] (vertex colours and baked
        textures); None for a method without colour."""
        return field.vertex_color


def mesh_level_set(fn, field, level: float, inside: str, mesh_cfg) -> trimesh.Trimesh:
    """Marching cubes of ``fn`` over the field's box at ``level``, coloured by the field, cleaned as configured."""
    from ..mesh.meshing import extract_mesh

    lo, hi = field.aabb()
    return extract_mesh(fn, lo, hi, level=level, color_fn=field.vertex_color, inside=inside,
                        device=next(field.buffers()).device, resolution=mesh_cfg.resolution, chunk=mesh_cfg.chunk,
                        keep_components=mesh_cfg.keep_components, smooth_iters=mesh_cfg.smooth_iters)


def box_from_start(start: Start) -> FieldBox:
    """The field's box, and the hull's SDF over it for meshing: the surface may stand one hull voxel outside
    the hull (the error of the hull's grid distance)."""
    from ..mesh.meshing import grid_points

    lo, hi = start.box
    resolution = min(start.hull.resolution, 128)
    return FieldBox(lo, hi, start.hull.hull_sdf(grid_points(lo, hi, resolution)), resolution, start.hull.voxel_size)


def grid_resolutions(field) -> dict[str, int]:
    """Each grid's resolution by module name (saved with checkpoints and field files)."""
    return {name: m.resolution for name, m in field.named_modules() if isinstance(m, DenseGrid)}


def match_grids(field, resolutions: dict[str, int]) -> None:
    """Re-grid the field's grids to saved resolutions (coarse-to-fine runs) before loading its state."""
    modules = dict(field.named_modules())
    for name, res in resolutions.items():
        if name in modules and modules[name].resolution != res:
            modules[name].resample(res)
