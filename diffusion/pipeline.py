"""The interpolated-denoising DDIM sampler, written out like a diffusers pipeline's ``__call__``.

It denoises G latents at once ("groups"; ViewFusion: G = 1 target view, independent mode: every target).
Each group is conditioned by one or more ROWS (an anchor view and the pose of the target seen from it) with
fusion weights summing to 1 per group. Per DDIM step (docs/reference.md section 4):
  eps_u = UNet(x_g, zero context, zero concat)                       once per group (it ignores the anchor)
  eps_r = eps_u + s * (UNet(x_g, context_r, concat_r) - eps_u)       per row (classifier-free guidance)
  x_r   = DDIM step of x_g with eps_r (+ sigma_t * noise_r)          per row
  x_g   = sum_r w_r x_r                                              the fused state, shared again by all rows
All rows of a step go through the UNet in as few calls as ``max_batch`` allows; latents stay in fp32 and
only the UNet runs in the model's precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from img2mesh.data.errors import InputError

from .config import ETA_NOISE
from .devices import halve_on_oom
from .scheduler import make_scheduler
from .zero123 import Zero123



@dataclass
class ConditionRows:
    """The conditioned UNet rows of one sampling run."""

    context: torch.Tensor  # [R, 1, D] cc_projection(CLIP embedding, pose)
    concat: torch.Tensor  # [R, 4, h, w] VAE posterior mode of the anchor image, unscaled
    group: torch.Tensor  # [R] long: the latent each row denoises
    weight: torch.Tensor  # [R] float32 fusion weight; sums to 1 within a group

    def __post_init__(self):
        r = self.context.shape[0]
        assert self.context.ndim == 3 and self.context.shape[1] == 1, f"context must be [R, 1, D], got {tuple(self.context.shape)}"
        assert self.concat.ndim == 4 and self.concat.shape[0] == r, f"concat must be [R, 4, h, w], got {tuple(self.concat.shape)}"
        assert self.group.shape == (r,) and self.weight.shape == (r,), (
            f"group {tuple(self.group.shape)} / weight {tuple(self.weight.shape)} must be [{r}]")


@dataclass
class SamplerStats:
    """What a sampling run cost (for benchmarks)."""

    unet_calls: int = 0
    unet_rows: int = 0
    batch_sizes: list[int] = field(default_factory=list)


@dataclass
class Denoised:
    """What one sampling run produced."""

    latents: torch.Tensor  # [G, 4, h, w] fp32 denoised latents, scaled (decode them with the VAE)
    timesteps: torch.Tensor  # [S'] long, on the CPU: the timesteps the loop ran, in execution order


@dataclass
class SamplerSettings:
    steps: int = 75
    guidance_scale: float = 3.0
    eta: float = 1.0
    eta_noise: str = "per_anchor"  # per_anchor | shared
    schedule: str = "reference"  # reference | diffusers
    share_uncond: bool = True  # one unconditional row per group (False: one per row, as the reference)
    max_batch: int = 8  # UNet rows per call


def unet_layout(group: torch.Tensor, n_groups: int, guided: bool, share_uncond: bool):
    """Which latent feeds each UNet row, and where each row's unconditional / conditional output lands.

    Returns (source [B]: latent index per UNet row, is_cond [B] bool, cond_row [R], uncond_row [R] or None).
    shared:     [u_0 .. u_{G-1}, c_0 .. c_{R-1}]
    per anchor: [u_0, c_0, u_1, c_1, ...] (the reference's [uncond, cond] batch for each anchor)
    """
    r = group.shape[0]
    rows = torch.arange(r, device=group.device)
    if not guided:
        return group, torch.ones(r, dtype=torch.bool, device=group.device), rows, None
    if share_uncond:
        source = torch.cat([torch.arange(n_groups, device=group.device), group])
        is_cond = torch.cat([torch.zeros(n_groups, dtype=torch.bool, device=group.device),
                             torch.ones(r, dtype=torch.bool, device=group.device)])
        return source, is_cond, n_groups + rows, group
    source = group.repeat_interleave(2)
    is_cond = torch.tensor([False, True], device=group.device).repeat(r)
    return source, is_cond, 2 * rows + 1, 2 * rows


class Denoiser:
    """Runs the UNet over a batch of rows in chunks of ``max_batch``; halves the chunk on CUDA out-of-memory."""

    def __init__(self, model: Zero123, max_batch: int, stats: SamplerStats):
        self.model, self.max_batch, self.stats = model, max(1, int(max_batch)), stats

    def __call__(self, x: torch.Tensor, t, context: torch.Tensor, concat: torch.Tensor) -> torch.Tensor:
        out, start = [], 0
        while start < x.shape[0]:
            def rows(batch, start=start):
                end = min(start + batch, x.shape[0])
                return self.model.predict_noise(x[start:end], t, context[start:end], concat[start:end])

            eps, self.max_batch = halve_on_oom(rows, self.max_batch)
            out.append(eps)
            self.stats.unet_calls += 1
            self.stats.unet_rows += eps.shape[0]
            self.stats.batch_sizes.append(eps.shape[0])
            start += eps.shape[0]
        return torch.cat(out)


def denoising_steps(model: Zero123, steps: int, schedule: str) -> int:
    """How many updates :func:`denoise` runs for ``steps`` (the reference schedule runs one more)."""
    scheduler = make_scheduler(model.scheduler.config, schedule)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


@torch.no_grad()
def denoise(model: Zero123, rows: ConditionRows, latents: torch.Tensor, settings: SamplerSettings,
            generator: torch.Generator | None = None, stats: SamplerStats | None = None,
            on_step: Callable[[], None] | None = None) -> Denoised:
    """Initial noise [G, 4, h, w] -> denoised scaled latents [G, 4, h, w] (fp32) and the timesteps run.
    ``on_step``: called after each denoising step (progress bars)."""
    # 1. check inputs
    n_groups = latents.shape[0]
    assert latents.ndim == 4 and rows.concat.shape[1:] == latents.shape[1:], (
        f"latents {tuple(latents.shape)} and concat {tuple(rows.concat.shape)} disagree")
    assert int(rows.group.max()) < n_groups, "a row points past the last latent"
    if settings.eta_noise not in ETA_NOISE:
        raise InputError(f"unknown diffusion.eta_noise {settings.eta_noise!r}: choose per_anchor or shared")
    stats = stats if stats is not None else SamplerStats()
    device = model.device
    latents = latents.to(device, torch.float32)
    group, weight = rows.group.to(device), rows.weight.to(device, torch.float32)[:, None, None, None]

    # 2. timesteps (the reference's LDM list, or diffusers' own)
    scheduler = make_scheduler(model.scheduler.config, settings.schedule)
    scheduler.set_timesteps(settings.steps, device=device)

    # 3. the UNet batch that every step reuses: [uncond rows | cond rows] (or interleaved, reference-style)
    guided = settings.guidance_scale != 1.0  # the reference skips the unconditional branch at scale 1
    source, is_cond, cond_row, uncond_row = unet_layout(group, n_groups, guided, settings.share_uncond)
    b = source.shape[0]
    cond_index = torch.cumsum(is_cond.long(), 0) - 1  # position of each cond UNet row among the rows
    context = torch.where(is_cond[:, None, None], rows.context.to(device)[cond_index.clamp(min=0)],
                          model.zero_context(b))  # [B, 1, D]: zeros AFTER the projection for uncond rows
    concat = rows.concat.to(device, model.dtype)[cond_index.clamp(min=0)] * is_cond[:, None, None, None]  # [B, 4, h, w]
    unet = Denoiser(model, settings.max_batch, stats)

    # 4. denoising loop
    for t in scheduler.timesteps:
        # 4a. noise prediction for every UNet row, then classifier-free guidance per row
        eps_all = unet(latents[source], t, context, concat)  # [B, 4, h, w]
        eps = eps_all[cond_row]  # [R, 4, h, w]
        if guided:
            eps_u = eps_all[uncond_row]
            eps = eps_u + settings.guidance_scale * (eps - eps_u)
        # 4b. one DDIM step per row from the shared state of its group
        noise = None
        if settings.eta > 0:
            if settings.eta_noise == "per_anchor":  # independent draws, then the weighted sum (ViewFusion)
                noise = randn_tensor(eps.shape, generator=generator, device=device, dtype=torch.float32)
            else:  # one draw per group, shared by its anchors
                noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=torch.float32)[group]
        # (a Python int: the scheduler's alphas live on the CPU whatever the device)
        x_prev = scheduler.step(eps, int(t), latents[group], eta=settings.eta, variance_noise=noise).prev_sample
        # 4c. interpolated denoising: the group's next state is the weighted sum of its rows' x_{t-1}
        latents = torch.zeros_like(latents).index_add_(0, group, weight * x_prev)
        if on_step is not None:
            on_step()
    settings.max_batch = unet.max_batch  # keep a batch size reduced by out-of-memory for the next views
    return Denoised(latents, scheduler.timesteps.cpu())
