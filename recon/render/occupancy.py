"""Empty-space skipping with nerfacc's occupancy grid, on top of the hull bounds.

The grid is nerfacc's ``OccGridEstimator``: per cell an exponential moving maximum of the field's opacity
over a cell, binarised at a threshold, refreshed every few steps from the field itself (all cells during a
warm-up, then a quarter of them at random plus the occupied ones). It only ever narrows the rays' hull
bounds: as the field carves concavities and sharpens, rays shrink to the cells that still hold its surface.

Each training batch's [near, far] is cut to the span of occupied cells along the ray. On CUDA, when
nerfacc's extension compiles, its ``traverse_grids`` marches the rays (feature-detected at run time: the
extension is a JIT build that may fail with a newer torch); anywhere else the same span comes from a
pure-torch march over the same grid (``march_bounds``), so CPU runs can use and test it too.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math

import torch
import torch.nn.functional as F
from nerfacc import OccGridEstimator

from img2mesh.data.errors import InputError

from ..sections import OccupancyConfig
from .rays import RayBatch, march_bounds

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def nerfacc_cuda_available() -> bool:
    """True when CUDA is usable and nerfacc's CUDA extension loads (building it on first use)."""
    if not torch.cuda.is_available():
        return False
    try:
        from nerfacc.cuda._backend import _C
    except Exception as err:  # a failed JIT build raises anything from OSError to RuntimeError
        log.warning("nerfacc's CUDA extension did not build (%s); skipping empty space in pure torch", err)
        return False
    return _C is not None


def use_occupancy_grid(cfg: OccupancyConfig, device) -> bool:
    """``enabled``: auto (on where nerfacc's CUDA extension runs) | on | off."""
    mode = str(cfg.enabled).strip().lower()
    if mode in ("on", "true"):
        return True
    if mode in ("off", "false"):
        return False
    if mode == "auto":
        return torch.device(device).type == "cuda" and nerfacc_cuda_available()
    raise InputError(f"recon.occupancy.enabled={cfg.enabled!r}: use auto, on or off")


class OccupancyGrid(torch.nn.Module):
    """nerfacc's occupancy grid over the field's box, kept in step with the field during training."""

    def __init__(self, cfg: OccupancyConfig, box, device="cpu", seed: int = 0):
        super().__init__()
        self.cfg, self.seed = cfg, seed
        lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in box)
        # Empty until the first update (step 0) fills it from the field.
        self.estimator = OccGridEstimator(torch.cat([lo, hi]), resolution=cfg.resolution, levels=1).to(device)
        self.cell = float(((hi - lo) / cfg.resolution).max())
        self.use_cuda = torch.device(device).type == "cuda" and nerfacc_cuda_available()

    @property
    def occupied_fraction(self) -> float:
        return float(self.estimator.binaries.float().mean())

    @torch.no_grad()
    def update(self, step: int, field) -> None:
        """Refresh from ``field.opacity(x, cell)`` every ``update_every`` steps (nerfacc's EMA update). Its
        random cell picks and jitter are drawn under a seed fixed by the step, so CPU runs stay deterministic
        and resumable."""
        c = self.cfg
        if step % c.update_every:
            return
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if self.use_cuda else []):
            torch.manual_seed(self.seed * 1_000_003 + step)
            self.estimator._update(step, lambda x: field.opacity(x, self.cell), occ_thre=c.threshold,
                                   ema_decay=c.ema_decay, warmup_steps=c.warmup_steps)
        # One sample per cell can miss a surface that cuts only the cell's corner: grow the occupied cells by
        # one, so a ray entering the object always meets an occupied cell before the surface.
        grown = F.max_pool3d(self.estimator.binaries.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
        self.estimator.binaries.copy_(grown)

    @torch.no_grad()
    def spans(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor):
        """[near, far] of each ray cut to its first and last occupied cell (padded by a half-cell step);
        near = far where the ray meets no occupied cell, which renders as empty."""
        step = 0.5 * self.cell
        hit = far > near
        if not self.use_cuda:
            new_near, new_far = march_bounds(origins, dirs, near, far, self.occupied_sdf, 0.0, step)
        else:
            ray_idx, t0, t1 = self.estimator.sampling(origins, dirs, t_min=near, t_max=far, render_step_size=step)
            n = origins.shape[0]
            new_near = torch.full((n,), math.inf, device=near.device).scatter_reduce(0, ray_idx.long(), t0, "amin")
            new_far = torch.full((n,), -math.inf, device=near.device).scatter_reduce(0, ray_idx.long(), t1, "amax")
            found = torch.isfinite(new_near)
            new_near = torch.where(found, (new_near - step).clamp_min(0.0), near)
            new_far = torch.where(found, new_far + step, near)
        new_near = torch.maximum(new_near, near)
        new_far = torch.minimum(new_far, far)
        empty = ~hit | (new_far <= new_near)
        return torch.where(empty, near, new_near), torch.where(empty, near, new_far)

    def occupied_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """-1 in occupied cells, +1 elsewhere (outside the box too): the grid as an implicit for marching."""
        aabb = self.estimator.aabbs[0]
        res = self.estimator.resolution.to(x.device)
        ijk = torch.floor((x - aabb[:3]) / (aabb[3:] - aabb[:3]) * res).long()
        inside = ((ijk >= 0) & (ijk < res)).all(dim=-1)
        ijk = torch.minimum(ijk.clamp_min(0), res - 1)
        occupied = self.estimator.binaries[0][ijk[:, 0], ijk[:, 1], ijk[:, 2]] & inside
        return 1.0 - 2.0 * occupied.to(x.dtype)

    def tighten(self, batch: RayBatch) -> RayBatch:
        near, far = self.spans(batch.origins, batch.dirs, batch.near, batch.far)
        return dataclasses.replace(batch, near=near, far=far)
