"""SyncDreamer's synchronised DDIM sampler, written out like a diffusers pipeline's ``__call__``.

All 16 target views of an instance are denoised together: at every step the model rebuilds its 3D volume
from the 16 noisy latents and predicts every view's noise from it (``predict_eps``: guidance, volume and
frustum inside, ``batch_view_num`` views per UNet call); then one DDIM update moves every view
(schedule.py). Several instances (``sample_num``) run side by side, each with its own posterior draw of the
input latent and its own noise, as the original batches them. Latents stay in float32; only the networks run
in the model's precision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from img2mesh.data.errors import InputError

from ..devices import halve_on_oom
from .noise import NoiseSource, SyncNoise
from .schedule import DDIMCoefficients, ddim_coefficients, ddim_step, syncdreamer_alphas_cumprod

NUM_VIEWS = 16


@dataclass
class SyncSamplerSettings:
    steps: int = 50
    guidance_scale: float = 2.0
    eta: float = 1.0
    batch_view_num: int = 8  # target views per UNet call; halved on CUDA out-of-memory


@dataclass
class SyncSample:
    """What one sampling run produced."""

    images: torch.Tensor  # [B, 16, 3, H, W] float32 in [-1, 1]: the decoded latents, clamped
    latents: torch.Tensor  # [B, 16, 4, h, w] float32 denoised latents (what the VAE decoded)
    timesteps: torch.Tensor  # [S'] long: the executed timesteps, noisiest first
    batch_view_num: int  # the views per UNet call that fitted (smaller than asked after out-of-memory)


def model_alphas_cumprod(model) -> torch.Tensor:
    """The schedule the model was trained with: its own buffer when it has one (a checkpoint's), else the
    reference computation."""
    ac = getattr(model, "alphas_cumprod", None)
    return ac if isinstance(ac, torch.Tensor) else syncdreamer_alphas_cumprod()


def elevation_radians(elevation_deg: float) -> torch.Tensor:
    """[1] float32: the input elevation as the original hands it to the model (deg2rad in float64, then float32)."""
    return torch.from_numpy(np.asarray([np.deg2rad(elevation_deg)], np.float32))


@torch.no_grad()
def sample_syncdreamer(model, image: torch.Tensor, elevation_deg: float, settings: SyncSamplerSettings, *,
                       sample_num: int = 1, noise: SyncNoise | None = None,
                       generator: torch.Generator | None = None,
                       on_step: Callable[[], None] | None = None) -> SyncSample:
    """image [1, 3, H, W] in [-1, 1] (inputs.prepare_input) and the input's elevation in degrees -> the 16
    target views of ``sample_num`` instances. ``noise``: explicit draws (one instance), else ``generator``.
    ``on_step``: called after every denoising step (progress bars)."""
    # 1. check inputs
    device = model.device
    c, h, w = model.config.vae["latent_channels"], model.config.latent_size, model.config.latent_size
    assert image.ndim == 4 and image.shape[:2] == (1, 3), f"image must be [1, 3, H, W], got {tuple(image.shape)}"
    coeffs: DDIMCoefficients = ddim_coefficients(model_alphas_cumprod(model), settings.steps, settings.eta)
    if noise is not None:
        if sample_num != 1:
            raise InputError(f"explicit noise holds the draws of one instance, not {sample_num}: use sample_num 1")
        noise.check(NUM_VIEWS, (c, h, w), len(coeffs), settings.eta)
    draws = NoiseSource(noise, generator, device)
    elevation = elevation_radians(elevation_deg).to(device)

    # 2. the input's condition: CLIP embedding and a posterior *sample* of its latent, one draw per instance
    posterior = draws.posterior((sample_num, c, h, w))  # [B, 4, h, w]
    cond = model.encode_input(image.to(device), posterior)

    # 3. the initial noise, row k of an instance = target view k
    shape = (sample_num, NUM_VIEWS, c, h, w)
    latents = draws.initial(shape).to(torch.float32)  # [B, 16, 4, h, w]

    # 4. denoising loop, noisiest timestep first; every step but the last adds sigma * z
    batch_view_num = settings.batch_view_num
    last = len(coeffs) - 1
    for i, t in enumerate(coeffs.timesteps.tolist()):
        # 4a. guided noise prediction of every view of every instance (halving the UNet batch on OOM)
        def predict(views_per_call: int) -> torch.Tensor:
            return model.predict_eps(latents, t, cond, elevation, settings.guidance_scale, views_per_call).float()

        eps, batch_view_num = halve_on_oom(predict, batch_view_num, "batch_view_num")  # [B, 16, 4, h, w]
        # 4b. the DDIM update; the original draws z at every step but the last, even at eta 0
        z = draws.step(i, shape) if i < last else None
        latents = ddim_step(latents, eps, coeffs, i, z)
        if on_step is not None:
            on_step()

    # 5. decode every view, batch_view_num at a time
    flat = latents.reshape(-1, c, h, w)
    images = torch.cat([model.decode(chunk).float() for chunk in flat.split(batch_view_num)]).clamp(-1.0, 1.0)
    return SyncSample(images.reshape(sample_num, NUM_VIEWS, *images.shape[1:]), latents, coeffs.timesteps,
                      batch_view_num)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3] as the original saves its views (truncating)."""
    x = ((images.clamp(-1.0, 1.0) + 1) * 0.5).movedim(-3, -1).cpu().numpy() * 255
    return x.astype(np.uint8)
