"""The optimisation loop every method shares: sample rays, render, named losses, step. What differs between
methods (rendering, their own losses, parameter groups, coarse-to-fine) the method object answers.

Deterministic on CPU for a seed: every random draw (ray batches, stratified jitter, near-view offsets)
comes from one ``torch.Generator`` whose state is saved in each checkpoint with the field and optimiser,
and schedules are pure functions of the step, so a killed run resumed from its last checkpoint ends
bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import torch

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes
from img2mesh.data.progress import progress

from ..fields.grid import grid_resolutions, match_grids
from ..render.rays import RayBatch, RaySampler, jittered_patch_rays
from ..render.volume import RenderOutput
from ..sections import GENERIC_LOSSES, check_losses
from . import losses as L
from .guard import Guard
from .schedules import learning_rate_factor, loss_weight
from .view_corrections import ViewCorrections

if TYPE_CHECKING:  # the loop is given the config and the method; it imports neither
    from ..config import ReconConfig
    from ..methods.base import Method

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    steps: int
    seconds: float  # wall time of the steps run in this call (a resumed run counts only its own)
    psnr: float  # of the last 50 batches
    losses: dict  # last step's weighted losses
    resumed_from: int  # 0 if started fresh
    live: dict  # the method's live stats at the end (NeuS: inv_s)


def geometry_lr(settings, view_size: int) -> float:
    """The geometry parameters' rate for views of ``view_size`` px: ``lr * geometry_lr_scale``, scaled down
    for views under ``geometry_lr_view_size`` in proportion to their size, to half at most."""
    factor = 1.0
    if settings.geometry_lr_view_size > 0 and view_size > 0:
        factor = min(1.0, max(0.5, view_size / settings.geometry_lr_view_size))
    return settings.lr * settings.geometry_lr_scale * factor


def make_optimizer(cfg: ReconConfig, method: Method, field, corrections: ViewCorrections | None = None,
                   view_size: int = 0) -> torch.optim.Optimizer:
    """The method's geometry parameters step at :func:`geometry_lr` for ``view_size`` px views (0: unscaled),
    everything else at ``lr`` (both from the method's section); the per-view corrections at ``recon.views``'
    rates. Each group keeps its unscheduled lr in 'base_lr'."""
    s = method.settings(cfg)
    geometry = {id(p) for p in method.geometry_parameters(field)}
    groups = [{"params": [p for p in field.parameters() if id(p) in geometry], "base_lr": geometry_lr(s, view_size)},
              {"params": [p for p in field.parameters() if id(p) not in geometry], "base_lr": s.lr}]
    if corrections is not None:
        groups += [{"params": corrections.pose_parameters(), "base_lr": cfg.views.pose_lr},
                   {"params": corrections.color_parameters(), "base_lr": cfg.views.appearance_lr}]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["lr"] = g["base_lr"]
    # The fused update is one kernel per tensor instead of a dozen passes over the grids (experiments/README.md).
    if cfg.optimizer == "adamw":  # the reference's AdamW; no weight decay (it would shrink grids to zero)
        return torch.optim.AdamW(groups, lr=s.lr, weight_decay=0.0, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=s.lr, fused=True)
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(groups, lr=s.lr)
    raise InputError(f"unknown recon.optimizer {cfg.optimizer!r}: use adam, adamw or adamax")


def loss_weights(cfg: ReconConfig, method: Method, step: int) -> dict[str, float]:
    """Every loss's weight at ``step``: ``recon.loss.lambda_<name>`` for the losses all methods have,
    ``recon.<section>.lambda_<name>`` for the method's own, times the loss's schedule."""
    lc = cfg.loss
    lambdas = {name: getattr(lc, f"lambda_{name}") for name in GENERIC_LOSSES}
    lambdas.update({name: getattr(method.settings(cfg), f"lambda_{name}") for name in method.losses})
    return {name: loss_weight(lam, lc.schedules.get(name), step, cfg.steps) for name, lam in lambdas.items()}


def compute_losses(cfg: ReconConfig, method: Method, field, batch: RayBatch, out: RenderOutput, step: int,
                   near: RenderOutput | None) -> dict[str, torch.Tensor]:
    """The named, weighted losses of one step (weights from config x their schedules)."""
    w = loss_weights(cfg, method, step)
    terms: dict[str, torch.Tensor] = {}
    if w["rgb"]:
        terms["rgb"] = w["rgb"] * L.rgb_loss(out.rgb, batch.rgb, batch.weight, cfg.loss.rgb)
    if w["mask"]:
        terms["mask"] = w["mask"] * L.mask_loss(out.opacity, batch.alpha, batch.weight)
    if w["sparsity"]:
        terms["sparsity"] = w["sparsity"] * L.sparsity_loss(out.opacity, batch.alpha)
    if w["emptiness"]:
        terms["emptiness"] = w["emptiness"] * L.emptiness_loss(out.weights, cfg.loss.emptiness_scale)
    terms.update(method.extra_losses(cfg, field, out, lambda name: w[name]))
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


def correction_penalties(cfg: ReconConfig, corrections: ViewCorrections) -> dict[str, torch.Tensor]:
    """The pull of the per-view corrections back to none (recon.views.lambda_pose / lambda_appearance)."""
    pose, color = corrections.penalty()
    terms = {}
    if corrections.pose and cfg.views.lambda_pose:
        terms["pose"] = cfg.views.lambda_pose * pose
    if corrections.appearance and cfg.views.lambda_appearance:
        terms["appearance"] = cfg.views.lambda_appearance * color
    return terms


def _checkpoint_bytes(step: int, model, optimizer, generator, cfg: ReconConfig, meta: dict, occupancy,
                      guard: Guard) -> bytes:
    buf = io.BytesIO()
    torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
                "meta": meta, "occupancy": occupancy.state_dict() if occupancy is not None else None,
                "guard": guard.state_dict()}, buf)
    return buf.getvalue()


def corrected_batch(batch: RayBatch, corrections: ViewCorrections, reach: float) -> RayBatch:
    """The batch's rays through their views' corrected cameras."""
    o, d, near, far = corrections.move_rays(batch.origins, batch.dirs, batch.near, batch.far, batch.view, reach)
    return dataclasses.replace(batch, origins=o, dirs=d, near=near, far=far)


def recolored(out: RenderOutput, batch: RayBatch, corrections: ViewCorrections, background: float) -> RenderOutput:
    """The render of ``batch`` in its views' corrected colours."""
    return dataclasses.replace(out, rgb=corrections.recolor(out.rgb, out.opacity, batch.view, background))


def train(cfg: ReconConfig, method: Method, field, sampler: RaySampler, out_dir: Path, *, seed: int = 0,
          resume: bool = True, meta: dict | None = None, stop_at: int | None = None, occupancy=None,
          pixel_size: float = 0.0, corrections: ViewCorrections | None = None, reach: float = 1.0) -> TrainResult:
    """Optimise ``field`` (built by ``method``) for ``cfg.steps`` steps, checkpointing to ``out_dir/checkpoint.pt``.

    ``occupancy``: an :class:`~img2mesh.recon.render.occupancy.OccupancyGrid` that follows the field and cuts each
    batch's rays to its occupied cells (None: the rays' hull bounds as they are).
    ``stop_at``: leave after that many steps with a checkpoint written (a later call resumes from it);
    schedules still follow ``cfg.steps``.
    ``pixel_size``: world size of a pixel at the object, the guard's yardstick for sharpness (0: not checked).
    ``corrections``: per-view pose and colour corrections trained alongside (None: none); ``reach``: the
    radius around the origin that holds the object (how far a pose correction can move a sample).
    """
    out_dir = Path(out_dir)
    generator = torch.Generator().manual_seed(seed)
    check_losses(cfg, method.losses)
    if corrections is None:
        corrections = ViewCorrections([True] * sampler.bank.n_views, pose=False, appearance=False)
    corrections = corrections.to(sampler.bank.origins.device)
    model = torch.nn.ModuleDict({"field": field, "views": corrections})  # what checkpoints and roll-backs keep
    # One recipe for the first optimizer and every rebuild (resume, re-gridding, roll-back).
    new_optimizer = functools.partial(make_optimizer, cfg, method, field, corrections,
                                      max(sampler.bank.height, sampler.bank.width))
    optimizer = new_optimizer()
    guard = Guard(cfg.guard, pixel_size, f"recon.{method.section or cfg.method}.lr", method.settings(cfg).lr
                  if method.section else None)
    first_step, ckpt_path = 0, out_dir / CHECKPOINT_NAME
    cfg_json = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["config"] == cfg_json:
            match_grids(field, ckpt["meta"].get("grid_resolutions", {}))
            model.load_state_dict(ckpt["model"])
            optimizer = new_optimizer()
            optimizer.load_state_dict(ckpt["optimizer"])
            generator.set_state(ckpt["generator"])
            if occupancy is not None and ckpt.get("occupancy") is not None:
                occupancy.load_state_dict(ckpt["occupancy"])
            guard.load_state_dict(ckpt["guard"])
            first_step = int(ckpt["step"])
            log.info("resuming reconstruction from step %d", first_step)
        else:
            log.warning("ignoring %s: it was written with another recon config", ckpt_path)
    if first_step:  # a checkpoint is written only after a passed check: the resumed state is a healthy one
        guard.remember(first_step, guard.best_psnr, model, optimizer, generator, grid_resolutions(field), occupancy)
    upsample_step, upsample_grid, upsample_to = method.coarse_to_fine(cfg)
    t0, psnrs, terms = time.time(), [], {}
    end = cfg.steps if stop_at is None else max(first_step, min(cfg.steps, int(stop_at)))
    bar = progress(total=cfg.steps, desc=f"recon {cfg.method}", initial=first_step)
    step = first_step
    while step < end:
        if step == upsample_step:
            getattr(field, upsample_grid).resample(upsample_to)
            optimizer = new_optimizer()  # fresh moments for the re-gridded grid
        factor = guard.lr_scale * learning_rate_factor(step, cfg.steps, cfg.warmup_steps, cfg.lr_final_ratio)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        batch = corrected_batch(sampler.sample(generator), corrections, reach)
        if occupancy is not None:
            occupancy.update(step, field)
            batch = occupancy.tighten(batch)
        out = recolored(method.render(cfg, field, batch, step, generator), batch, corrections, cfg.background)
        near = None
        if batch.n_patches and cfg.loss.lambda_near_view > 0:
            jittered = jittered_patch_rays(batch, cfg.loss.near_view_jitter, generator)
            near = recolored(method.render(cfg, field, jittered, step, generator), jittered, corrections,
                             cfg.background)
        terms = compute_losses(cfg, method, field, batch, out, step, near)
        terms.update(correction_penalties(cfg, corrections))
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        psnrs = (psnrs + [L.psnr(out.rgb, batch.rgb)])[-50:]
        done = step + 1
        if step % 10 == 0:
            live = {"loss": f"{float(loss.detach()):.4f}", "psnr": f"{sum(psnrs) / len(psnrs):.2f}"}
            live.update({k: f"{v:.4g}" for k, v in method.live_stats(field).items()})
            bar.set_postfix(live)
        if guard.due(done):
            psnr = sum(psnrs) / len(psnrs) if math.isfinite(float(loss.detach())) else math.nan
            problem = guard.problem(psnr, method.surface_width(field))
            if problem:
                back = guard.give_up_or_roll_back(done, problem)
                log.warning("reconstruction: %s at step %d; back to step %d at %.3gx the learning rate", problem,
                            done, back.step, guard.lr_scale)
                match_grids(field, back.grid_resolutions)
                model.load_state_dict(back.model)
                optimizer = new_optimizer()
                optimizer.load_state_dict(back.optimizer)
                generator.set_state(back.generator)
                if occupancy is not None and back.occupancy is not None:
                    occupancy.load_state_dict(back.occupancy)
                bar.n, step, psnrs = back.step, back.step, []
                bar.refresh()
                continue
            guard.remember(done, psnr, model, optimizer, generator, grid_resolutions(field), occupancy)
        periodic = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
        if done < cfg.steps and (periodic or done == end):
            meta_now = {**(meta or {}), "grid_resolutions": grid_resolutions(field)}
            atomic_write_bytes(ckpt_path, _checkpoint_bytes(done, model, optimizer, generator, cfg, meta_now,
                                                                occupancy, guard))
        bar.update(1)
        step = done
    bar.close()
    live = {**method.live_stats(field), "rollbacks": guard.rollbacks, **corrections.summary()}
    return TrainResult(end, time.time() - t0, sum(psnrs) / max(1, len(psnrs)),
                       {k: float(v.detach()) for k, v in terms.items()}, first_step, live)
