"""The original SyncDreamer checkpoint (``syncdreamer-pretrain.ckpt``, a Lightning ``state_dict``) plus
OpenAI's TorchScript CLIP (``ViT-L-14.pt``) -> :class:`SyncDreamer`, and ``img2mesh convert`` for them.

Checkpoint layout (docs/reference.md, SyncDreamer model):
  model.diffusion_model.*            Zero-1-to-3's LDM UNet + ``middle_conditions`` / ``output_conditions.N``
  spatial_volume.*, time_embed.*     the volume networks and their time MLP (names kept as they are)
  first_stage_model.*                the SD VAE
  clip_image_encoder.model.visual.*  the OpenAI CLIP image tower (the text tower's leftovers are dropped)
  cc_projection.*                    Linear(772, 768)
  poses, Ks, azimuth, betas, ...     the 16 target cameras and the training schedule
The original builds CLIP from the TorchScript archive and then loads the checkpoint strictly, so the archive
decides the architecture while every weight, camera and schedule value comes from the checkpoint: the same
here. Sizes are read from the tensors; the UNet heads from the original YAML when given (``--original-config``
or ``<stem>.yaml`` beside the checkpoint; else SyncDreamer's own, 8). Every tensor must be used and every parameter filled, or the checkpoint is refused in one line.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from img2mesh.data.errors import InputError, ResourceError

from ..checkpoint import _strict_load
from ..ldm_config import (UNET_PREFIX, VAE_PREFIX, OriginalConfig, check_against_weights, config_beside,
                          read_original_config, unet_config, unet_shape_params, vae_config, vae_shape_params)
from ..openai_clip import clip_vision_config, convert_openai_visual
from ..weights import corrupt_file_error, read_state_dict
from .model import CAMERA_BUFFERS, SCHEDULE_BUFFERS, SyncDreamer, SyncDreamerConfig
from .sizes import SYNCDREAMER_UNET

log = logging.getLogger(__name__)

CLIP_ARCHIVE_NAME = "ViT-L-14.pt"
CLIP_PREFIX = "clip_image_encoder.model."
VISUAL_PREFIX = CLIP_PREFIX + "visual."
# what the original keeps of OpenAI CLIP besides the image tower: never used by image encoding
CLIP_TEXT_LEFTOVERS = ("positional_embedding", "token_embedding.weight", "ln_final.weight", "ln_final.bias",
                       "text_projection", "logit_scale")
CONDITION_PREFIXES = (UNET_PREFIX + "middle_conditions.", UNET_PREFIX + "output_conditions.")
OWN_PREFIXES = ("spatial_volume.", "time_embed.", "cc_projection.")  # same names in the checkpoint and here
ARCHIVE_FIELDS = ("input_resolution", "context_length", "vocab_size")  # OpenAI archives' non-weight entries


def is_syncdreamer_state(state: dict) -> bool:
    return any(k.startswith("spatial_volume.") for k in state)


def _shape(state: dict, key: str) -> tuple:
    if key not in state:
        raise ResourceError(f"the checkpoint lacks {key}: not a SyncDreamer checkpoint, or a damaged one")
    return tuple(state[key].shape)


def volume_sizes(state: dict) -> dict:
    """The volume networks' and depth attention's widths, as the tensors give them."""
    sv = "spatial_volume."
    frustum = [_shape(state, sv + "frustum_volume_feats.conv0.weight")[0]] + [
        _shape(state, sv + f"frustum_volume_feats.conv{i}.conv.weight")[0] for i in (1, 3, 5)]
    spatial = [_shape(state, sv + "spatial_volume_feats.init_conv.weight")[0]] + [
        _shape(state, sv + f"spatial_volume_feats.conv{i}.conv.weight")[0] for i in (1, 3, 5)]
    run = _shape(state, sv + "target_encoder.init_conv.weight")[0]
    features = _shape(state, sv + "target_encoder.final_out.2.weight")[0]
    view_num = _shape(state, "poses")[0]
    spatial_in = _shape(state, sv + "spatial_volume_feats.init_conv.weight")[1]
    if spatial_in != features * view_num:
        raise ResourceError(f"the checkpoint's spatial volume takes {spatial_in} channels, not {features} per view "
                            f"x {view_num} views: not a SyncDreamer checkpoint")
    conditioned = 0
    while UNET_PREFIX + f"output_conditions.{conditioned}.proj_in.0.weight" in state:
        conditioned += 1
    context_dim, cc_in = _shape(state, "cc_projection.weight")
    image_size = round(2 * float(state["Ks"][0, 0, 2])) if "Ks" in state else None  # principal point = centre
    return dict(volume_dims=frustum, spatial_dims=spatial, encoder_dims=[run, features], view_num=view_num,
                conditioned_blocks=conditioned, context_dim=context_dim, cc_in=cc_in, image_size=image_size,
                time_dim=_shape(state, "time_embed.0.weight")[0],
                view_dim=_shape(state, sv + "target_encoder.out_conv0.view_embed.weight")[1])


def read_clip_archive(path: str | Path) -> dict:
    """The tensors of OpenAI's TorchScript CLIP archive (``ViT-L-14.pt``) by name, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"CLIP archive {path} does not exist: give OpenAI's ViT-L-14.pt with --clip")
    try:
        archive = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # TorchScript raises RuntimeError for short files and anything not an archive
        raise corrupt_file_error(path, e) from None
    state = {k: v for k, v in archive.state_dict().items() if k not in ARCHIVE_FIELDS}
    if "visual.conv1.weight" not in state:
        raise ResourceError(f"{path} is not an OpenAI CLIP archive (no visual.conv1.weight): give ViT-L-14.pt")
    return state


def tensor_config(state: dict, yaml: OriginalConfig | None, image_size: int) -> OriginalConfig:
    """The UNet as the original YAML describes it (to be checked against the tensors), else as the tensors
    give it with SyncDreamer's 8 heads; the VAE, fixed in the original's code rather than its YAML, as the
    tensors give it."""
    vae = {**vae_shape_params(state), "double_z": True, "resolution": image_size, "attn_resolutions": [],
           "dropout": 0.0}
    if yaml is None:
        unet = {**unet_shape_params(state), "num_heads": SYNCDREAMER_UNET.unet["num_heads"],
                "use_spatial_transformer": True}
        return OriginalConfig(unet=unet, vae=vae, scale_factor=SYNCDREAMER_UNET.scale_factor,
                              source="the checkpoint's tensors with SyncDreamer's 8 heads")
    return replace(yaml, vae=vae)


def syncdreamer_config(state: dict, clip_archive: dict, original: OriginalConfig | None = None,
                       volume_size: int = 32, frustum_depth: int = 48, name: str = "the checkpoint") -> SyncDreamerConfig:
    """Every size of the network from the checkpoint's tensors, checked against the original YAML's UNet
    (``original``, whose heads it takes; None: SyncDreamer's 8) and the CLIP archive (the image tower)."""
    if not is_syncdreamer_state(state):
        raise ResourceError(f"{name} has no spatial_volume.* tensors: not a SyncDreamer checkpoint")
    sizes = volume_sizes(state)
    if sizes["image_size"] is None:
        raise ResourceError(f"{name} lacks the Ks camera buffer: not a complete SyncDreamer checkpoint")
    original = tensor_config(state, original, sizes["image_size"])
    check_against_weights(original, state, name)
    clip = clip_vision_config(clip_archive, "visual.")
    in_checkpoint = clip_vision_config(state, VISUAL_PREFIX)
    wrong = [f"{k} is {in_checkpoint[k]} in the checkpoint but {clip[k]} in the archive" for k in clip
             if clip[k] != in_checkpoint[k]]
    if wrong:
        raise InputError(f"the CLIP archive does not match {name}'s image encoder ({'; '.join(wrong)}): give the "
                         "CLIP archive it was trained with (OpenAI's ViT-L-14.pt)")
    if sizes["cc_in"] != clip["projection_dim"] + sizes["view_dim"]:
        raise ResourceError(f"{name}'s cc_projection takes {sizes['cc_in']} inputs, not CLIP's {clip['projection_dim']} "
                            f"+ {sizes['view_dim']}: not a SyncDreamer checkpoint")
    unet = unet_config(original)
    if sizes["context_dim"] != unet["cross_attention_dim"]:
        raise ResourceError(f"{name}'s cc_projection gives {sizes['context_dim']} channels but its UNet attends "
                            f"to {unet['cross_attention_dim']}")
    for value, what in ((volume_size, "volume size"), (frustum_depth, "frustum depth")):
        if value < 8 or value % 8:
            raise InputError(f"the {what} must be a multiple of 8 (the 3D networks halve it three times), got {value}")
    volume_dims = original.unet.get("volume_dims")  # the original YAML's DepthWiseAttention widths, if given
    if volume_dims is not None and [int(d) for d in volume_dims] != sizes["volume_dims"]:
        raise InputError(f"{name} does not match its original config {original.source}: volume_dims is "
                         f"{sizes['volume_dims']} in the weights but {list(volume_dims)} in the config")
    return SyncDreamerConfig(
        unet=unet, vae=vae_config(original), clip=clip, volume_dims=sizes["volume_dims"],
        spatial_dims=sizes["spatial_dims"], encoder_dims=sizes["encoder_dims"],
        conditioned_blocks=sizes["conditioned_blocks"], context_dim=sizes["context_dim"], time_dim=sizes["time_dim"],
        view_dim=sizes["view_dim"], view_num=sizes["view_num"], image_size=sizes["image_size"],
        volume_size=volume_size, frustum_depth=frustum_depth, latent_scale=original.scale_factor, source=str(name))


def load_weights(model: SyncDreamer, state: dict, name: str = "the checkpoint") -> None:
    """Fill every parameter and buffer of ``model`` from the original state dict; refuse unused tensors."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    used = set()
    unet_keys = [k for k in state if k.startswith(UNET_PREFIX) and not k.startswith(CONDITION_PREFIXES)]
    base = {k: state[k] for k in unet_keys}
    _strict_load(model.unet.unet, convert_ldm_unet_checkpoint(base, dict(model.unet.unet.config)), len(base), "UNet")
    used.update(unet_keys)

    vae_keys = [k for k in state if k.startswith(VAE_PREFIX)]
    _strict_load(model.vae, convert_ldm_vae_checkpoint(state, dict(model.vae.config)), len(vae_keys), "VAE")
    used.update(vae_keys)

    visual_keys = [k for k in state if k.startswith(VISUAL_PREFIX)]
    layers = model.config.clip["num_hidden_layers"]
    if len(visual_keys) != 8 + 12 * layers:  # 8 tower tensors + 12 per transformer block
        raise ResourceError(f"{name}'s CLIP image tower has {len(visual_keys)} tensors, not the {8 + 12 * layers} "
                            "of an OpenAI ViT: a damaged or foreign checkpoint")
    model.image_encoder.load_state_dict(convert_openai_visual(state, VISUAL_PREFIX, model.config.clip), strict=True)
    used.update(visual_keys)
    used.update(CLIP_PREFIX + k for k in CLIP_TEXT_LEFTOVERS if CLIP_PREFIX + k in state)

    own = {k[len("model.diffusion_model."):] if k.startswith(CONDITION_PREFIXES) else k: k for k in state
           if k.startswith(CONDITION_PREFIXES + OWN_PREFIXES) or k in CAMERA_BUFFERS + SCHEDULE_BUFFERS}
    targets = {("unet." + k if k.startswith(("middle_conditions.", "output_conditions.")) else k): v
               for k, v in own.items()}
    own_state = {k: v for k, v in model.state_dict().items()
                 if not k.startswith(("unet.unet.", "vae.", "image_encoder."))}
    missing, unexpected = sorted(set(own_state) - set(targets)), sorted(set(targets) - set(own_state))
    if missing or unexpected:
        raise ResourceError(f"{name} does not fit SyncDreamer's network (missing {missing[:3]}, unexpected "
                            f"{unexpected[:3]}): a damaged checkpoint or another model")
    wrong = [f"{k} {tuple(state[src].shape)} vs {tuple(own_state[k].shape)}" for k, src in targets.items()
             if state[src].shape != own_state[k].shape]
    if wrong:
        raise ResourceError(f"{name}'s tensors do not have the sizes its other tensors imply ({wrong[0]})")
    model.load_state_dict({k: state[src] for k, src in targets.items()}, strict=False)
    used.update(targets.values())

    unused = sorted(set(state) - used)
    if unused:
        raise ResourceError(f"{name} holds {len(unused)} tensors SyncDreamer does not have (e.g. {unused[0]}): "
                            "not the original SyncDreamer checkpoint")


def syncdreamer_from_checkpoint(ckpt: str | Path, clip: str | Path, original_config: str | Path | None = None,
                                volume_size: int = 32, frustum_depth: int = 48) -> SyncDreamer:
    """Read the original checkpoint (weights only, never full unpickling) and the CLIP archive, and build the
    network on the CPU in fp32."""
    yaml = original_config if original_config is not None else config_beside(ckpt)
    original = None if yaml is None else read_original_config(yaml)
    state = read_state_dict(ckpt)
    config = syncdreamer_config(state, read_clip_archive(clip), original, volume_size, frustum_depth, name=str(ckpt))
    model = SyncDreamer.empty(config)  # every tensor then comes from the checkpoint
    load_weights(model, state, name=str(ckpt))
    return model.eval().requires_grad_(False)


def clip_archive_for(ckpt: str | Path, clip: str | Path | None) -> Path:
    """The CLIP archive given, else ``ViT-L-14.pt`` beside the checkpoint."""
    if clip is not None:
        return Path(clip)
    beside = Path(ckpt).with_name(CLIP_ARCHIVE_NAME)
    if not beside.is_file():
        raise InputError(f"{Path(ckpt).name} needs OpenAI's CLIP archive: give it with --clip {CLIP_ARCHIVE_NAME} "
                         "(or put it beside the checkpoint)")
    return beside


def convert_checkpoint(ckpt: str | Path, out: str | Path, clip: str | Path | None = None,
                       original_config: str | Path | None = None, volume_size: int = 32,
                       frustum_depth: int = 48) -> Path:
    """``img2mesh convert CKPT OUT --clip ViT-L-14.pt [--original-config YAML] [--volume-size 32]
    [--frustum-depth 48]``: write a model folder that ``--model OUT`` loads (``clip``: default ViT-L-14.pt
    beside the checkpoint)."""
    clip = clip_archive_for(ckpt, clip)
    model = syncdreamer_from_checkpoint(ckpt, clip, original_config, volume_size, frustum_depth)
    folder = model.save_pretrained(out)
    log.info("converted %s -> %s", ckpt, folder)
    return folder

