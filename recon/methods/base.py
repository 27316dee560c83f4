"""What a reconstruction method is: the one object that knows everything that differs between methods.

The trainer, the recon stage, field files and meshing ask the method and never test which one it is. A new
method is a subclass in a file of its own, with its config dataclass, plus one entry in ``METHODS``
(recon/methods/__init__.py); its section of the `recon` config follows from that entry (recon/config.py).
"""
from __future__ import annotations

import torch
import trimesh
from torch import nn

from img2mesh.data.errors import InputError

from ..fields.box import FieldBox
from ..fields.grid import grid_resolutions, match_grids
from ..render.rays import RayBatch
from ..render.volume import RenderOutput
from ..start.prepare import Start, sampled_down

# The hull's SDF saved with every field to bound its mesh (FieldBox) is sampled at the carving grid's
# resolution, but at most this: the bound needs about a hull voxel's accuracy, not more, and it is stored in
# every field file and checkpoint.
MESH_BOUND_MAX_RESOLUTION = 128


class Method:
    """A method trained by volume rendering. Subclasses set:

    ``section`` and ``config``: the name of its section of the `recon` config and that section's dataclass
    (``lr``, ``geometry_lr_scale``, its ``lambda_*``, ...; None for a method without settings);
    ``losses``: the names of the losses it adds, each weighted by ``recon.<section>.lambda_<name>``;
    ``starts_from_hull``: whether it starts from the start's SDF (the hull's, with the unseen priors).
    """

    section: str = ""
    config: type | None = None
    losses: tuple[str, ...] = ()
    starts_from_hull = False
    trains = True

    def settings(self, cfg):
        """The method's section of the `recon` config ``cfg`` (None for a method without settings)."""
        return getattr(cfg, self.section) if self.config is not None else None

    # -- building, saving, loading --------------------------------------------------------------------------
    def start_resolution(self, cfg) -> int | None:
        """The grid resolution the start's initial SDF is computed at (None: the method needs none)."""
        return None

    def make(self, settings, box: FieldBox, init: torch.Tensor | None, device) -> nn.Module:
        """The field from its settings and box (the same call builds a new field and rebuilds a saved one)."""
        raise NotImplementedError

    def initial_values(self, settings, start: Start, box: FieldBox) -> torch.Tensor | None:
        """The geometry's starting values from the start's SDF (None: the method's own blank start)."""
        return None

    def build(self, cfg, start: Start, device="cpu") -> nn.Module:
        box = box_from_start(start)
        s = self.settings(cfg)
        return self.make(s, box, self.initial_values(s, start, box), device).to(device)

    def meta(self, field) -> dict:
        """What load() needs beyond the settings and the state dict."""
        return {**field.box.meta(), "grid_resolutions": grid_resolutions(field)}

    def load(self, settings, meta: dict, state: dict, device="cpu") -> nn.Module:
        field = self.make(settings, FieldBox.from_meta(meta, state), None, device)
        match_grids(field, meta.get("grid_resolutions", {}))
        field.load_state_dict(state)
        return field.to(device)

    # -- training ---------------------------------------------------------------------------------------------
    def render(self, cfg, field, rays: RayBatch, step: int, generator) -> RenderOutput:
        raise NotImplementedError

    def extra_losses(self, cfg, field, out: RenderOutput, weight) -> dict[str, torch.Tensor]:
        """The method's own weighted losses; ``weight(name)`` is the scheduled weight of ``lambda_<name>``."""
        return {}

    def geometry_parameters(self, field) -> list[nn.Parameter]:
        """Parameters stepped at ``lr * geometry_lr_scale`` (the rest at ``lr``)."""
        return []

    def coarse_to_fine(self, cfg) -> tuple[int, str, int]:
        """(step, grid, resolution): when the geometry grid goes to its full resolution; step -1 if never."""
        return -1, "", 0

    def live_stats(self, field) -> dict[str, float]:
        """Numbers worth watching during training (shown with the progress bar, kept in run.json)."""
        return {}

    def surface_width(self, field) -> float | None:
        """How soft the rendered surface is, in world units (NeuS: 1 / inv_s); None where it has no such scale.
        The guard stops a run whose surface sharpens far below a pixel."""
        return None

    def finish(self, cfg, field, foreground: RayBatch) -> dict:
        """After training, with a sample of foreground rays: anything the field fixes before it is saved."""
        return {}

    # -- meshing ----------------------------------------------------------------------------------------------
    def mesh(self, field, mesh_cfg) -> trimesh.Trimesh:
        raise NotImplementedError

    def colors(self, field):
        """The field's view-independent colour, points [N, 3] -> [N, 3] in [0, 1] (vertex colours and baked
        textures); None for a method without colour."""
        return field.vertex_color


class GridMethod(Method):
    """A method whose geometry is a dense grid (its module ``geometry_grid`` in the field) started from the
    start's SDF, and optionally coarse-to-fine. Its settings have ``resolution``, ``coarse_resolution`` (0:
    none) and ``upsample_at``: the grid starts at ``coarse_resolution`` and is upsampled to ``resolution`` at
    that fraction of the steps; the start's SDF is computed at the full resolution, where the unseen priors
    work best, and sampled down."""

    geometry_grid: str = ""
    starts_from_hull = True

    @staticmethod
    def first_resolution(settings) -> int:
        """The geometry grid's resolution at step 0."""
        return settings.coarse_resolution or settings.resolution

    def start_resolution(self, cfg) -> int | None:
        return self.settings(cfg).resolution if self.starts_from_hull else None

    def sampled_to_first_grid(self, settings, start: Start, values: torch.Tensor) -> torch.Tensor:
        """Values [R^3] on the start's grid at the geometry grid's first resolution."""
        return sampled_down(values, start.resolution, self.first_resolution(settings), start.box)

    def coarse_to_fine(self, cfg) -> tuple[int, str, int]:
        s = self.settings(cfg)
        if self.first_resolution(s) == s.resolution:
            return -1, self.geometry_grid, s.resolution
        return int(s.upsample_at * cfg.steps), self.geometry_grid, s.resolution


def check_coarse_to_fine(settings, key: str) -> None:
    """A grid method's coarse start: 0 (none) or a resolution from 4 up to its full ``resolution``."""
    coarse = settings.coarse_resolution
    if coarse and not 4 <= coarse <= settings.resolution:
        raise InputError(f"{key}.coarse_resolution={coarse}: must be 0 (no coarse start) or a number from 4 to "
                         f"{key}.resolution ({settings.resolution})")


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
    resolution = min(start.hull.resolution, MESH_BOUND_MAX_RESOLUTION)
    return FieldBox(lo, hi, start.hull.coarse_sdf(grid_points(lo, hi, resolution)), resolution, start.hull.voxel_size)
