"""DDIM as the original LDM sampler runs it (the one Zero-1-to-3 and ViewFusion were published with).

diffusers' ``DDIMScheduler.step`` is the same update as LDM's ``p_sample_ddim`` (DDIM paper eq. 12 with
sigma_t from eq. 16, epsilon prediction, no clipping); what differs is the list of timesteps
(docs/reference.md section 3). LDM "uniform" discretisation for S steps over T training steps:

    c = T // S;   timesteps = [0, c, 2c, ...] (all < T) + 1;   the noisiest one is dropped;

and the remaining ones run in descending order, starting from the initial noise. Each step's previous
alpha is the one of the next-lower timestep in that list, i.e. of t - c, and the final step (t = 1) uses
alphas_cumprod[0] (never 1). diffusers reaches the same previous timestep because its ``step`` computes
t - T // num_inference_steps; so setting ``num_inference_steps = S`` and the LDM timesteps gives the
reference exactly. Example: S = 4 executes t = 501, 251, 1; S = 75 executes 76 updates from t = 976.

The schedule itself (betas) is computed in float64 and cast to float32, as LDM's ``register_schedule``
does, so alphas_cumprod matches the reference to the last bit rather than to ~1e-7.
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler

from img2mesh.data.errors import InputError

from .config import SCHEDULES


def ldm_uniform_timesteps(steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """LDM's ``make_ddim_timesteps("uniform")``, ascending: every (T // steps)-th timestep from 0, plus 1.
    (The +1 is LDM's; where T // steps divides T - 1 the last one is T itself, past the schedule.)"""
    return np.arange(0, num_train_timesteps, num_train_timesteps // steps) + 1


def ldm_ddim_timesteps(steps: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """The timesteps LDM's DDIM sampler executes for ``steps`` "steps", in execution (descending) order."""
    if not 1 <= steps < num_train_timesteps:
        raise InputError(f"diffusion.steps must be in [1, {num_train_timesteps - 1}], got {steps}")
    uniform = ldm_uniform_timesteps(steps, num_train_timesteps)
    executed = uniform[:-1]  # the sampler drops the noisiest timestep (x_T stands in for it)
    if len(executed) == 0:  # steps == 1 with T // 1 = T: only [1]; run it rather than nothing
        executed = uniform
    return executed[::-1].copy()


def ldm_betas(config) -> torch.Tensor:
    """betas [T] float64 of LDM's "linear" schedule (= diffusers' "scaled_linear"): linspace of square roots."""
    return torch.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, config.num_train_timesteps,
                          dtype=torch.float64) ** 2


class ReferenceDDIMScheduler(DDIMScheduler):
    """``DDIMScheduler`` with LDM's timesteps and LDM's float64-derived alphas (see the module docstring)."""

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device = None):
        # (done here, not in __init__: diffusers builds schedulers from the __init__ signature)
        if self.config.beta_schedule == "scaled_linear":  # other schedules keep diffusers' float32 values
            betas = ldm_betas(self.config)
            self.betas = betas.float()
            self.alphas = (1.0 - betas).float()
            self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).float()
        self.final_alpha_cumprod = self.alphas_cumprod[0]  # LDM's last step goes to alphas_cumprod[0], never 1
        timesteps = ldm_ddim_timesteps(num_inference_steps, self.config.num_train_timesteps)
        self.num_inference_steps = num_inference_steps  # step() then goes from t to t - T // S, as LDM
        self.timesteps = torch.from_numpy(timesteps).to(device)


def make_scheduler(config, schedule: str = "reference") -> DDIMScheduler:
    """A fresh sampler-side DDIM scheduler from a model's scheduler config.

    ``reference``: LDM timesteps (exact reproduction); ``diffusers``: the config's own spacing (standard).
    """
    if schedule == "reference":
        return ReferenceDDIMScheduler.from_config(config, set_alpha_to_one=False, clip_sample=False,
                                                  thresholding=False, prediction_type="epsilon")
    if schedule == "diffusers":
        return DDIMScheduler.from_config(config)
    raise InputError(f"unknown diffusion.schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
