"""The Zero-1-to-3 architecture as diffusers/transformers configs, at full size and at a tiny test size.

Full size (docs/reference.md section 1) is what every public Zero-1-to-3 checkpoint uses: the SD-1.x UNet with
8 input channels (4 noisy latent + 4 conditioning-image latent) and cross-attention dim 768 at 32x32
latents; the SD VAE (256 px images, scale 0.18215); CLIP ViT-L/14 vision tower with a 768-d projection and
quick-GELU; ``cc_projection`` Linear(768 + 4, 768); the 1000-step scaled-linear DDIM schedule.

``tiny`` builds the SAME classes with small widths (tests and benchmarks), so every code path (loading,
conversion, sampling) is exercised exactly as with the real weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

POSE_DIM = 4  # [dtheta, sin dphi, cos dphi, dradius]
LATENT_SCALE = 0.18215  # SD-1.x latent scale factor (the noisy latent is scaled, the concat latent is not)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP pixel statistics
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Zero123Architecture:
    """Constructor arguments of every component."""

    unet: dict
    vae: dict
    clip: dict  # transformers CLIPVisionConfig kwargs
    cross_attention_dim: int
    image_size: int  # input/output image side, pixels

    @property
    def cc_in(self) -> int:
        return self.clip["projection_dim"] + POSE_DIM


SCHEDULER = dict(  # the training schedule of SD-1.x / Zero-1-to-3, as the hub conversions save it
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


def _unet(channels: tuple[int, ...], layers: int, cross_dim: int, sample: int, attention_levels: int) -> dict:
    n = len(channels)
    down = tuple("CrossAttnDownBlock2D" if i < attention_levels else "DownBlock2D" for i in range(n))
    up = tuple("CrossAttnUpBlock2D" if i >= n - attention_levels else "UpBlock2D" for i in range(n))
    return dict(sample_size=sample, in_channels=8, out_channels=4, down_block_types=down, up_block_types=up,
                block_out_channels=channels, layers_per_block=layers, attention_head_dim=8,
                cross_attention_dim=cross_dim, norm_num_groups=32)


def _vae(channels: tuple[int, ...], layers: int, sample: int) -> dict:
    n = len(channels)
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=channels, layers_per_block=layers,
                latent_channels=4, sample_size=sample, norm_num_groups=32, scaling_factor=LATENT_SCALE)


FULL = Zero123Architecture(
    unet=_unet((320, 640, 1280, 1280), layers=2, cross_dim=768, sample=32, attention_levels=3),
    vae=_vae((128, 256, 512, 512), layers=2, sample=256),
    clip=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
              image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    cross_attention_dim=768,
    image_size=256,
)

# Smallest widths that keep the real structure: 32 channels (GroupNorm(32) as in LDM), a VAE with the
# real 4 levels (8x downsampling), a 2-level UNet with cross-attention, a 2-layer CLIP tower.
TINY = Zero123Architecture(
    unet=_unet((32, 64), layers=1, cross_dim=32, sample=4, attention_levels=1),
    vae=_vae((32, 32, 32, 32), layers=1, sample=32),
    clip=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
              image_size=32, patch_size=8, projection_dim=32, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    cross_attention_dim=32,
    image_size=32,
)

SIZES = {"full": FULL, "tiny": TINY}


def architecture(size: str) -> Zero123Architecture:
    if size not in SIZES:
        raise ValueError(f"unknown Zero-1-to-3 size {size!r}: choose one of {', '.join(SIZES)}")
    return SIZES[size]
