"""The LDM "original config" of a Zero-1-to-3 checkpoint -> diffusers UNet and VAE configs.

An original checkpoint's YAML (Zero-1-to-3's ``configs/sd-objaverse-finetune-c_concat-256.yaml``) describes
the UNet under ``model.params.unet_config.params`` and the VAE under
``model.params.first_stage_config.params.ddconfig`` (docs/reference.md section 1). Most of it can be read
back from the weights' shapes, but not the attention heads: the same projections split into 4 or 8 heads
give different networks with identical tensors. So the layout comes from a config, either the user's YAML
or Zero-1-to-3's own values below, and the weights' shapes are checked against it before anything is built:
a checkpoint that contradicts its config is refused instead of being converted into a different network.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2mesh.data.errors import InputError, ResourceError

from .architecture import LATENT_SCALE

UNET_PREFIX, VAE_PREFIX = "model.diffusion_model.", "first_stage_model."
NO_VALUE = -1  # LDM's "not set" for num_heads / num_head_channels


@dataclass(frozen=True)
class OriginalConfig:
    """The parts of an LDM config that decide the converted networks."""

    unet: dict  # model.params.unet_config.params
    vae: dict  # model.params.first_stage_config.params.ddconfig
    scale_factor: float  # model.params.scale_factor: the VAE latent scale
    source: str  # where it came from, for messages


# Zero-1-to-3's training config (every public checkpoint, 105000 to zero123-xl, was trained with it)
ZERO123 = OriginalConfig(
    unet=dict(in_channels=8, out_channels=4, model_channels=320, channel_mult=[1, 2, 4, 4], num_res_blocks=2,
              attention_resolutions=[4, 2, 1], num_heads=8, transformer_depth=1, context_dim=768,
              use_spatial_transformer=True, legacy=False),
    vae=dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
             num_res_blocks=2, attn_resolutions=[], dropout=0.0),
    scale_factor=LATENT_SCALE,
    source="Zero-1-to-3's config",
)


# -- reading ------------------------------------------------------------------------------------------------
def config_beside(checkpoint: str | Path) -> Path | None:
    """``zero123-xl.ckpt`` -> ``zero123-xl.yaml`` in the same folder, if it exists."""
    path = Path(checkpoint).with_suffix(".yaml")
    return path if path.is_file() else None


def _section(config, *keys) -> dict | None:
    """config[k0][k1]... when every level is a mapping, else None."""
    for key in keys:
        config = config.get(key) if isinstance(config, dict) else None
    return config if isinstance(config, dict) else None


def read_original_config(path: str | Path) -> OriginalConfig:
    """Read an LDM training YAML. Its VAE section and scale factor default to Zero-1-to-3's when absent."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"original config {path} does not exist")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # omegaconf/yaml raise many types for malformed files
        raise InputError(f"{path} is not a readable YAML file ({str(e).splitlines()[0][:120]})") from None
    unet = _section(config, "model", "params", "unet_config", "params")
    if unet is None:
        raise InputError(f"{path} has no model.params.unet_config.params: not an LDM model config")
    vae = _section(config, "model", "params", "first_stage_config", "params", "ddconfig") or ZERO123.vae
    scale = (_section(config, "model", "params") or {}).get("scale_factor", ZERO123.scale_factor)
    try:
        original = OriginalConfig(unet=unet, vae=vae, scale_factor=float(scale), source=str(path))
        unet_config(original), vae_config(original)  # complete and consistent before any weight is read
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{path}: an entry of its unet_config or ddconfig has the wrong type ({e})") from None
    return original


# -- what the weights' shapes say ---------------------------------------------------------------------------
def unet_shape_params(state: dict) -> dict:
    """The UNet's ``unet_config.params`` that its tensor shapes determine (everything but the heads)."""
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
                attention_resolutions=attention, context_dim=context_dim, transformer_depth=depth,
                use_linear_in_transformer=linear)


def vae_shape_params(state: dict) -> dict:
    """The VAE's ``ddconfig`` entries that its tensor shapes determine."""
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
    widths = [int(state[p + f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in range(levels)]
    return dict(in_channels=int(in_channels), out_ch=int(state[p + "decoder.conv_out.weight"].shape[0]), ch=int(ch),
                ch_mult=[w // ch for w in widths], num_res_blocks=res_blocks,
                z_channels=int(state[p + "decoder.conv_in.weight"].shape[1]))


# -- what the config says, in the same terms ----------------------------------------------------------------
def _one(value, key: str):
    """LDM lets some entries be per-level lists; the SD-1.x layout has one value for all levels."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise InputError(f"unet_config {key}: {list(value)} differs between levels, which an SD-1.x UNet "
                             "cannot express")
        return value[0]
    return value


def unet_config_params(params: dict) -> dict:
    """The config's UNet entries that shapes can confirm, with LDM's defaults for the optional ones."""
    missing = [k for k in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions")
               if k not in params]
    if missing:
        raise InputError(f"unet_config.params lacks {', '.join(missing)}: not an LDM UNet config")
    if not params.get("use_spatial_transformer", False):
        raise InputError("unet_config.params.use_spatial_transformer is not true: not a Stable-Diffusion UNet")
    mult = [int(m) for m in params.get("channel_mult", [1, 2, 4, 8])]
    context_dim = params.get("context_dim")
    return dict(in_channels=int(params["in_channels"]), out_channels=int(params["out_channels"]),
                model_channels=int(params["model_channels"]), channel_mult=mult,
                num_res_blocks=int(_one(params["num_res_blocks"], "num_res_blocks")),
                # only downsampling factors that exist count, in the order the levels come
                attention_resolutions=[2 ** i for i in range(len(mult))
                                       if 2 ** i in params["attention_resolutions"]],
                context_dim=None if context_dim is None else int(_one(context_dim, "context_dim")),
                transformer_depth=int(_one(params.get("transformer_depth", 1), "transformer_depth")),
                use_linear_in_transformer=bool(params.get("use_linear_in_transformer", False)))


def vae_config_params(ddconfig: dict) -> dict:
    """The config's VAE entries that shapes can confirm."""
    missing = [k for k in ("in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "z_channels", "resolution")
               if k not in ddconfig]
    if missing:
        raise InputError(f"first_stage_config ddconfig lacks {', '.join(missing)}: not an LDM autoencoder config")
    if ddconfig.get("attn_resolutions"):
        raise InputError("first_stage_config ddconfig.attn_resolutions is not empty: the SD VAE has attention in "
                         "its middle block only")
    return dict(in_channels=int(ddconfig["in_channels"]), out_ch=int(ddconfig["out_ch"]), ch=int(ddconfig["ch"]),
                ch_mult=[int(m) for m in ddconfig["ch_mult"]], num_res_blocks=int(ddconfig["num_res_blocks"]),
                z_channels=int(ddconfig["z_channels"]))


def check_against_weights(config: OriginalConfig, state: dict, checkpoint: str) -> None:
    """Refuse a checkpoint whose shapes contradict ``config``: one line naming every disagreement."""
    wrong = []
    for part, expected, found in (("UNet", unet_config_params(config.unet), unet_shape_params(state)),
                                  ("VAE", vae_config_params(config.vae), vae_shape_params(state))):
        wrong += [f"{part} {key} is {found[key]} in the weights but {expected[key]} in the config"
                  for key in found if found[key] != expected[key]]
    if not wrong:
        return
    if config is ZERO123:
        advice = (f"give the LDM config it was trained with: --original-config YAML, or put it beside the "
                  f"checkpoint as {Path(checkpoint).with_suffix('.yaml').name}")
        raise ResourceError(f"{checkpoint} does not match {config.source}: {'; '.join(wrong)}; {advice}")
    raise InputError(f"{checkpoint} does not match its original config {config.source}: {'; '.join(wrong)}; "
                     "give the YAML this checkpoint was trained with (--original-config)")


# -- diffusers configs --------------------------------------------------------------------------------------
def attention_heads(params: dict, widths: list[int]) -> list[int]:
    """Heads per level as LDM builds them: ``num_head_channels`` (a fixed head width) wins when set,
    else ``num_heads`` heads at every level."""
    head_channels = int(params.get("num_head_channels") or NO_VALUE)
    num_heads = int(params.get("num_heads") or NO_VALUE)
    if head_channels != NO_VALUE:
        heads = [w // head_channels for w in widths]
        if any(w % head_channels for w in widths):
            raise InputError(f"unet_config num_head_channels {head_channels} does not divide the widths {widths}")
        return heads
    if num_heads == NO_VALUE:
        raise InputError("unet_config.params sets neither num_heads nor num_head_channels: the heads are unknown")
    if any(w % num_heads for w in widths):
        raise InputError(f"unet_config num_heads {num_heads} does not divide the widths {widths}")
    return [num_heads] * len(widths)


def unet_config(config: OriginalConfig) -> dict:
    """``UNet2DConditionModel`` kwargs for the config's UNet."""
    p = unet_config_params(config.unet)
    widths = [p["model_channels"] * m for m in p["channel_mult"]]
    attends = [2 ** level in p["attention_resolutions"] for level in range(len(widths))]
    heads = attention_heads(config.unet, widths)
    return dict(
        sample_size=int(config.vae["resolution"]) // 2 ** (len(config.vae["ch_mult"]) - 1),  # the latent side
        in_channels=p["in_channels"], out_channels=p["out_channels"],
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        block_out_channels=tuple(widths), layers_per_block=p["num_res_blocks"],
        # diffusers' attention_head_dim is the number of heads (a historical misnomer), per down block
        attention_head_dim=heads[0] if len(set(heads)) == 1 else tuple(heads),
        cross_attention_dim=p["context_dim"], transformer_layers_per_block=p["transformer_depth"],
        use_linear_projection=p["use_linear_in_transformer"], norm_num_groups=32,
    )


def vae_config(config: OriginalConfig) -> dict:
    """``AutoencoderKL`` kwargs for the config's VAE."""
    p = vae_config_params(config.vae)
    n = len(p["ch_mult"])
    return dict(in_channels=p["in_channels"], out_channels=p["out_ch"], down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(p["ch"] * m for m in p["ch_mult"]),
                layers_per_block=p["num_res_blocks"], latent_channels=p["z_channels"],
                sample_size=int(config.vae["resolution"]), norm_num_groups=32, scaling_factor=config.scale_factor)
