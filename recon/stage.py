"""The recon stage: posed views -> a saved field (NeuS SDF, voxel NeRF, or the carved hull) -> mesh.

    result = reconstruct(cfg.recon, views, out_dir, seed=0, device="cpu")
    mesh = field_to_mesh(load_field(result.field_path), cfg.export.mesh)

Every method carves the visual hull first (seconds): it is the ``hull`` method's result, the optimisers'
sampling bounds (rays are marched only where the hull is) and their initial shape.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes
from img2mesh.data.views import Views

from .config import ReconConfig, check_recon_config
from .field_file import FIELD_NAME, save_field
from .methods import METHODS
from .methods.base import Method
from .render.occupancy import OccupancyGrid, use_occupancy_grid
from .render.ray_bounds import candidate_dilation, ray_bounds_fn
from .render.rays import RayBatch, RaySampler, build_ray_bank, take_rays
from .start.masks import soften_binary_masks
from .start.prepare import START_NAME, Start, load_start, prepare_start, save_start, start_key
from .start.views import resize_views, validate_views
from .train.trainer import CHECKPOINT_NAME, train
from .train.view_corrections import ViewCorrections, view_confidence

log = logging.getLogger(__name__)
CORRECTIONS_NAME = "view_corrections.json"  # each view's learned pose and colour correction


@dataclass
class ReconResult:
    method: str
    field_path: Path
    steps: int
    seconds: float
    psnr: float  # training PSNR of the last batches (nan for the hull)
    stats: dict = field(default_factory=dict)


def foreground_sample(sampler: RaySampler, seed: int, n: int = 8192) -> RayBatch:
    """Up to ``n`` foreground rays, seeded (what a method's finish() measures the trained field on)."""
    pick = torch.randperm(len(sampler.fg_idx), generator=torch.Generator().manual_seed(seed))[:n]
    return RayBatch(**take_rays(sampler.bank, sampler.fg_idx[pick]))


def pixel_size(views: Views, start: Start) -> float:
    """World size of a pixel at the object: the mean camera distance to the box's centre over the focal length."""
    center = (start.box[0] + start.box[1]) / 2.0
    return float(np.mean([np.linalg.norm(v.camera.position - center) / v.camera.focal for v in views]))


# -- the stage ------------------------------------------------------------------------------------------------
def method_for(cfg: ReconConfig) -> Method:
    if cfg.method not in METHODS:
        raise InputError(f"unknown recon.method {cfg.method!r}: use one of {', '.join(METHODS)}")
    return METHODS[cfg.method]


def cached_start(cfg: ReconConfig, method: Method, views: Views, out_dir: Path, confidence) -> tuple[Start, bool]:
    """The start from ``out_dir/start.pt`` when it was computed from the same config, resolution, views and
    their ``confidence``; else computed and saved there. Returns (start, whether it was cached)."""
    resolution = method.start_resolution(cfg)
    path = out_dir / START_NAME
    start = load_start(path, start_key(cfg.init, views, resolution, confidence))
    if start is not None:
        return start, True
    start = prepare_start(cfg.init, views, resolution, confidence)
    save_start(path, start)
    return start, False


def reconstruct(cfg: ReconConfig, views: Views, out_dir, *, seed: int = 0, device="cpu", resume: bool = True,
                max_steps: int | None = None, start: Start | None = None) -> ReconResult:
    """Views -> ``out_dir/field.pt``. Resumes from ``out_dir/checkpoint.pt`` when ``resume``.

    ``start``: the start to train from (:func:`~img2mesh.recon.start.prepare.prepare_start` on the same views, resized
    to ``cfg.image_size``); by default the one cached in ``out_dir/start.pt``, computed when missing or stale.
    ``max_steps``: stop after that many steps (of ``cfg.steps``), keeping the checkpoint so a later call
    finishes the run; the field file then holds the partly trained field.
    """
    check_recon_config(cfg)
    method = method_for(cfg)
    validate_views(views)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    views = resize_views(views, cfg.image_size)
    views, softened = soften_binary_masks(views, cfg.mask_edges)
    confidence = view_confidence(views, cfg.views.falloff, cfg.views.input_weight)
    cached = False
    if start is None:
        start, cached = cached_start(cfg, method, views, out_dir, confidence)
    stats = {"start": "cached" if cached else "computed", "start_seconds": round(start.seconds, 2), **start.carving,
             "up": [round(float(u), 4) for u in start.up], "softened_masks": softened}
    with torch.random.fork_rng(devices=[]):  # seeded, so runs repeat
        torch.manual_seed(seed)
        field_ = method.build(cfg, start, device)
    if not method.trains:
        path = save_field(out_dir / FIELD_NAME, cfg.method, method.settings(cfg), field_, method.meta(field_))
        return ReconResult(cfg.method, path, 0, time.time() - t0, float("nan"), stats)

    bank = build_ray_bank(views, ray_bounds_fn(cfg.init, start), confidence, cfg.background, device,
                          dilate_px=candidate_dilation(cfg.init, start, views))
    stats["rays_in_bounds"] = int(bank.hit.sum())
    stats["setup_seconds"] = round(time.time() - t0, 2)
    sampler = RaySampler(bank, cfg.rays_per_batch, cfg.foreground_fraction, cfg.patch_size, cfg.patches_per_batch)
    meta = method.meta(field_)
    occupancy = None
    if use_occupancy_grid(cfg.occupancy, device):
        occupancy = OccupancyGrid(cfg.occupancy, start.box, device, seed)
        stats["occupancy_grid"] = "nerfacc-cuda" if occupancy.use_cuda else "torch"
    fixed = [v.is_input for v in views]
    fixed[0] = fixed[0] or not any(fixed)  # one view fixes the frame and the colours
    corrections = ViewCorrections(fixed, cfg.views.pose, cfg.views.appearance)
    reach = float(np.linalg.norm(np.maximum(np.abs(start.box[0]), np.abs(start.box[1]))))
    trained = train(cfg, method, field_, sampler, out_dir, seed=seed, resume=resume, meta=meta, stop_at=max_steps,
                    occupancy=occupancy, pixel_size=pixel_size(views, start), corrections=corrections, reach=reach)
    if occupancy is not None:
        stats["occupied_fraction"] = round(occupancy.occupied_fraction, 4)
    if cfg.views.pose or cfg.views.appearance:
        names = [v.name or f"view {i}" for i, v in enumerate(views)]
        atomic_write_bytes(out_dir / CORRECTIONS_NAME, json.dumps(corrections.per_view(names), indent=1).encode())
    stats.update(method.finish(cfg, field_, foreground_sample(sampler, seed)))
    path = save_field(out_dir / FIELD_NAME, cfg.method, method.settings(cfg), field_, method.meta(field_))
    if trained.steps >= cfg.steps:
        (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # the field file supersedes it
    stats.update(losses=trained.losses, resumed_from=trained.resumed_from, train_seconds=round(trained.seconds, 2),
                 **trained.live)
    return ReconResult(cfg.method, path, trained.steps, time.time() - t0, trained.psnr, stats)


