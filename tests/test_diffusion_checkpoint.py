"""Original LDM checkpoints -> the bundle: a tiny Zero-1-to-3 written out in the LDM / OpenAI-CLIP layout (the
inverse mapping below is written here, independently of the converter) with its LDM training YAML, saved with
torch.save, converted, loaded, and compared output for output with the modules it was made from."""
import builtins
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import yaml

from img2mesh.cli import main
from img2mesh.data.errors import ResourceError
from img2mesh.diffusion import build_random_zero123, convert_checkpoint, load_zero123
from img2mesh.diffusion.architecture import FULL, TINY

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_to_ldm(sd: dict, config) -> dict:
    """diffusers UNet2DConditionModel keys -> LDM openaimodel keys (SD-1.x layout)."""
    L = config.layers_per_block
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] in ("conv_in", "conv_norm_out", "conv_out", "time_embedding"):
            name = {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
                    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
            prefix = ".".join(parts[:2]) if parts[0] == "time_embedding" else parts[0]
            out[f"{name[prefix]}.{parts[-1]}"] = value
            continue
        if parts[0] == "mid_block":
            kind, i, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":
                out[f"middle_block.{2 * i}.{RESNET.get(parts[3], parts[3])}.{parts[-1]}"] = value
            else:
                out[f"middle_block.1.{rest}"] = value
            continue
        block, kind = int(parts[1]), parts[2]
        if parts[0] == "down_blocks":
            if kind == "downsamplers":
                out[f"input_blocks.{1 + block * (L + 1) + L}.0.op.{parts[-1]}"] = value
                continue
            index = 1 + block * (L + 1) + int(parts[3])
        else:
            if kind == "upsamplers":
                has_attn = config.up_block_types[block].startswith("CrossAttn")
                out[f"output_blocks.{block * (L + 1) + L}.{2 if has_attn else 1}.conv.{parts[-1]}"] = value
                continue
            index = block * (L + 1) + int(parts[3])
        group = "input_blocks" if parts[0] == "down_blocks" else "output_blocks"
        if kind == "resnets":
            out[f"{group}.{index}.0.{RESNET[parts[4]]}.{parts[-1]}"] = value
        else:  # attentions: SpatialTransformer with the same inner names
            out[f"{group}.{index}.1.{'.'.join(parts[4:])}"] = value
    return out


def vae_to_ldm(sd: dict, config) -> dict:
    n = len(config.block_out_channels)
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] in ("quant_conv", "post_quant_conv"):
            out[key] = value
            continue
        coder, rest = parts[0], parts[1:]
        if rest[0] in ("conv_in", "conv_out"):
            new = ".".join(rest)
        elif rest[0] == "conv_norm_out":
            new = "norm_out." + rest[-1]
        elif rest[0] == "mid_block":
            if rest[1] == "resnets":
                new = f"mid.block_{int(rest[2]) + 1}.{rest[3]}.{rest[-1]}"
            else:
                name = ".".join(rest[3:-1])
                new = f"mid.attn_1.{VAE_ATTN[name]}.{rest[-1]}"
                if value.ndim == 2:
                    value = value[:, :, None, None]  # LDM's attention uses 1x1 convolutions
        else:
            level = int(rest[1]) if coder == "encoder" else n - 1 - int(rest[1])
            stage = "down" if coder == "encoder" else "up"
            if rest[2] == "resnets":
                name = "nin_shortcut" if rest[4] == "conv_shortcut" else rest[4]
                new = f"{stage}.{level}.block.{rest[3]}.{name}.{rest[-1]}"
            else:
                new = f"{stage}.{level}.{'downsample' if coder == 'encoder' else 'upsample'}.conv.{rest[-1]}"
        out[f"{coder}.{new}"] = value
    return out


def clip_to_openai(sd: dict, layers: int) -> dict:
    v = "vision_model."
    out = {"conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
           "class_embedding": sd[v + "embeddings.class_embedding"],
           "positional_embedding": sd[v + "embeddings.position_embedding.weight"],
           "ln_pre.weight": sd[v + "pre_layrnorm.weight"], "ln_pre.bias": sd[v + "pre_layrnorm.bias"],
           "ln_post.weight": sd[v + "post_layernorm.weight"], "ln_post.bias": sd[v + "post_layernorm.bias"],
           "proj": sd["visual_projection.weight"].t()}
    for i in range(layers):
        s, d = f"{v}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for suffix in ("weight", "bias"):
            out[d + f"attn.in_proj_{suffix}"] = torch.cat([sd[s + f"self_attn.{n}_proj.{suffix}"] for n in "qkv"])
            for old, new in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[d + f"{new}.{suffix}"] = sd[s + f"{old}.{suffix}"]
    return out


class TrainerState:  # stands for a Lightning callback object pickled in a training checkpoint
    def __init__(self):
        self.best = torch.tensor(0.5)


class Exploit:  # what a malicious checkpoint would pickle: it must never run
    def __reduce__(self):
        return builtins.exec, ("import sys; sys.modules['builtins'].PWNED_BY_CKPT = True",)


def ldm_checkpoint(model, with_ema=True) -> dict:
    unet = {"model.diffusion_model." + k: v.clone() for k, v in unet_to_ldm(model.unet.state_dict(), model.unet.config).items()}
    state = {}
    if with_ema:  # raw weights differ from the EMA ones: conversion must take the EMA copy
        state.update({k: v + 0.5 for k, v in unet.items()})
        state.update({"model_ema." + k[len("model."):].replace(".", ""): v for k, v in unet.items()})
        state["model_ema.decay"], state["model_ema.num_updates"] = torch.tensor(0.9999), torch.tensor(1000)
    else:
        state.update(unet)
    state.update({"first_stage_model." + k: v.clone() for k, v in vae_to_ldm(model.vae.state_dict(), model.vae.config).items()})
    layers = model.image_encoder.config.num_hidden_layers
    state.update({"cond_stage_model.model.visual." + k: v.clone()
                  for k, v in clip_to_openai(model.image_encoder.state_dict(), layers).items()})
    state["cond_stage_model.model.logit_scale"] = torch.tensor(4.6)  # text-side leftovers are ignored
    state["cc_projection.weight"] = model.cc_projection.projection.weight.clone()
    state["cc_projection.bias"] = model.cc_projection.projection.bias.clone()
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return state


def ldm_config(model, **heads) -> dict:
    """The LDM training config of a bundle, laid out as Zero-1-to-3's configs/*.yaml; ``heads``: ``num_heads=N``
    or ``num_head_channels=C``, the one thing the weights cannot tell."""
    u, v = model.unet.config, model.vae.config
    base, vae_base = u.block_out_channels[0], v.block_out_channels[0]
    attention = [2 ** i for i, kind in enumerate(u.down_block_types) if "CrossAttn" in kind][::-1]  # e.g. [4, 2, 1]
    unet = dict(image_size=u.sample_size, in_channels=u.in_channels, out_channels=u.out_channels, model_channels=base,
                attention_resolutions=attention,
                num_res_blocks=u.layers_per_block, channel_mult=[c // base for c in u.block_out_channels],
                use_spatial_transformer=True, transformer_depth=1, context_dim=u.cross_attention_dim,
                use_checkpoint=True, legacy=False, **heads)
    ddconfig = dict(double_z=True, z_channels=v.latent_channels, resolution=v.sample_size, in_channels=v.in_channels,
                    out_ch=v.out_channels, ch=vae_base, ch_mult=[c // vae_base for c in v.block_out_channels],
                    num_res_blocks=v.layers_per_block, attn_resolutions=[], dropout=0.0)
    return {"model": {"base_learning_rate": 1.0e-4, "target": "ldm.models.diffusion.ddpm.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": u.sample_size, "channels": 4,
        "conditioning_key": "hybrid", "scale_factor": 0.18215,
        "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": unet},
        "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL",
                               "params": {"embed_dim": v.latent_channels, "ddconfig": ddconfig}},
        "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPImageEmbedder"}}}}


def write_yaml(path, config: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def save_ldm(path, state: dict, config: dict | None = None):
    """A checkpoint file and, given a config, its YAML beside it under the same name."""
    torch.save(state, path)
    if config is not None:
        write_yaml(path.with_suffix(".yaml"), config)
    return path


def same_outputs(a, b):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    latents, poses = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, generator=g)
    emb_a, emb_b = a.encode_clip(images), b.encode_clip(images)
    assert torch.equal(emb_a, emb_b), "CLIP image embeddings differ"
    assert torch.equal(a.encode_concat(images), b.encode_concat(images)), "VAE encodings differ"
    ctx = a.context(emb_a, poses)
    assert torch.equal(ctx, b.context(emb_b, poses)), "cc_projection differs"
    concat = a.encode_concat(images)
    assert torch.equal(a.predict_noise(latents, torch.tensor(251), ctx, concat),
                       b.predict_noise(latents, torch.tensor(251), ctx, concat)), "UNet outputs differ"
    assert torch.equal(a.decode(latents), b.decode(latents)), "VAE decodings differ"


@pytest.fixture(scope="module")
def tiny():
    return build_random_zero123("tiny", seed=5)


def test_ckpt_conversion_roundtrip_gives_identical_outputs(tiny, tmp_path):
    ckpt = save_ldm(tmp_path / "zero123-tiny.ckpt", {"state_dict": ldm_checkpoint(tiny), "global_step": 105000,
                    "callbacks": {"ModelCheckpoint": TrainerState()}, "trap": Exploit()}, ldm_config(tiny, num_heads=8))
    out = convert_checkpoint(ckpt, tmp_path / "converted")
    assert not hasattr(builtins, "PWNED_BY_CKPT"), "the checkpoint ran code while loading"
    converted = load_zero123(out, device="cpu", dtype="fp32")
    same_outputs(tiny, converted)
    direct = load_zero123(ckpt, device="cpu", dtype="fp32")  # --model CKPT converts in memory through the same code
    same_outputs(tiny, direct)


def test_safetensors_checkpoint_without_ema_uses_raw_weights(tiny, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "zero123-tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ldm_checkpoint(tiny, with_ema=False).items()}, str(path))
    write_yaml(path.with_suffix(".yaml"), ldm_config(tiny, num_heads=8))
    same_outputs(tiny, load_zero123(path, device="cpu", dtype="fp32"))


def test_truncated_or_foreign_checkpoints_are_clear_errors(tiny, tmp_path):
    ckpt = tmp_path / "zero123.ckpt"
    torch.save({"state_dict": ldm_checkpoint(tiny)}, ckpt)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:4096])
    with pytest.raises(ResourceError, match="truncated or corrupt"):
        load_zero123(truncated, device="cpu")
    state = ldm_checkpoint(tiny)
    del state["model_ema.diffusion_modelout2weight"]
    partial = tmp_path / "partial.ckpt"
    torch.save(state, partial)
    with pytest.raises(ResourceError, match="lacks 1 of them"):
        load_zero123(partial, device="cpu")
    sd_like = save_ldm(tmp_path / "sd.ckpt", {k: v for k, v in ldm_checkpoint(tiny).items()
                                              if not k.startswith("cond_stage_model")}, ldm_config(tiny, num_heads=8))
    with pytest.raises(ResourceError, match="no CLIP image encoder"):
        load_zero123(sd_like, device="cpu")


def with_heads(model, heads):
    """``model`` with a fresh UNet of the same widths split into ``heads`` heads (an int or one per level)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        unet = UNet2DConditionModel(**{**TINY.unet, "attention_head_dim": heads})
    return replace(model, unet=unet)


def heads_of(unet) -> list[int]:
    from diffusers.models.attention_processor import Attention

    return [m.heads for m in unet.modules() if isinstance(m, Attention)]


def unet_output(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    latents, concat = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    context = torch.randn(2, 1, TINY.cross_attention_dim, generator=g)
    return model.predict_noise(latents, torch.tensor(501), context, concat)


# LDM's two ways to set heads (a count, or a head width that gives each level its own count) -> diffusers' heads
HEADS = [({"num_heads": 4}, 4), ({"num_head_channels": 16}, (2, 4))]


@pytest.mark.parametrize("ldm_heads, heads", HEADS)
def test_convert_takes_the_heads_from_the_original_config(tiny, tmp_path, ldm_heads, heads):
    model = with_heads(tiny, heads)
    assert heads_of(model.unet) != heads_of(tiny.unet), "the test needs a head count other than Zero-1-to-3's 8"
    ckpt = save_ldm(tmp_path / "zero123-tiny.ckpt", {"state_dict": ldm_checkpoint(model)})
    config = write_yaml(tmp_path / "configs" / "tiny-finetune.yaml", ldm_config(model, **ldm_heads))
    assert main(["convert", str(ckpt), str(tmp_path / "given"), "--original-config", str(config), "--quiet"]) == 0
    given = load_zero123(tmp_path / "given", device="cpu", dtype="fp32")
    assert given.unet.config.attention_head_dim == (list(heads) if isinstance(heads, tuple) else heads)
    assert heads_of(given.unet) == heads_of(model.unet)
    same_outputs(model, given)
    # the same YAML beside the checkpoint, under its name, is found without --original-config
    shutil.copy(config, ckpt.with_suffix(".yaml"))
    same_outputs(model, load_zero123(convert_checkpoint(ckpt, tmp_path / "beside"), device="cpu", dtype="fp32"))


def test_the_wrong_head_count_converts_silently_into_another_network(tiny, tmp_path):
    """Why the config matters: 4-head weights read as 8 heads have the same shapes, so nothing refuses them,
    but the network computes something else; with the checkpoint's own config it is the original network."""
    from img2mesh.diffusion.checkpoint import zero123_from_ldm_checkpoint

    model = with_heads(tiny, 4)
    ckpt = save_ldm(tmp_path / "four-heads.ckpt", ldm_checkpoint(model))
    right = zero123_from_ldm_checkpoint(ckpt, write_yaml(tmp_path / "four.yaml", ldm_config(model, num_heads=4)))
    wrong = zero123_from_ldm_checkpoint(ckpt, write_yaml(tmp_path / "eight.yaml", ldm_config(model, num_heads=8)))
    reference = unet_output(model)
    assert torch.equal(unet_output(right), reference)
    assert (unet_output(wrong) - reference).abs().max() > 1e-3


def test_a_checkpoint_that_contradicts_its_config_is_refused_in_one_line(tiny, tmp_path, capsys):
    ckpt = save_ldm(tmp_path / "zero123-tiny.ckpt", {"state_dict": ldm_checkpoint(tiny)})
    code = main(["convert", str(ckpt), str(tmp_path / "out"), "--quiet"])  # no config: Zero-1-to-3's applies
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1, err
    assert "UNet model_channels is 32 in the weights but 320 in the config" in err
    assert "--original-config YAML" in err and "zero123-tiny.yaml" in err
    assert not (tmp_path / "out").exists()

    config = ldm_config(tiny, num_heads=8)
    config["model"]["params"]["unet_config"]["params"]["num_res_blocks"] = 2
    code = main(["convert", str(ckpt), str(tmp_path / "out"), "--original-config",
                 str(write_yaml(tmp_path / "two-blocks.yaml", config)), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "UNet num_res_blocks is 1 in the weights but 2 in the config" in err and "two-blocks.yaml" in err
    del config["model"]["params"]["unet_config"]["params"]["num_heads"]
    code = main(["convert", str(ckpt), str(tmp_path / "out"), "--original-config",
                 str(write_yaml(tmp_path / "no-heads.yaml", config)), "--quiet"])
    assert code == 2 and "no-heads.yaml: unet_config.params sets neither num_heads" in capsys.readouterr().err


def test_full_size_layout_converts_to_the_zero123_architecture(tmp_path):
    """The shapes of a real Zero-1-to-3 checkpoint (built on the meta device, no weights) agree with
    Zero-1-to-3's config, which gives back the full SD-1.x architecture, as its training YAML does; every
    converted key/shape fills the diffusers modules exactly."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from img2mesh.diffusion.ldm_config import (ZERO123, check_against_weights, read_original_config, unet_config,
                                               vae_config)
    from img2mesh.diffusion.openai_clip import clip_vision_config, convert_openai_visual

    with torch.device("meta"):
        unet = UNet2DConditionModel(**FULL.unet)
        vae = AutoencoderKL(**FULL.vae)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**FULL.clip))
    state = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()}
    state.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()})
    check_against_weights(ZERO123, state, "zero123-xl.ckpt")  # its shapes agree with Zero-1-to-3's config
    def settings(config):  # without diffusers' bookkeeping entries
        return {k: v for k, v in config.items() if not k.startswith("_")}

    with torch.device("meta"):  # which gives back the full architecture, 8 heads included
        assert settings(UNet2DConditionModel(**unet_config(ZERO123)).config) == settings(unet.config)
        assert settings(AutoencoderKL(**vae_config(ZERO123)).config) == settings(vae.config)
    training_yaml = write_yaml(tmp_path / "sd-objaverse-finetune-c_concat-256.yaml",
                               ldm_config(SimpleNamespace(unet=unet, vae=vae), num_heads=8))
    assert unet_config(read_original_config(training_yaml)) == unet_config(ZERO123)
    unet_sd = convert_ldm_unet_checkpoint(state, dict(unet.config))
    assert {k: tuple(v.shape) for k, v in unet_sd.items()} == {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    vae_sd = convert_ldm_vae_checkpoint(state, dict(vae.config))
    assert {k: tuple(v.shape) for k, v in vae_sd.items()} == {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    openai = {"cond_stage_model.model.visual." + k: v for k, v in clip_to_openai(clip.state_dict(), 24).items()}
    kwargs = clip_vision_config(openai, "cond_stage_model.model.visual.")
    assert kwargs == FULL.clip
    clip_sd = convert_openai_visual(openai, "cond_stage_model.model.visual.", kwargs)
    assert {k: tuple(v.shape) for k, v in clip_sd.items()} == {k: tuple(v.shape) for k, v in clip.state_dict().items()}

