"""DDIM as SyncDreamer's own sampler runs it (docs/reference.md section 9).

It differs from the LDM sampler Zero-1-to-3 and ViewFusion use (diffusion/scheduler.py) in three ways a port
must copy: every timestep of LDM's uniform list is executed (the noisiest is not dropped), the betas are
computed in float32, and the last update adds no noise. For S steps, c = 1000 // S and the timesteps are
0, c, 2c, ... (all < 1000) plus 1, run noisiest first. The update is DDIM (Song et al. 2021, eq. 12) with
sigma_t from eq. 16, epsilon prediction and no clipping of the predicted x_0:

    x_0    = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    x_prev = sqrt(a_prev) x_0 + sqrt(max(1 - a_prev - sigma_t^2, 1e-7)) eps  (+ sigma_t z, except the last step)
    sigma_t = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev))

where a_prev is the alpha of the next-lower executed timestep and, for the last step (t = 1),
alphas_cumprod[0] (never 1). The arithmetic below keeps the original's precisions: alphas in float32, sigma
computed in float64 and rounded to float32, the update in float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from img2mesh.data.errors import InputError

from ..scheduler import ldm_uniform_timesteps

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012


def syncdreamer_alphas_cumprod() -> torch.Tensor:
    """alphas_cumprod [1000] float32 of SyncDreamer's scaled-linear schedule, computed in float32 as it does
    (a converted model carries the checkpoint's own copy; the two agree)."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_TIMESTEPS, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def runs_out_of_schedule(steps: int) -> bool:
    """True where the original sampler cannot run ``steps``: its last timestep would be 1000 (1000 // steps
    divides 999), one past the schedule's end."""
    return steps < 1 or steps > NUM_TRAIN_TIMESTEPS or (NUM_TRAIN_TIMESTEPS - 1) % (NUM_TRAIN_TIMESTEPS // steps) == 0


def nearest_valid_steps(steps: int) -> list[int]:
    """The closest step counts below and above ``steps`` that the original sampler runs (one or two)."""
    below = next((s for s in range(min(steps, NUM_TRAIN_TIMESTEPS) - 1, 0, -1) if not runs_out_of_schedule(s)), None)
    above = next((s for s in range(max(steps, 0) + 1, NUM_TRAIN_TIMESTEPS) if not runs_out_of_schedule(s)), None)
    return [s for s in (below, above) if s is not None]


def check_steps(steps: int) -> str | None:
    """Refuse a step count the original cannot run (one line naming the nearest valid counts); for a count
    that does not divide 1000 return a note saying how many steps will actually run, else None."""
    if runs_out_of_schedule(steps):
        valid = " or ".join(str(s) for s in nearest_valid_steps(steps))
        why = (f"1000 // {steps} = {NUM_TRAIN_TIMESTEPS // steps} divides 999, so its last timestep would be 1000, "
               "past the schedule" if 1 <= steps <= NUM_TRAIN_TIMESTEPS else "it must be in [1, 999]")
        raise InputError(f"diffusion.steps={steps} cannot run with SyncDreamer's sampler ({why}): use {valid}")
    executed = len(ldm_uniform_timesteps(steps, NUM_TRAIN_TIMESTEPS))
    if executed != steps:
        return (f"diffusion.steps={steps} runs {executed} DDIM steps with SyncDreamer's sampler (a stride of "
                f"1000 // {steps} = {NUM_TRAIN_TIMESTEPS // steps} timesteps, as the original)")
    return None


def syncdreamer_timesteps(steps: int) -> np.ndarray:
    """The executed timesteps, noisiest first (S = 50: 981, 961, ..., 1). Raises for invalid counts."""
    check_steps(steps)
    return ldm_uniform_timesteps(steps, NUM_TRAIN_TIMESTEPS)[::-1].copy()


@dataclass
class DDIMCoefficients:
    """Per executed step, in execution order (index 0 = noisiest); all [S'] float32."""

    timesteps: torch.Tensor  # [S'] long
    alphas: torch.Tensor  # a_t
    alphas_prev: torch.Tensor  # a_prev (the last one is alphas_cumprod[0])
    sqrt_one_minus_alphas: torch.Tensor
    sigmas: torch.Tensor

    def __len__(self) -> int:
        return len(self.timesteps)


def ddim_coefficients(alphas_cumprod: torch.Tensor, steps: int, eta: float) -> DDIMCoefficients:
    """The DDIM constants of every executed step. alphas_cumprod: [1000] float32 (the model's schedule)."""
    ac = alphas_cumprod.detach().cpu().float()
    assert ac.shape == (NUM_TRAIN_TIMESTEPS,), f"alphas_cumprod must be [{NUM_TRAIN_TIMESTEPS}], got {tuple(ac.shape)}"
    if runs_out_of_schedule(steps):
        check_steps(steps)  # raises
    ascending = torch.from_numpy(ldm_uniform_timesteps(steps, NUM_TRAIN_TIMESTEPS)).long()
    alphas = ac[ascending]
    alphas_prev = torch.cat([ac[:1], ac[ascending[:-1]]])
    a64, prev64 = alphas.double(), alphas_prev.double()
    sigmas = (eta * torch.sqrt((1 - prev64) / (1 - a64) * (1 - a64 / prev64))).float()
    sqrt_one_minus = torch.sqrt(1.0 - alphas)
    return DDIMCoefficients(ascending.flip(0), alphas.flip(0), alphas_prev.flip(0), sqrt_one_minus.flip(0),
                            sigmas.flip(0))


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, coeffs: DDIMCoefficients, i: int,
              noise: torch.Tensor | None) -> torch.Tensor:
    """x_t -> x_prev for executed step ``i`` (float32); ``noise`` is z (None on the last step, where the
    original adds none)."""
    a_t, a_prev = coeffs.alphas[i].to(x_t.device), coeffs.alphas_prev[i].to(x_t.device)
    sqrt_one_minus, sigma = coeffs.sqrt_one_minus_alphas[i].to(x_t.device), coeffs.sigmas[i].to(x_t.device)
    pred_x0 = (x_t - sqrt_one_minus * eps) / a_t.sqrt()
    dir_xt = torch.clamp(1.0 - a_prev - sigma ** 2, min=1e-7).sqrt() * eps
    x_prev = a_prev.sqrt() * pred_x0 + dir_xt
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev
