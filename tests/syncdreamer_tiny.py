"""A tiny random SyncDreamer saved as the original release is: a Lightning ``.ckpt`` in the original key layout
plus an OpenAI-layout TorchScript CLIP archive, for tests that convert and load it through the users' path.

    model, ckpt, clip = write_tiny_syncdreamer(tmp_path)      # model: the SyncDreamer the files hold
    img2mesh convert <ckpt> OUT --clip <clip> --volume-size 8 --frustum-depth 8

The original layout is written here from the model's modules with inverse key maps of this test suite
(independent of the converter). The archive holds its own random weights: the checkpoint's must win.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import yaml
from test_diffusion_checkpoint import clip_to_openai, unet_to_ldm, vae_to_ldm

from img2mesh.diffusion.syncdreamer.model import CAMERA_BUFFERS, SCHEDULE_BUFFERS, SyncDreamer
from img2mesh.diffusion.syncdreamer.sizes import build_random_syncdreamer, tiny_config

TINY_SIZES = dict(volume_size=8, frustum_depth=8)  # convert options the tiny files are meant to be used with
TEXT_WIDTH, TEXT_CONTEXT, TEXT_VOCAB = 64, 8, 10  # a small text tower, as OpenAI's archive has one


def text_leftovers(projection_dim: int) -> dict:
    """What the original keeps of CLIP's text side (it deletes only the text transformer): name -> shape."""
    return {"positional_embedding": (TEXT_CONTEXT, TEXT_WIDTH), "token_embedding.weight": (TEXT_VOCAB, TEXT_WIDTH),
            "ln_final.weight": (TEXT_WIDTH,), "ln_final.bias": (TEXT_WIDTH,),
            "text_projection": (TEXT_WIDTH, projection_dim), "logit_scale": ()}


def tiny_syncdreamer(seed: int = 0, **sizes) -> SyncDreamer:
    return build_random_syncdreamer(tiny_config(**{**TINY_SIZES, **sizes}), seed=seed)


def original_state_dict(model: SyncDreamer) -> dict:
    """The model's tensors under the names ``SyncMultiviewDiffusion.state_dict()`` gives them."""
    sd = model.state_dict()
    out = {}
    unet = model.unet.unet
    out.update({"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()})
    out.update({"model.diffusion_model." + k[len("unet."):]: v for k, v in sd.items()
                if k.startswith(("unet.middle_conditions.", "unet.output_conditions."))})
    out.update({k: v for k, v in sd.items() if k.startswith(("spatial_volume.", "time_embed.", "cc_projection."))})
    out.update({k: sd[k] for k in CAMERA_BUFFERS + SCHEDULE_BUFFERS})
    out.update({"first_stage_model." + k: v for k, v in vae_to_ldm(model.vae.state_dict(), model.vae.config).items()})
    layers = model.image_encoder.config.num_hidden_layers
    out.update({"clip_image_encoder.model.visual." + k: v
                for k, v in clip_to_openai(model.image_encoder.state_dict(), layers).items()})
    g = torch.Generator().manual_seed(1)
    leftovers = text_leftovers(model.config.clip["projection_dim"])
    out.update({"clip_image_encoder.model." + k: torch.randn(shape, generator=g) for k, shape in leftovers.items()})
    return {k: v.clone().contiguous() for k, v in out.items()}


class _Holder(nn.Module):
    """Only holds parameters; TorchScript needs a forward on every module it saves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ResidualAttentionBlock(_Holder):
    def __init__(self, width: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, max(1, width // 64))
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))


class _Transformer(_Holder):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[_ResidualAttentionBlock(width) for _ in range(layers)])


class _VisionTransformer(_Holder):
    def __init__(self, width: int, layers: int, patch: int, grid: int, output_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = _Transformer(width, layers)
        self.proj = nn.Parameter(torch.randn(width, output_dim))


class _OpenAIClip(_Holder):
    """OpenAI CLIP's parameter names and archive entries (image and text towers)."""

    def __init__(self, clip: dict):
        super().__init__()
        grid = clip["image_size"] // clip["patch_size"]
        self.visual = _VisionTransformer(clip["hidden_size"], clip["num_hidden_layers"], clip["patch_size"], grid,
                                         clip["projection_dim"])
        self.transformer = _Transformer(TEXT_WIDTH, 1)
        self.token_embedding = nn.Embedding(TEXT_VOCAB, TEXT_WIDTH)
        self.positional_embedding = nn.Parameter(torch.randn(TEXT_CONTEXT, TEXT_WIDTH))
        self.ln_final = nn.LayerNorm(TEXT_WIDTH)
        self.text_projection = nn.Parameter(torch.randn(TEXT_WIDTH, clip["projection_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.register_buffer("input_resolution", torch.tensor(clip["image_size"]))
        self.register_buffer("context_length", torch.tensor(TEXT_CONTEXT))
        self.register_buffer("vocab_size", torch.tensor(TEXT_VOCAB))


def write_clip_archive(path: Path, clip: dict, seed: int = 7) -> Path:
    """A TorchScript archive laid out as OpenAI's ``ViT-L-14.pt`` for the CLIP sizes ``clip``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _OpenAIClip(clip)
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def original_yaml(model: SyncDreamer, **heads) -> dict:
    """The original's configs/syncdreamer.yaml for this model (``heads``: num_heads=N or num_head_channels=C)."""
    u = model.unet.unet.config
    base = u.block_out_channels[0]
    attention = [2 ** i for i, kind in enumerate(u.down_block_types) if "CrossAttn" in kind][::-1]
    unet = dict(volume_dims=list(model.config.volume_dims), image_size=model.latent_size, in_channels=u.in_channels,
                out_channels=u.out_channels, model_channels=base, attention_resolutions=attention,
                num_res_blocks=u.layers_per_block, channel_mult=[c // base for c in u.block_out_channels],
                use_spatial_transformer=True, transformer_depth=1, context_dim=u.cross_attention_dim,
                use_checkpoint=True, legacy=False, **(heads or {"num_heads": u.attention_head_dim}))
    return {"model": {"base_learning_rate": 5e-5, "target": "ldm.models.diffusion.sync_dreamer.SyncMultiviewDiffusion",
                      "params": {"view_num": model.config.view_num, "image_size": model.config.image_size,
                                 "cfg_scale": 2.0, "batch_view_num": 4, "clip_image_encoder_path": "ckpt/ViT-L-14.pt",
                                 "unet_config": {"target": "ldm.models.diffusion.sync_dreamer_attention.DepthWiseAttention",
                                                 "params": unet}}}}


def write_tiny_syncdreamer(folder: Path, seed: int = 0, model: SyncDreamer | None = None,
                           with_yaml: bool = False) -> tuple[SyncDreamer, Path, Path]:
    """``folder/syncdreamer-tiny.ckpt`` (Lightning dict, original keys) and ``folder/ViT-L-14.pt``; with_yaml
    also writes ``syncdreamer-tiny.yaml`` beside the checkpoint. Returns the model the checkpoint holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else tiny_syncdreamer(seed)
    ckpt = folder / "syncdreamer-tiny.ckpt"
    torch.save({"state_dict": original_state_dict(model), "epoch": 3, "global_step": 80000,
                "pytorch-lightning_version": "1.9.0", "lr_schedulers": [{"last_epoch": 80000}]}, ckpt)
    if with_yaml:
        ckpt.with_suffix(".yaml").write_text(yaml.safe_dump(original_yaml(model), sort_keys=False))
    clip = write_clip_archive(folder / "ViT-L-14.pt", model.config.clip, seed=seed + 7)
    return model, ckpt, clip
