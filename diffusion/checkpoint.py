"""Original Zero-1-to-3 LDM checkpoints (``105000.ckpt``, ``165000.ckpt``, ``230000.ckpt``, ``300000.ckpt``,
``zero123-xl.ckpt``, or their ``.safetensors``) -> a :class:`Zero123` bundle, and ``img2mesh convert``.

Key prefixes: ``model.diffusion_model.`` (UNet), ``model_ema.`` (its EMA copy, names without dots; the
reference samples with these, so they are used when present), ``first_stage_model.`` (VAE),
``cond_stage_model.model.visual.`` (OpenAI CLIP ViT-L/14) and ``cc_projection.`` (Linear 772 -> 768).

The UNet and VAE go through diffusers' own LDM converters; the LDM "original config" they need is read
from the checkpoint's shapes (all public Zero-1-to-3 checkpoints are SD-1.x at 256 px; the shapes also
describe the tiny test models). Only the UNet's head count is invisible in shapes: it is 8, as in SD-1.x.
Every converted tensor must fill the diffusers model exactly (strict load) and every source tensor be used.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from img2mesh.data.errors import ResourceError

from .architecture import LATENT_SCALE, SCHEDULER
from .openai_clip import clip_vision_config, convert_openai_visual, find_visual_prefix
from .weights import read_state_dict

log = logging.getLogger(__name__)

UNET_PREFIX, EMA_PREFIX, VAE_PREFIX = "model.diffusion_model.", "model_ema.", "first_stage_model."
SD1_NUM_HEADS = 8  # every Zero-1-to-3 checkpoint is an SD-1.x UNet: 8 heads (not recoverable from shapes)
ZERO123_IMAGE_SIZE = 256  # the images Zero-1-to-3 was trained on (configs' sample_size only)


def take_ema_weights(state: dict) -> dict:
    """Replace the raw UNet weights by their EMA copies when the checkpoint has them, as the reference samples
    with those (docs/reference.md section 1)."""
    unet_keys = [k for k in state if k.startswith(UNET_PREFIX)]
    ema_of = {k: EMA_PREFIX + k[len("model."):].replace(".", "") for k in unet_keys}
    if not any(k.startswith(EMA_PREFIX) and k not in (EMA_PREFIX + "decay", EMA_PREFIX + "num_updates") for k in state):
        log.warning("checkpoint has no EMA weights (model_ema.*): using the raw UNet weights")
        return state
    missing = [ema for ema in ema_of.values() if ema not in state]
    if missing:
        raise ResourceError(f"checkpoint has EMA weights but lacks {len(missing)} of them (e.g. {missing[0]}): "
                            "it is truncated or corrupt; download it again")
    log.info("using the checkpoint's EMA UNet weights, as the reference sampler does")
    out = {k: v for k, v in state.items() if not k.startswith(EMA_PREFIX)}
    out.update({k: state[ema] for k, ema in ema_of.items()})
    return out


def ldm_unet_params(state: dict) -> dict:
    """The LDM ``unet_config.params`` that diffusers' converter reads, from the UNet's shapes."""
    sd = {k[len(UNET_PREFIX):]: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    if "input_blocks.0.0.weight" not in sd:
        raise ResourceError("the checkpoint has no UNet (model.diffusion_model.input_blocks.0.0.weight): "
                            "is this a Zero-1-to-3 checkpoint?")
    model_channels, in_channels = sd["input_blocks.0.0.weight"].shape[:2]
    mult, res_blocks, attention, level, blocks_in_level, context_dim, depth, linear = [], [], [], 0, 0, None, 1, False
    i = 1
    while f"input_blocks.{i}.0.op.weight" in sd or f"input_blocks.{i}.0.in_layers.2.weight" in sd:
        if f"input_blocks.{i}.0.op.weight" in sd:  # a downsampler closes the level
            res_blocks.append(blocks_in_level)
            level, blocks_in_level = level + 1, 0
        else:
            channels = sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]
            if blocks_in_level == 0:
                mult.append(channels // model_channels)
            blocks_in_level += 1
            proj_in = sd.get(f"input_blocks.{i}.1.proj_in.weight")
            if proj_in is not None:
                if 2 ** level not in attention:
                    attention.append(2 ** level)
                context_dim = sd[f"input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight"].shape[1]
                depth = sum(1 for k in sd if k.startswith(f"input_blocks.{i}.1.transformer_blocks.")
                            and k.endswith(".attn2.to_k.weight"))
                linear = proj_in.ndim == 2
        i += 1
    res_blocks.append(blocks_in_level)
    if len(set(res_blocks)) != 1:
        raise ResourceError(f"the checkpoint's UNet has uneven levels {res_blocks}: not an SD-1.x UNet")
    return dict(in_channels=int(in_channels), out_channels=int(sd["out.2.weight"].shape[0]),
                model_channels=int(model_channels), channel_mult=mult, num_res_blocks=res_blocks[0],
                attention_resolutions=attention, num_heads=SD1_NUM_HEADS, context_dim=context_dim,
                transformer_depth=depth, use_linear_in_transformer=linear)


def ldm_vae_params(state: dict) -> dict:
    """The LDM ``first_stage_config.params.ddconfig`` from the VAE's shapes."""
    p = VAE_PREFIX
    if p + "encoder.conv_in.weight" not in state:
        raise ResourceError("the checkpoint has no VAE (first_stage_model.*): is this a Zero-1-to-3 checkpoint?")
    ch, in_channels = state[p + "encoder.conv_in.weight"].shape[:2]
    levels = 0
    while p + f"encoder.down.{levels}.block.0.conv1.weight" in state:
        levels += 1
    res_blocks = 0
    while p + f"encoder.down.0.block.{res_blocks}.conv1.weight" in state:
        res_blocks += 1
    return dict(double_z=True, z_channels=int(state[p + "decoder.conv_in.weight"].shape[1]),
                resolution=ZERO123_IMAGE_SIZE, in_channels=int(in_channels),
                out_ch=int(state[p + "decoder.conv_out.weight"].shape[0]), ch=int(ch),
                ch_mult=[int(state[p + f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch) for i in range(levels)],
                num_res_blocks=res_blocks, attn_resolutions=[], dropout=0.0)


def _strict_load(module: torch.nn.Module, converted: dict, n_source: int, what: str) -> None:
    if len(converted) != n_source:
        raise ResourceError(f"the checkpoint's {what} has {n_source} tensors but {len(converted)} were mapped: "
                            "its layout is not SD-1.x")
    result = module.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ResourceError(f"the checkpoint's {what} does not fit the SD-1.x layout (missing "
                            f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")


def zero123_from_state_dict(state: dict):
    """Build the bundle from an LDM state dict (tensors on the CPU, fp32 as stored)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
                                                     create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .ccprojection import CCProjection
    from .zero123 import Zero123, clip_image_processor

    state = take_ema_weights(state)
    original = {"model": {"params": {
        "unet_config": {"params": ldm_unet_params(state)},
        "first_stage_config": {"params": {"ddconfig": ldm_vae_params(state)}},
        "scale_factor": LATENT_SCALE}}}
    with warnings.catch_warnings():  # image_size is "deprecated" there but the only way to state 256 px
        warnings.simplefilter("ignore", FutureWarning)
        unet_config = create_unet_diffusers_config_from_ldm(original, state, image_size=ZERO123_IMAGE_SIZE)
        vae_config = create_vae_diffusers_config_from_ldm(original, state, image_size=ZERO123_IMAGE_SIZE,
                                                          scaling_factor=LATENT_SCALE)

    unet = UNet2DConditionModel(**unet_config)
    _strict_load(unet, convert_ldm_unet_checkpoint(state, unet_config), sum(k.startswith(UNET_PREFIX) for k in state), "UNet")
    vae = AutoencoderKL(**vae_config)
    n_vae = sum(k.startswith(VAE_PREFIX) and not k.startswith(VAE_PREFIX + "loss.") for k in state)
    _strict_load(vae, convert_ldm_vae_checkpoint(state, vae_config), n_vae, "VAE")

    prefix = find_visual_prefix(state)
    clip_kwargs = clip_vision_config(state, prefix)
    clip_config = CLIPVisionConfig(**clip_kwargs)
    clip_config._attn_implementation = "sdpa"
    image_encoder = CLIPVisionModelWithProjection(clip_config)
    image_encoder.load_state_dict(convert_openai_visual(state, prefix, clip_kwargs), strict=True)

    if "cc_projection.weight" not in state or "cc_projection.bias" not in state:
        raise ResourceError("the checkpoint has no cc_projection.weight/bias: is this a Zero-1-to-3 checkpoint?")
    out_channel, in_channel = state["cc_projection.weight"].shape
    cc_projection = CCProjection(in_channel=int(in_channel), out_channel=int(out_channel))
    cc_projection.projection.load_state_dict({"weight": state["cc_projection.weight"], "bias": state["cc_projection.bias"]})

    scheduler = DDIMScheduler(**SCHEDULER)
    if "alphas_cumprod" in state:  # LDM stores its schedule: make sure it is the one we sample with
        from .scheduler import ldm_betas

        expected = torch.cumprod(1.0 - ldm_betas(scheduler.config), 0).float()
        if state["alphas_cumprod"].shape != expected.shape or (state["alphas_cumprod"].float() - expected).abs().max() > 1e-5:
            raise ResourceError("the checkpoint's noise schedule is not SD-1.x's scaled-linear 0.00085..0.012: "
                                "not a Zero-1-to-3 checkpoint")
    return Zero123(unet=unet, vae=vae, image_encoder=image_encoder,
                   feature_extractor=clip_image_processor(clip_kwargs["image_size"]),
                   cc_projection=cc_projection, scheduler=scheduler, device=torch.device("cpu"), dtype=torch.float32)


def zero123_from_ldm_checkpoint(path: str | Path):
    """Read an original ``.ckpt`` (weights only, never full unpickling) or ``.safetensors`` and convert it."""
    return zero123_from_state_dict(read_state_dict(path))


def convert_checkpoint(ckpt: str | Path, out_dir: str | Path) -> Path:
    """``img2mesh convert CKPT OUT``: write the converted diffusers folder (loadable with ``--model OUT``)."""
    model = zero123_from_ldm_checkpoint(ckpt)
    out = model.save_pretrained(out_dir)
    log.info("converted %s -> %s", ckpt, out)
    return out
