"""The SyncDreamer network: 16 target views denoised jointly through a 3D volume (docs/reference.md,
SyncDreamer model).

    model = SyncDreamer.from_pretrained("syncdreamer-folder")          # or load_syncdreamer(ckpt, clip=...)
    cond = model.encode_input(image, posterior_noise)                  # image [B, 3, H, W] in [-1, 1]
    eps = model.predict_eps(x_t, t, cond, elevation_rad, guidance_scale=2.0, batch_view_num=8)
    images = model.decode(latents)                                     # [N, 3, H, W] in [-1, 1]

Submodules: ``unet`` (:class:`SyncDreamerUNet`), ``vae`` (diffusers AutoencoderKL), ``image_encoder``
(transformers CLIP vision tower), ``cc_projection`` (Linear(P + 4, 768)), ``time_embed`` (the volume
networks' own time MLP), ``spatial_volume`` (:class:`SpatialVolumeNet`); buffers ``poses`` [16, 3, 4]
(world-to-camera, OpenCV), ``Ks`` [16, 3, 3] (at ``image_size`` pixels), ``azimuth`` [16] (radians, wrapped to
[-pi, pi)) and the training schedule, all as the checkpoint holds them. Buffers stay float32 whatever dtype
the networks run in.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from img2mesh.data.errors import ResourceError

from .unet import SyncDreamerUNet
from .volume import SpatialVolumeNet

GENERATOR = "syncdreamer"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
CAMERA_BUFFERS = ("poses", "Ks", "azimuth")
SCHEDULE_BUFFERS = ("betas", "alphas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                    "posterior_variance", "posterior_log_variance_clipped")


@dataclass
class SyncDreamerConfig:
    """Every size of the network; saved as the model folder's config.json. Sizes come from the checkpoint's
    tensors, the UNet heads from the original YAML (or SyncDreamer's own); the rest are constants of the
    original code, kept here so a folder says everything it was built with."""

    unet: dict  # diffusers UNet2DConditionModel kwargs (Zero-1-to-3's SD-1.x UNet, 8 input channels)
    vae: dict  # diffusers AutoencoderKL kwargs
    clip: dict  # transformers CLIPVisionConfig kwargs (OpenAI ViT-L/14 in the release)
    volume_dims: list[int]  # frustum network widths at full, 1/2, 1/4, 1/8 latent size (= depth attention's)
    spatial_dims: list[int]  # spatial volume 3D U-Net widths
    encoder_dims: list[int]  # noisy target view encoder: [inner width, output channels per view]
    conditioned_blocks: int = 9  # output blocks followed by depth attention (the last ones)
    context_dim: int = 768  # cc_projection's output, the UNet's cross-attention width
    time_dim: int = 256  # the volume networks' time embedding
    view_dim: int = 4  # view embedding [d_elevation, sin d_azimuth, cos d_azimuth, 0]
    view_num: int = 16
    image_size: int = 256  # input/output pixels (256 for the release; tiny test models are smaller)
    volume_size: int = 32  # spatial volume voxels per side (a constant of the original code)
    frustum_depth: int = 48  # depth samples per frustum (a constant of the original code)
    depth_heads: int = 4  # heads of every depth attention (a constant of the original code)
    latent_scale: float = 0.18215
    volume_half_length: float = 0.5  # the spatial volume spans [-0.5, 0.5]^3
    frustum_half_length: float = 0.86603  # frustum depths: camera_distance -/+ this (the code's sqrt(3)/2)
    camera_distance: float = 1.5
    target_elevation_deg: float = 30.0  # every target view's elevation
    generator: str = GENERATOR
    source: str = ""  # what it was converted from, for messages

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae["block_out_channels"]) - 1)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "SyncDreamerConfig":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ResourceError(f"{path} is unreadable ({e}): convert the model again") from None
        if data.get("generator") != GENERATOR:
            raise ResourceError(f"{path} is not a SyncDreamer model config (generator {data.get('generator')!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ResourceError(f"{path} has entries this version does not know ({', '.join(unknown)}): "
                                "convert the model again with this version")
        return cls(**data)


@dataclass
class SyncCondition:
    """What the input image contributes to every step."""

    clip_embedding: torch.Tensor  # [B, 1, P] CLIP image embedding (before cc_projection), fp32
    input_latent: torch.Tensor  # [B, 4, h, w] posterior SAMPLE * latent_scale (divided again for the concat), fp32


class SyncDreamer(nn.Module):
    def __init__(self, config: SyncDreamerConfig):
        from diffusers import AutoencoderKL
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        super().__init__()
        c = self.config = config
        self.unet = SyncDreamerUNet(c.unet, c.volume_dims, c.conditioned_blocks, c.depth_heads)
        self.vae = AutoencoderKL(**c.vae)
        clip_config = CLIPVisionConfig(**c.clip)
        clip_config._attn_implementation = "sdpa"
        self.image_encoder = CLIPVisionModelWithProjection(clip_config)
        self.cc_projection = nn.Linear(c.clip["projection_dim"] + c.view_dim, c.context_dim)
        self.time_embed = nn.Sequential(nn.Linear(c.time_dim, c.time_dim), nn.SiLU(True),
                                        nn.Linear(c.time_dim, c.time_dim))
        self.spatial_volume = SpatialVolumeNet(
            c.time_dim, c.view_dim, c.view_num, tuple(c.encoder_dims), tuple(c.spatial_dims), tuple(c.volume_dims),
            c.image_size, c.volume_size, c.frustum_depth, c.volume_half_length, c.frustum_half_length,
            c.camera_distance, latent_channels=c.vae["latent_channels"])
        n = c.view_num
        self.register_buffer("poses", torch.zeros(n, 3, 4))
        self.register_buffer("Ks", torch.zeros(n, 3, 3))
        self.register_buffer("azimuth", torch.zeros(n))
        for name in SCHEDULE_BUFFERS:
            self.register_buffer(name, torch.zeros(1000))
        self.eval().requires_grad_(False)

    @classmethod
    def empty(cls, config: SyncDreamerConfig) -> "SyncDreamer":
        """Built without initialising weights (every tensor is to be loaded), on the CPU."""
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device="cpu")
        embeddings = model.image_encoder.vision_model.embeddings  # its only tensor that no state dict holds
        embeddings.position_ids.copy_(torch.arange(embeddings.position_ids.shape[1])[None])
        return model

    # -- device, precision, files ----------------------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        """Buffers (cameras, schedule) follow the device but stay float32: an fp16 cast would move the cameras."""
        kept = dict(self._buffers)
        super()._apply(fn, recurse)
        for name, buffer in kept.items():
            moved = self._buffers[name]
            if moved is not None and moved.dtype != buffer.dtype:
                self._buffers[name] = buffer.to(moved.device)
        return self

    @property
    def device(self) -> torch.device:
        return self.poses.device

    @property
    def dtype(self) -> torch.dtype:
        return self.cc_projection.weight.dtype

    @property
    def num_views(self) -> int:
        return self.config.view_num

    @property
    def latent_size(self) -> int:
        return self.config.latent_size

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, dtype=None) -> "SyncDreamer":
        """A folder written by :meth:`save_pretrained` (``img2mesh convert``)."""
        from .loading import load_folder

        return load_folder(Path(folder), device=device, dtype=dtype)

    def save_pretrained(self, folder: str | Path) -> Path:
        """config.json (the generator and every size) + model.safetensors (fp32), written atomically."""
        from safetensors.torch import save_file

        from img2mesh.data.io import atomic_directory

        folder = Path(folder)
        with atomic_directory(folder) as tmp:
            self.config.save(tmp / CONFIG_NAME)
            state = {k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"generator": GENERATOR})
        return folder

    # -- conditioning ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_input(self, image: torch.Tensor, posterior_noise: torch.Tensor) -> SyncCondition:
        """image [1 or B, 3, H, W] in [-1, 1] (prepared at ``image_size``), posterior_noise [B, 4, h, w]
        (the draw of the input latent's posterior sample, one per instance)."""
        from img2mesh.diffusion.zero123 import clip_pixels

        B = posterior_noise.shape[0]
        size = self.config.image_size
        assert image.ndim == 4 and image.shape[1:] == (3, size, size) and image.shape[0] in (1, B), (
            f"image must be [1 or {B}, 3, {size}, {size}], got {tuple(image.shape)}")
        assert posterior_noise.shape[1:] == (self.config.vae["latent_channels"], self.latent_size, self.latent_size), (
            f"posterior_noise must be [B, 4, {self.latent_size}, {self.latent_size}], got {tuple(posterior_noise.shape)}")
        image = image.to(self.device, torch.float32).expand(B, -1, -1, -1)
        dist = self.vae.encode(image.to(self.dtype)).latent_dist
        noise = posterior_noise.to(self.device, dist.mean.dtype)
        latent = (dist.mean + dist.std * noise) * self.config.latent_scale
        pixels = clip_pixels(image, self.image_encoder.config.image_size)
        embedding = self.image_encoder(pixel_values=pixels.to(self.dtype)).image_embeds.float()
        return SyncCondition(clip_embedding=embedding.unsqueeze(1), input_latent=latent.float())

    def view_embedding(self, batch: int, elevation_input_rad) -> torch.Tensor:
        """[B, N, 4] = [elev_in - 30deg, sin(az_k - az_0), cos(az_k - az_0), 0]; elevation float32 radians."""
        elevation = torch.as_tensor(elevation_input_rad, dtype=torch.float32, device=self.device).reshape(-1)
        elevation = elevation.expand(batch) if elevation.numel() == 1 else elevation
        # the original negates both elevations (Zero-1-to-3's polar sign) and subtracts: same float32 ops here
        d_elevation = (-math.radians(self.config.target_elevation_deg) - (-elevation)).unsqueeze(1).repeat(1, self.num_views)
        d_azimuth = (self.azimuth - self.azimuth[0].unsqueeze(0)).unsqueeze(0).repeat(batch, 1)
        return torch.stack([d_elevation, torch.sin(d_azimuth), torch.cos(d_azimuth), torch.zeros_like(d_azimuth)], -1)

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """[B] timesteps -> [B, time_dim] (sinusoid, cos first, then the MLP)."""
        from diffusers.models.embeddings import get_timestep_embedding

        sinusoid = get_timestep_embedding(t, self.config.time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        return self.time_embed(sinusoid.to(self.dtype))

    # -- denoising -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_eps(self, x_t: torch.Tensor, t: int, cond: SyncCondition, elevation_input_rad,
                    guidance_scale: float = 2.0, batch_view_num: int = 8) -> torch.Tensor:
        """eps [B, N, 4, h, w] (fp32) for the noisy views x_t [B, N, 4, h, w] at timestep ``t``.

        The spatial volume is built once from all N noisy views; the views then go through the UNet
        ``batch_view_num`` at a time, each chunk as one call on [cond rows; uncond rows]; with guidance
        ``s`` != 1 the result is e_u + s (e_c - e_u).
        """
        B, N, C, h, w = x_t.shape
        assert N == self.num_views and cond.input_latent.shape == (B, C, h, w), (
            f"x_t {tuple(x_t.shape)} must be [B, {self.num_views}, 4, h, w] matching the input latent "
            f"{tuple(cond.input_latent.shape)}")
        x_t = x_t.to(self.device, self.dtype)
        v_embed = self.view_embedding(B, elevation_input_rad).to(self.dtype)  # [B, N, 4]
        timesteps = torch.full((B,), int(t), device=self.device, dtype=torch.long)
        t_embed = self.embed_time(timesteps)  # [B, T]
        volume = self.spatial_volume.spatial_volume(x_t, t_embed, v_embed, self.poses, self.Ks)
        eps = []
        for start in range(0, N, batch_view_num):
            targets = torch.arange(start, min(start + batch_view_num, N), device=self.device)[None].repeat(B, 1)
            eps.append(self._chunk_eps(x_t, timesteps, cond, volume, t_embed, v_embed, targets, guidance_scale))
        return torch.cat(eps, 1)

    def _chunk_eps(self, x_t, timesteps, cond, volume, t_embed, v_embed, targets, guidance_scale):
        """eps [B, TN, 4, h, w] of the target views ``targets`` [B, TN]."""
        B, N, C, h, w = x_t.shape
        TN = targets.shape[1]
        feats = self.spatial_volume.frustum_features(volume, t_embed, v_embed, self.poses, self.Ks, targets)
        views = v_embed[torch.arange(B)[:, None], targets].view(B * TN, self.config.view_dim)
        clip = cond.clip_embedding.to(self.dtype)
        clip = clip.unsqueeze(1).repeat(1, TN, 1, 1).view(B * TN, 1, clip.shape[-1])
        context = self.cc_projection(torch.cat([clip, views.unsqueeze(1)], -1))  # [B*TN, 1, 768]
        concat = cond.input_latent.to(self.dtype).unsqueeze(1).repeat(1, TN, 1, 1, 1).view(B * TN, C, h, w)
        x = x_t[torch.arange(B)[:, None], targets].reshape(B * TN, C, h, w)
        t = timesteps[:, None].repeat(1, TN).view(B * TN)
        if guidance_scale != 1.0:  # one call on [cond; uncond]: zero context, zero concat, zero volume features
            x, t = torch.cat([x, x], 0), torch.cat([t, t], 0)
            context = torch.cat([context, torch.zeros_like(context)], 0)
            concat = torch.cat([concat, torch.zeros_like(concat)], 0)
            feats = {k: torch.cat([v, torch.zeros_like(v)], 0) for k, v in feats.items()}
        concat = concat / self.config.latent_scale  # the UNet sees the unscaled posterior sample
        out = self.unet(torch.cat([x, concat], 1), t, context, feats).float()
        if guidance_scale != 1.0:
            e_c, e_u = out.chunk(2)
            out = e_u + guidance_scale * (e_c - e_u)
        return out.view(B, TN, C, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, 4, h, w] -> images [N, 3, H, W] in [-1, 1] (fp32, clamped)."""
        z = (1.0 / self.config.latent_scale) * latents.to(self.device, self.dtype)
        return self.vae.decode(z, return_dict=False)[0].float().clamp(-1.0, 1.0)
