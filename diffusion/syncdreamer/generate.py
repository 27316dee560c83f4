"""SyncDreamer's views stage: the input RGBA -> 16 posed views per instance, with object masks.

    from img2mesh.diffusion.syncdreamer import synthesize_syncdreamer
    out = synthesize_syncdreamer(model, rgb, alpha, elevation=30.0, noise="draws.pt")   # explicit draws
    out.images   # [B, 16, 3, H, W] in [-1, 1];  out.latents  # [B, 16, 4, h, w]

``synthesize_syncdreamer`` is the Python entry point that matches another implementation draw for draw;
``generate_syncdreamer_views`` adds cameras and masks and is what ``img2mesh run --model <SyncDreamer>`` calls.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from img2mesh.data.background import DEFAULT_MODEL as DEFAULT_REMBG_MODEL
from img2mesh.data.cameras import Camera
from img2mesh.data.errors import InputError
from img2mesh.data.io import sha256_file
from img2mesh.data.progress import progress
from img2mesh.data.views import Views

from ..config import DiffusionConfig, requested_dtype, with_generator_defaults
from .cameras import NUM_VIEWS, target_cameras
from .inputs import prepare_input
from .noise import SyncNoise, load_noise
from .sampler import SyncSample, SyncSamplerSettings, sample_syncdreamer, to_uint8
from .schedule import check_steps, syncdreamer_timesteps

log = logging.getLogger(__name__)

ELEVATION_RANGE = (-10.0, 40.0)  # input elevations the authors say work


@dataclass
class SyncDreamerViews:
    """Every instance's 16 views (masked, posed) and what made them."""

    instances: list[Views]  # [B] each: the 16 target views in target order (view k at input azimuth + 22.5 k)
    sample: SyncSample
    settings: dict  # the resolved sampling settings, for run.json


def check_config(cfg: DiffusionConfig) -> list[str]:
    """SyncDreamer's settings checked before any work (the defaults of the generator applied): raises one
    InputError line for what cannot run; returns notes to show (a step count that runs more steps)."""
    cfg = with_generator_defaults(cfg, "syncdreamer")
    s, problems = cfg.syncdreamer, []
    if cfg.eta < 0:
        problems.append(f"diffusion.eta must be >= 0 (got {cfg.eta})")
    if s.batch_view_num < 1:
        problems.append(f"diffusion.syncdreamer.batch_view_num must be >= 1 (got {s.batch_view_num})")
    if s.sample_num < 1:
        problems.append(f"diffusion.syncdreamer.sample_num must be >= 1 (got {s.sample_num})")
    if s.crop_size != -1 and s.crop_size < 1:
        problems.append(f"diffusion.syncdreamer.crop_size must be -1 or >= 1 pixels (got {s.crop_size})")
    if cfg.noise and s.sample_num != 1:
        problems.append("diffusion.noise holds the draws of one instance: set diffusion.syncdreamer.sample_num=1")
    if cfg.noise and not os.path.isfile(cfg.noise):
        problems.append(f"diffusion.noise file {cfg.noise} does not exist")
    if s.clip and not os.path.isfile(s.clip):
        problems.append(f"CLIP archive {s.clip} (--clip) does not exist")
    if problems:
        raise InputError("; ".join(problems))
    note = check_steps(cfg.steps)
    return [note] if note else []


def sampler_settings(cfg: DiffusionConfig) -> SyncSamplerSettings:
    cfg = with_generator_defaults(cfg, "syncdreamer")
    return SyncSamplerSettings(steps=cfg.steps, guidance_scale=cfg.guidance_scale, eta=cfg.eta,
                               batch_view_num=cfg.syncdreamer.batch_view_num)


def warn_elevation(elevation: float) -> None:
    low, high = ELEVATION_RANGE
    if not low <= elevation <= high:
        log.warning("input elevation %.1f deg is outside [%g, %g], the range SyncDreamer works in: the views may "
                    "come out distorted (set --elevation to the photo's camera elevation)", elevation, low, high)


def synthesize_syncdreamer(model, rgb: np.ndarray, alpha: np.ndarray | None, elevation: float,
                           cfg: DiffusionConfig | None = None, *, noise: SyncNoise | str | os.PathLike | None = None,
                           generator: torch.Generator | None = None, seed: int = 0,
                           on_step: Callable[[], None] | None = None) -> SyncSample:
    """The 16 views of the input ``rgb`` uint8 [H, W, 3] + ``alpha`` uint8 [H, W] (or None) seen from
    ``elevation`` degrees. cfg: steps, guidance, eta, crop_size, batch_view_num, sample_num (default: the
    reference's). noise: explicit draws (a SyncNoise or a file path, see noise.py), else ``generator`` (a CPU
    generator seeded with ``seed`` by default)."""
    cfg = cfg if cfg is not None else DiffusionConfig()
    check_config(cfg)
    settings = sampler_settings(cfg)
    size = model.config.image_size
    image = torch.from_numpy(prepare_input(rgb, alpha, size, cfg.syncdreamer.crop_size)).permute(2, 0, 1)[None]
    if isinstance(noise, (str, os.PathLike)):
        noise = load_noise(noise)
    if generator is None and noise is None:
        generator = torch.Generator("cpu").manual_seed(int(seed))
    warn_elevation(elevation)
    return sample_syncdreamer(model, image, elevation, settings, sample_num=cfg.syncdreamer.sample_num, noise=noise,
                              generator=generator, on_step=on_step)


def generate_syncdreamer_views(cfg: DiffusionConfig, rgb: np.ndarray, alpha: np.ndarray | None, input_camera: Camera,
                               *, model=None, seed: int | None = None, device=None,
                               remove_background: bool | Callable[[np.ndarray], np.ndarray] = True,
                               rembg_model: str = DEFAULT_REMBG_MODEL) -> SyncDreamerViews:
    """Generate SyncDreamer's 16 views of the input (``rgb`` + ``alpha``, the image the data stage read)
    taken by ``input_camera`` (its elevation conditions the model; its azimuth places the views).

    model: a loaded SyncDreamer (else ``cfg.model`` is loaded on ``device`` in ``cfg.dtype``).
    remove_background: as for :func:`img2mesh.diffusion.generate.generate_views` (the generated views' masks).
    """
    from ..generate import mask_maker, masked_views

    # 1. check the request before any work
    for note in check_config(cfg):
        log.info("%s", note)
    cfg = with_generator_defaults(cfg, "syncdreamer")
    noise = load_noise(cfg.noise) if cfg.noise else None

    # 2. the model and the mask maker (a bad rembg model fails now, not after sampling)
    if model is None:
        from ..generators import load_model

        model = load_model(cfg.model, device=device, dtype=requested_dtype(cfg), clip=cfg.syncdreamer.clip)
    mask_of = mask_maker(remove_background, rembg_model)

    # 3. sample every instance; the bar counts denoising steps
    n = cfg.syncdreamer.sample_num
    with progress(total=len(syncdreamer_timesteps(cfg.steps)), desc=f"views (syncdreamer x{n})", unit="step") as bar:
        sample = synthesize_syncdreamer(model, rgb, alpha, input_camera.elevation, cfg, noise=noise,
                                        seed=0 if seed is None else seed, on_step=lambda: bar.update(1))

    # 4. posed, masked views per instance, at the original's cameras
    cameras = target_cameras(model.config.image_size, input_camera.azimuth)
    pixels = to_uint8(sample.images).astype(np.float32) / 255.0  # [B, 16, H, W, 3], the original's uint8 output
    instances = []
    for b in range(n):
        views = masked_views(pixels[b], cameras, mask_of)
        for k, view in enumerate(views):
            view.name = f"r_{k:03d}"
        instances.append(Views(views))
    settings = {"steps": cfg.steps, "executed_steps": len(sample.timesteps), "guidance_scale": cfg.guidance_scale,
                "eta": cfg.eta, "crop_size": cfg.syncdreamer.crop_size, "elevation": input_camera.elevation,
                "batch_view_num": sample.batch_view_num, "noise": cfg.noise or None,
                "noise_sha256": sha256_file(cfg.noise) if cfg.noise else None}
    assert all(len(v) == NUM_VIEWS for v in instances)
    return SyncDreamerViews(instances, sample, settings)
