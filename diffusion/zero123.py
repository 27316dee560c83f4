"""The Zero-1-to-3 model bundle: diffusers/transformers components plus the exact conditioning helpers.

Conditioning (docs/reference.md section 2), for a conditioning image in [-1, 1]:
- CLIP: bicubic resize to the tower's size with ``align_corners=True`` and no antialiasing, then CLIP
  mean/std; the 768-d projected ``image_embeds``;
- context = cc_projection(cat(embedding, pose)) -> [B, 1, 768];
- concat latent = the VAE posterior's mode, NOT multiplied by the latent scale factor;
- the unconditional branch is a zero context and a zero concat latent.
The noisy latent lives in the usual scaled latent space (decode divides by 0.18215).
``build_random_zero123`` makes the bundle with random weights (tests and benchmarks); loading.py reads saved ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from img2mesh.data.devices import resolve_device

from .architecture import CLIP_MEAN, CLIP_STD, POSE_DIM, SCHEDULER, architecture

COMPONENTS = ("unet", "vae", "image_encoder", "feature_extractor", "cc_projection", "scheduler")


def clip_image_processor(size: int = 224):
    """The CLIP image processor saved with the bundle (its mean/std are the ones used for conditioning)."""
    try:  # transformers >= 5 names the torchvision-free processor explicitly
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:
        from transformers import CLIPImageProcessor as Processor
    return Processor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                     image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def clip_pixels(images: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> CLIP input [B, 3, size, size]: bicubic with align_corners=True and no
    antialiasing on the tensor (kornia's resize as the references call it), then CLIP's mean/std."""
    x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=True, antialias=False)
    x = (x + 1.0) / 2.0
    mean = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def pose_vectors(d_polar: torch.Tensor, d_azimuth: torch.Tensor, d_radius: torch.Tensor) -> torch.Tensor:
    """Zero-1-to-3's relative pose T = [dtheta, sin dphi, cos dphi, dr] -> [B, 4].

    d_polar: polar-angle change in radians (theta from +z, so a target ABOVE the condition is negative);
    d_azimuth: azimuth change in radians; d_radius: distance change. Each [B].
    """
    return torch.stack([d_polar, torch.sin(d_azimuth), torch.cos(d_azimuth), d_radius], dim=-1)


@dataclass
class Zero123:
    """Everything Zero-1-to-3 needs to sample; load with :func:`img2mesh.diffusion.load_zero123`."""

    unet: "UNet2DConditionModel"  # noqa: F821  8 input channels: [noisy latent, concat latent]
    vae: "AutoencoderKL"  # noqa: F821
    image_encoder: "CLIPVisionModelWithProjection"  # noqa: F821
    feature_extractor: object  # CLIP image processor: mean/std and tower size, saved with the bundle
    cc_projection: "CCProjection"  # noqa: F821
    scheduler: "DDIMScheduler"  # noqa: F821  the model's training schedule (config); samplers build their own
    device: torch.device
    dtype: torch.dtype

    def __post_init__(self):
        from diffusers.models.attention_processor import AttnProcessor2_0

        # PyTorch SDPA in every attention layer (flash / memory-efficient kernels where available)
        self.unet.set_attn_processor(AttnProcessor2_0())
        self.vae.set_attn_processor(AttnProcessor2_0())
        for module in self.modules():
            module.eval().requires_grad_(False)

    # -- saving, moving --------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a diffusers-format folder (``unet/ vae/ image_encoder/ feature_extractor/ cc_projection/
        scheduler/`` + ``model_index.json``, safetensors), atomically."""
        import diffusers

        from img2mesh.data.io import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.unet.save_pretrained(tmp / "unet", safe_serialization=True)
            self.vae.save_pretrained(tmp / "vae", safe_serialization=True)
            self.image_encoder.save_pretrained(tmp / "image_encoder", safe_serialization=True)
            self.feature_extractor.save_pretrained(tmp / "feature_extractor")
            self.cc_projection.save_pretrained(tmp / "cc_projection", safe_serialization=True)
            self.scheduler.save_pretrained(tmp / "scheduler")
            index = {"_class_name": "Zero1to3StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
                     "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                     "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                     "feature_extractor": ["transformers", type(self.feature_extractor).__name__],
                     "cc_projection": ["img2mesh.diffusion.ccprojection", "CCProjection"],
                     "scheduler": ["diffusers", type(self.scheduler).__name__]}
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
        return directory

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, self.image_encoder, self.cc_projection]

    def to(self, device=None, dtype=None) -> "Zero123":
        """Move/cast in place (``None`` keeps the current one; ``"auto"`` resolves as in data/devices.py)."""
        from .devices import resolve_dtype

        device = self.device if device is None else resolve_device(device)
        dtype = self.dtype if dtype is None else resolve_dtype(dtype, device)
        for module in self.modules():
            # nn.Module.to: diffusers' ModelMixin.to warns about fp32-only modules even when there are none
            torch.nn.Module.to(module, device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self

    # -- sizes -----------------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def clip_size(self) -> int:
        return int(self.image_encoder.config.image_size)

    # -- conditioning ----------------------------------------------------------------------------------------
    def clip_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> CLIP input [B, 3, S, S]: the reference's tensor resize, not PIL's."""
        return clip_pixels(images, self.clip_size, self.feature_extractor.image_mean, self.feature_extractor.image_std)

    @torch.no_grad()
    def encode_clip(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> projected CLIP image embeddings [B, P]."""
        assert images.ndim == 4 and images.shape[1] == 3, f"expected [B, 3, H, W], got {tuple(images.shape)}"
        pixels = self.clip_pixels(images.to(self.device, torch.float32)).to(self.dtype)
        return self.image_encoder(pixel_values=pixels).image_embeds

    @torch.no_grad()
    def encode_concat(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> concat latents [B, 4, H/8, W/8]: posterior mode, unscaled."""
        assert images.ndim == 4 and images.shape[1] == 3, f"expected [B, 3, H, W], got {tuple(images.shape)}"
        return self.vae.encode(images.to(self.device, self.dtype)).latent_dist.mode()

    @torch.no_grad()
    def context(self, embeddings: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """CLIP embeddings [B, P] + pose vectors [B, 4] -> cross-attention context [B, 1, D]."""
        assert embeddings.ndim == 2 and poses.shape == (embeddings.shape[0], POSE_DIM), (
            f"embeddings {tuple(embeddings.shape)} / poses {tuple(poses.shape)}: expected [B, P] and [B, 4]")
        x = torch.cat([embeddings.to(self.dtype), poses.to(self.device, self.dtype)], dim=-1)[:, None, :]
        return self.cc_projection(x)

    # -- denoising and decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_noise(self, latents: torch.Tensor, t, context: torch.Tensor, concat: torch.Tensor) -> torch.Tensor:
        """eps [B, 4, h, w] (fp32) for noisy latents [B, 4, h, w], context [B, 1, D], concat [B, 4, h, w]."""
        assert latents.shape == concat.shape and context.shape[0] == latents.shape[0], (
            f"latents {tuple(latents.shape)}, concat {tuple(concat.shape)}, context {tuple(context.shape)}")
        x = torch.cat([latents.to(self.dtype), concat.to(self.dtype)], dim=1)  # [B, 8, h, w]
        return self.unet(x, t, encoder_hidden_states=context.to(self.dtype), return_dict=False)[0].float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, 4, h, w] -> images [B, 3, H, W] in [-1, 1] (fp32, clamped as the reference)."""
        images = self.vae.decode(latents.to(self.device, self.dtype) / self.latent_scale, return_dict=False)[0]
        return images.float().clamp(-1.0, 1.0)

    def zero_context(self, n: int) -> torch.Tensor:
        """The unconditional branch's context: zeros of the PROJECTED shape [n, 1, D]."""
        d = self.cc_projection.projection.out_features
        return torch.zeros(n, 1, d, device=self.device, dtype=self.dtype)


def images_to_tensor(rgb: "np.ndarray") -> torch.Tensor:  # noqa: F821
    """float RGB [H, W, 3] or [B, H, W, 3] in [0, 1] -> [B, 3, H, W] in [-1, 1]."""
    x = torch.as_tensor(rgb, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    assert x.ndim == 4 and x.shape[-1] == 3, f"expected [..., H, W, 3], got {tuple(x.shape)}"
    return x.permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0


def tensor_to_images(x: torch.Tensor) -> "np.ndarray":  # noqa: F821
    """[B, 3, H, W] in [-1, 1] -> float32 RGB [B, H, W, 3] in [0, 1]."""
    return ((x.float().clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()


def build_random_zero123(size: str = "tiny", seed: int = 0, device=None, dtype=None):
    """A :class:`Zero123` bundle of the real architecture with random weights (tests, benchmarks).

    The global RNG is left untouched; ``seed`` alone decides the weights.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .ccprojection import CCProjection

    arch = architecture(size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**arch.unet)
        vae = AutoencoderKL(**arch.vae)
        clip_config = CLIPVisionConfig(**arch.clip)
        clip_config._attn_implementation = "sdpa"
        image_encoder = CLIPVisionModelWithProjection(clip_config)
        cc_projection = CCProjection(in_channel=arch.cc_in, out_channel=arch.cross_attention_dim)
    model = Zero123(
        unet=unet, vae=vae, image_encoder=image_encoder,
        feature_extractor=clip_image_processor(arch.clip["image_size"]),
        cc_projection=cc_projection, scheduler=DDIMScheduler(**SCHEDULER),
        device=torch.device("cpu"), dtype=torch.float32,
    )
    return model.to(device=device, dtype=dtype)
