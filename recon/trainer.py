"""The optimisation loop shared by NeuS and the voxel NeRF: sample rays, render, named losses, step.

Deterministic on CPU for a seed: every random draw (ray batches, stratified jitter, near-view offsets)
comes from one ``torch.Generator`` whose state is saved in each checkpoint with the field and optimiser,
and schedules are pure functions of the step, so a killed run resumed from its last checkpoint ends
bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from img2mesh.data.io import atomic_write_bytes
from img2mesh.data.progress import progress

from . import losses as L
from .config import ReconConfig
from .rays import RayBatch, RaySampler, jittered_patch_rays
from .schedules import cos_anneal_ratio, learning_rate_factor, loss_weight
from .volume_render import RenderOutput, render_neus, render_voxel

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    steps: int
    seconds: float  # wall time of the steps run in this call (a resumed run counts only its own)
    psnr: float  # of the last 50 batches
    losses: dict  # last step's weighted losses
    resumed_from: int  # 0 if started fresh


def render_batch(cfg: ReconConfig, field, rays: RayBatch, step: int, generator) -> RenderOutput:
    """One explicit switch between the two volume renderers."""
    if cfg.method == "neus":
        n = cfg.neus
        return render_neus(field, rays, n.n_samples, n.n_importance, n.up_sample_steps,
                           cos_anneal=cos_anneal_ratio(step, n.cos_anneal_steps), generator=generator,
                           background=cfg.background, up_sample_growth=n.up_sample_growth)
    if cfg.method == "voxel":
        return render_voxel(field, rays, cfg.voxel.step_size, generator=generator, background=cfg.background)
    raise ValueError(f"no volume renderer for method {cfg.method!r}")


def make_optimizer(cfg: ReconConfig, field) -> torch.optim.Optimizer:
    """Geometry grids (SDF / density values) step at ``lr * grid_lr_scale``, everything else at ``lr``
    (``recon.lr`` for NeuS, ``recon.voxel.lr`` for the voxel NeRF). Each group keeps its unscheduled lr in
    'base_lr'."""
    lr, scale = (cfg.lr, cfg.neus.grid_lr_scale) if cfg.method == "neus" else (cfg.voxel.lr, cfg.voxel.grid_lr_scale)
    geometry, rest = [], []
    for name, p in field.named_parameters():
        (geometry if name in ("sdf_grid.values", "density_grid.values") else rest).append(p)
    groups = [g for g in ({"params": geometry, "base_lr": lr * scale}, {"params": rest, "base_lr": lr}) if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    if cfg.optimizer == "adamw":  # the reference's AdamW; no weight decay (it would shrink grids to zero)
        return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(groups, lr=lr)
    raise ValueError(f"unknown recon.optimizer {cfg.optimizer!r}: use adamw, adam or adamax")


def compute_losses(cfg: ReconConfig, field, batch: RayBatch, out: RenderOutput, step: int,
                   near: RenderOutput | None) -> dict[str, torch.Tensor]:
    """The named, weighted losses of one step (weights from config x their schedules)."""
    lc, total = cfg.loss, cfg.steps
    names = ("rgb", "mask", "eikonal", "depth_smooth", "near_view", "emptiness", "sparsity", "curvature", "area",
             "density_laplacian")
    w = {name: loss_weight(getattr(lc, f"lambda_{name}"), lc.schedules.get(name), step, total) for name in names}
    terms: dict[str, torch.Tensor] = {}
    if w["rgb"]:
        terms["rgb"] = w["rgb"] * L.rgb_loss(out.rgb, batch.rgb, batch.weight, lc.rgb)
    if w["mask"]:
        terms["mask"] = w["mask"] * L.mask_loss(out.opacity, batch.alpha, batch.weight)
    if w["eikonal"] and out.gradients is not None:
        terms["eikonal"] = w["eikonal"] * L.eikonal_loss(out.gradients)
    if w["sparsity"]:
        terms["sparsity"] = w["sparsity"] * L.sparsity_loss(out.opacity, batch.alpha)
    if w["emptiness"]:
        terms["emptiness"] = w["emptiness"] * L.emptiness_loss(out.weights, lc.emptiness_scale)
    if w["curvature"] and cfg.method == "neus" and cfg.neus.sdf == "grid" and out.surface_points is not None:
        terms["curvature"] = w["curvature"] * field.curvature_loss(out.surface_points)
    if w["density_laplacian"] and cfg.method == "voxel" and out.surface_points is not None:
        terms["density_laplacian"] = w["density_laplacian"] * field.laplacian_loss(out.surface_points)
    if w["area"] and cfg.method == "neus" and cfg.neus.sdf == "grid":
        terms["area"] = w["area"] * field.surface_area()
    n_patch = batch.n_patches * batch.patch_size**2
    if n_patch and w["depth_smooth"]:
        p = batch.patch_size
        depth = out.depth[:n_patch].reshape(-1, p, p)
        mask = (batch.alpha[:n_patch] > 0.5).reshape(-1, p, p)
        terms["depth_smooth"] = w["depth_smooth"] * L.depth_smoothness_loss(depth, mask)
    if near is not None and w["near_view"]:
        fg = (batch.alpha[:n_patch] > 0.5).to(out.depth.dtype)
        terms["near_view"] = w["near_view"] * L.near_view_loss(out.rgb[:n_patch], near.rgb, out.depth[:n_patch],
                                                               near.depth, fg)
    return terms


def _checkpoint_bytes(step: int, field, optimizer, generator, cfg: ReconConfig, meta: dict, occupancy) -> bytes:
    buf = io.BytesIO()
    torch.save({"step": step, "field": field.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
                "meta": meta, "occupancy": occupancy.state_dict() if occupancy is not None else None}, buf)
    return buf.getvalue()


def grid_resolutions(field) -> dict[str, int]:
    """Each grid's resolution by module name (saved with checkpoints and field files)."""
    return {name: m.resolution for name, m in field.named_modules() if hasattr(m, "resolution")}


def match_grids(field, resolutions: dict[str, int]) -> None:
    """Re-grid the field's grids to saved resolutions (coarse-to-fine runs) before loading its state."""
    modules = dict(field.named_modules())
    for name, res in resolutions.items():
        if name in modules and modules[name].resolution != res:
            modules[name].resample(res)


def train(cfg: ReconConfig, field, sampler: RaySampler, out_dir: Path, *, seed: int = 0, resume: bool = True,
          meta: dict | None = None, stop_at: int | None = None, occupancy=None) -> TrainResult:
    """Optimise ``field`` for ``cfg.steps`` steps, checkpointing to ``out_dir/checkpoint.pt``.

    ``occupancy``: an :class:`~img2mesh.recon.occupancy.OccupancyGrid` that follows the field and cuts each
    batch's rays to its occupied cells (None: the rays' hull bounds as they are).
    ``stop_at``: leave after that many steps with a checkpoint written (a later call resumes from it);
    schedules still follow ``cfg.steps``.
    """
    out_dir = Path(out_dir)
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(cfg, field)
    start, ckpt_path = 0, out_dir / CHECKPOINT_NAME
    cfg_json = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config"] == cfg_json:
            match_grids(field, ckpt["meta"].get("grid_resolutions", {}))
            field.load_state_dict(ckpt["field"])
            optimizer = make_optimizer(cfg, field)
            optimizer.load_state_dict(ckpt["optimizer"])
            generator.set_state(ckpt["generator"])
            if occupancy is not None and ckpt.get("occupancy") is not None:
                occupancy.load_state_dict(ckpt["occupancy"])
            start = int(ckpt["step"])
            log.info("resuming reconstruction from step %d", start)
        else:
            log.warning("ignoring %s: it was written with another recon config", ckpt_path)
    upsample_step, upsample_grid, upsample_to = coarse_to_fine(cfg)
    t0, psnrs, terms = time.time(), [], {}
    end = cfg.steps if stop_at is None else max(start, min(cfg.steps, int(stop_at)))
    bar = progress(range(start, end), total=cfg.steps, desc=f"recon {cfg.method}", initial=start)
    for step in bar:
        if step == upsample_step:
            getattr(field, upsample_grid).resample(upsample_to)
            optimizer = make_optimizer(cfg, field)  # fresh moments for the re-gridded parameters
        factor = learning_rate_factor(step, cfg.steps, cfg.warmup_steps, cfg.lr_final_ratio)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        batch = sampler.sample(generator)
        if occupancy is not None:
            occupancy.update(step, field)
            batch = occupancy.tighten(batch)
        out = render_batch(cfg, field, batch, step, generator)
        near = None
        if batch.n_patches and cfg.loss.lambda_near_view > 0:
            near = render_batch(cfg, field, jittered_patch_rays(batch, cfg.loss.near_view_jitter, generator), step,
                                generator)
        terms = compute_losses(cfg, field, batch, out, step, near)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        psnrs = (psnrs + [L.psnr(out.rgb, batch.rgb)])[-50:]
        if step % 10 == 0:
            live = {"loss": f"{float(loss.detach()):.4f}", "psnr": f"{sum(psnrs) / len(psnrs):.2f}"}
            if cfg.method == "neus":
                live["inv_s"] = f"{float(field.inv_s().detach()):.0f}"
            bar.set_postfix(live)
        done = step + 1
        periodic = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
        if done < cfg.steps and (periodic or done == end):
            meta_now = {**(meta or {}), "grid_resolutions": grid_resolutions(field)}
            atomic_write_bytes(ckpt_path, _checkpoint_bytes(done, field, optimizer, generator, cfg, meta_now,
                                                                occupancy))
    bar.close()
    return TrainResult(end, time.time() - t0, sum(psnrs) / max(1, len(psnrs)),
                       {k: float(v.detach()) for k, v in terms.items()}, start)


def coarse_to_fine(cfg: ReconConfig) -> tuple[int, str, int]:
    """(step, grid, resolution): when the geometry grid (NeuS's SDF grid, the voxel NeRF's density grid)
    goes from its coarse to its full resolution; step -1 if the run is not coarse-to-fine."""
    if cfg.method == "neus" and cfg.neus.sdf == "grid":
        n = cfg.neus
        coarse, full, at, grid = n.grid_coarse_resolution, n.grid_resolution, n.grid_upsample_at, "sdf_grid"
    elif cfg.method == "voxel":
        v = cfg.voxel
        coarse, full, at, grid = v.coarse_resolution, v.resolution, v.upsample_at, "density_grid"
    else:
        return -1, "", 0
    if not coarse or coarse == full:
        return -1, grid, full
    return int(at * cfg.steps), grid, full
