"""SyncDreamer's sizes: the released network (``FULL``) and a tiny one of the same structure (tests).

FULL is what ``syncdreamer-pretrain.ckpt`` holds: Zero-1-to-3's UNet (320 channels, levels x1 x2 x4 x4,
2 resnets per level, 8 heads, cross-attention 768), the SD VAE, OpenAI CLIP ViT-L/14, volume networks of
widths 64/128/256/512 fed by a 16-channel noisy-view encoder, 256 px images. The tiny size keeps every level
and block (4 UNet levels, 4 VAE levels, 4 volume levels, 16 views) with small widths and 64 px images.
"""
from __future__ import annotations

from dataclasses import replace

from img2mesh.diffusion.ldm_config import ZERO123, unet_config, vae_config

from .model import SyncDreamerConfig

# SyncDreamer's YAML repeats Zero-1-to-3's UNet (num_heads 8); its VAE is fixed in code, the same as Zero-1-to-3's
SYNCDREAMER_UNET = replace(ZERO123, source="SyncDreamer's config (configs/syncdreamer.yaml)")

FULL = SyncDreamerConfig(
    unet=unet_config(SYNCDREAMER_UNET), vae=vae_config(SYNCDREAMER_UNET),
    clip=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
              image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    volume_dims=[64, 128, 256, 512], spatial_dims=[64, 128, 256, 512], encoder_dims=[16, 16],
    source="SyncDreamer's released architecture")


def tiny_config(volume_size: int = 8, frustum_depth: int = 8, image_size: int = 64) -> SyncDreamerConfig:
    """Every structural element of FULL at small widths (GroupNorm(32) in the UNet/VAE, GroupNorm(8) in the
    volume networks bound the smallest widths)."""
    unet = dict(FULL.unet, block_out_channels=(32, 32, 64, 64), cross_attention_dim=32,
                sample_size=image_size // 8)
    vae = dict(FULL.vae, block_out_channels=(32, 32, 32, 32), layers_per_block=1, sample_size=image_size)
    clip = dict(FULL.clip, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                image_size=32, patch_size=8, projection_dim=32)
    return replace(FULL, unet=unet, vae=vae, clip=clip, volume_dims=[8, 16, 16, 16], spatial_dims=[8, 8, 16, 16],
                   encoder_dims=[16, 8], context_dim=32, time_dim=32, image_size=image_size, volume_size=volume_size,
                   frustum_depth=frustum_depth, source="tiny test architecture")


def schedule_buffers() -> dict:
    """The schedule buffers the original registers (and its checkpoint holds): scaled-linear betas computed in
    float32, the posterior terms in float64 (its ``alphas_cumprod_prev`` starts with a float64 one), all
    stored as float32."""
    import torch

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, dim=0)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]], 0)
    variance = betas * (1.0 - previous) / (1.0 - cumprod)
    log_variance = torch.clamp(torch.log(torch.clamp(variance, min=1e-20)), min=-10)
    values = dict(betas=betas, alphas=alphas, alphas_cumprod=cumprod, sqrt_alphas_cumprod=torch.sqrt(cumprod),
                  sqrt_one_minus_alphas_cumprod=torch.sqrt(1 - cumprod), posterior_variance=variance,
                  posterior_log_variance_clipped=log_variance)
    return {k: v.float() for k, v in values.items()}


def build_random_syncdreamer(config: SyncDreamerConfig, seed: int = 0):
    """A :class:`SyncDreamer` of ``config`` with random weights and the release's cameras and schedule
    (tests, benchmarks). The global RNG is left untouched."""
    import torch

    from .cameras import target_azimuths, target_intrinsics, target_poses
    from .model import SyncDreamer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SyncDreamer(config)
    model.poses.copy_(target_poses(config.view_num))
    model.Ks.copy_(target_intrinsics(config.image_size, config.view_num))
    model.azimuth.copy_(target_azimuths(config.view_num))
    for name, value in schedule_buffers().items():
        getattr(model, name).copy_(value)
    return model
