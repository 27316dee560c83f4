"""Original Zero-1-to-3 LDM checkpoints (``105000.ckpt``, ``165000.ckpt``, ``230000.ckpt``, ``300000.ckpt``,
``zero123-xl.ckpt``, or their ``.safetensors``) -> a :class:`Zero123` bundle, and ``img2mesh convert``.

Key prefixes: ``model.diffusion_model.`` (UNet), ``model_ema.`` (its EMA copy, names without dots; the
reference samples with these, so they are used when present), ``first_stage_model.`` (VAE),
``cond_stage_model.model.visual.`` (OpenAI CLIP ViT-L/14) and ``cc_projection.`` (Linear 772 -> 768).

The UNet and VAE layouts come from the checkpoint's LDM config (ldm_config.py): the YAML given, else the
one beside the checkpoint (same stem), else Zero-1-to-3's; a checkpoint whose shapes contradict it is
refused. The weights then go through diffusers' own LDM key converters; every converted tensor must fill
the diffusers model exactly (strict load) and every source tensor be used.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from img2mesh.data.errors import ResourceError

from .architecture import SCHEDULER
from .ldm_config import (UNET_PREFIX, VAE_PREFIX, ZERO123, OriginalConfig, check_against_weights, config_beside,
                         read_original_config, unet_config, vae_config)
from .openai_clip import clip_vision_config, convert_openai_visual, find_visual_prefix
from .weights import read_state_dict

log = logging.getLogger(__name__)

EMA_PREFIX = "model_ema."


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


def _strict_load(module: torch.nn.Module, converted: dict, n_source: int, what: str) -> None:
    if len(converted) != n_source:
        raise ResourceError(f"the checkpoint's {what} has {n_source} tensors but {len(converted)} were mapped: "
                            "its layout is not SD-1.x")
    result = module.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ResourceError(f"the checkpoint's {what} does not fit the SD-1.x layout (missing "
                            f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")


def zero123_from_state_dict(state: dict, config: OriginalConfig = ZERO123, name: str = "the checkpoint"):
    """Build the bundle from an LDM state dict (tensors on the CPU, fp32 as stored) laid out as ``config``
    says; ``name`` labels the checkpoint in errors."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .ccprojection import CCProjection
    from .zero123 import Zero123, clip_image_processor

    state = take_ema_weights(state)
    check_against_weights(config, state, name)
    unet_kwargs, vae_kwargs = unet_config(config), vae_config(config)
    unet = UNet2DConditionModel(**unet_kwargs)
    _strict_load(unet, convert_ldm_unet_checkpoint(state, unet_kwargs), sum(k.startswith(UNET_PREFIX) for k in state),
                 "UNet")
    vae = AutoencoderKL(**vae_kwargs)
    n_vae = sum(k.startswith(VAE_PREFIX) and not k.startswith(VAE_PREFIX + "loss.") for k in state)
    _strict_load(vae, convert_ldm_vae_checkpoint(state, vae_kwargs), n_vae, "VAE")

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


def original_config_for(path: str | Path, original_config: str | Path | None = None) -> OriginalConfig:
    """The given YAML, else ``<stem>.yaml`` beside the checkpoint, else Zero-1-to-3's config."""
    yaml = original_config if original_config is not None else config_beside(path)
    if yaml is None:
        log.info("no original config given or beside %s: using Zero-1-to-3's", Path(path).name)
        return ZERO123
    log.info("UNet and VAE layout from %s", yaml)
    return read_original_config(yaml)


def zero123_from_ldm_checkpoint(path: str | Path, original_config: str | Path | None = None):
    """Read an original ``.ckpt`` (weights only, never full unpickling) or ``.safetensors`` and convert it,
    laid out by ``original_config`` (an LDM YAML; see :func:`original_config_for` when None)."""
    config = original_config_for(path, original_config)
    return zero123_from_state_dict(read_state_dict(path), config, name=str(path))


def convert_checkpoint(ckpt: str | Path, out_dir: str | Path, original_config: str | Path | None = None) -> Path:
    """``img2mesh convert CKPT OUT [--original-config YAML]``: write the converted diffusers folder (loadable
    with ``--model OUT``)."""
    model = zero123_from_ldm_checkpoint(ckpt, original_config)
    out = model.save_pretrained(out_dir)
    log.info("converted %s -> %s", ckpt, out)
    return out
