"""OpenAI-CLIP visual tower (as pickled inside Zero-1-to-3's LDM checkpoints) -> transformers
``CLIPVisionModelWithProjection``.

OpenAI layout under ``<prefix>`` (ViT-L/14: width 1024, 24 blocks, patch 14, 224 px, output 768):
  conv1.weight [W, 3, p, p] · class_embedding [W] · positional_embedding [1 + g*g, W] · ln_pre.{weight,bias}
  transformer.resblocks.N.{ln_1, attn.in_proj_weight [3W, W] / in_proj_bias [3W], attn.out_proj,
                           ln_2, mlp.c_fc [4W, W], mlp.c_proj [W, 4W]}
  ln_post.{weight,bias} · proj [W, P]   (image embedding = ln_post(x[:, 0]) @ proj)
The packed attention projection splits into q, k, v in that order; ``proj`` is the transpose of
``visual_projection.weight``. Every key and shape is checked before anything is copied.
"""
from __future__ import annotations

import math

import torch

from img2mesh.data.errors import ResourceError

HEAD_WIDTH = 64  # OpenAI CLIP ViTs use width // 64 attention heads (ViT-L/14: 16)


def _get(state: dict, key: str, shape: tuple | None = None) -> torch.Tensor:
    if key not in state:
        raise ResourceError(f"the checkpoint's CLIP image encoder lacks {key}: not an OpenAI-CLIP visual tower")
    value = state[key]
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ResourceError(f"the checkpoint's CLIP tensor {key} is {tuple(value.shape)}, expected {tuple(shape)}")
    return value


def clip_vision_config(state: dict, prefix: str) -> dict:
    """``CLIPVisionConfig`` kwargs read from the shapes of an OpenAI visual tower."""
    width, _, patch, _ = _get(state, prefix + "conv1.weight").shape
    n_pos = _get(state, prefix + "positional_embedding").shape[0]
    grid = math.isqrt(n_pos - 1)
    if grid * grid != n_pos - 1:
        raise ResourceError(f"{prefix}positional_embedding has {n_pos} rows, not 1 + a square: not a ViT image tower")
    layers = 0
    while prefix + f"transformer.resblocks.{layers}.ln_1.weight" in state:
        layers += 1
    return dict(hidden_size=width, intermediate_size=_get(state, prefix + "transformer.resblocks.0.mlp.c_fc.weight").shape[0],
                num_hidden_layers=layers, num_attention_heads=max(1, width // HEAD_WIDTH), image_size=grid * patch,
                patch_size=patch, projection_dim=_get(state, prefix + "proj").shape[1], hidden_act="quick_gelu",
                layer_norm_eps=1e-5)


def convert_openai_visual(state: dict, prefix: str, config: dict) -> dict:
    """The transformers state dict of ``CLIPVisionModelWithProjection`` for the tower under ``prefix``."""
    w, p, n = config["hidden_size"], config["patch_size"], config["num_hidden_layers"]
    mlp, proj = config["intermediate_size"], config["projection_dim"]
    n_pos = (config["image_size"] // p) ** 2 + 1
    v = "vision_model."
    out = {
        v + "embeddings.patch_embedding.weight": _get(state, prefix + "conv1.weight", (w, 3, p, p)),
        v + "embeddings.class_embedding": _get(state, prefix + "class_embedding", (w,)),
        v + "embeddings.position_embedding.weight": _get(state, prefix + "positional_embedding", (n_pos, w)),
        v + "pre_layrnorm.weight": _get(state, prefix + "ln_pre.weight", (w,)),  # sic: transformers' name
        v + "pre_layrnorm.bias": _get(state, prefix + "ln_pre.bias", (w,)),
        v + "post_layernorm.weight": _get(state, prefix + "ln_post.weight", (w,)),
        v + "post_layernorm.bias": _get(state, prefix + "ln_post.bias", (w,)),
        "visual_projection.weight": _get(state, prefix + "proj", (w, proj)).t().contiguous(),
    }
    for i in range(n):
        src, dst = f"{prefix}transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        qkv_w = _get(state, src + "attn.in_proj_weight", (3 * w, w))
        qkv_b = _get(state, src + "attn.in_proj_bias", (3 * w,))
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[dst + f"self_attn.{name}.weight"] = qkv_w[j * w:(j + 1) * w].contiguous()
            out[dst + f"self_attn.{name}.bias"] = qkv_b[j * w:(j + 1) * w].contiguous()
        pairs = [("attn.out_proj", "self_attn.out_proj", (w, w)), ("ln_1", "layer_norm1", None),
                 ("ln_2", "layer_norm2", None), ("mlp.c_fc", "mlp.fc1", (mlp, w)), ("mlp.c_proj", "mlp.fc2", (w, mlp))]
        for old, new, shape in pairs:
            out[dst + f"{new}.weight"] = _get(state, src + f"{old}.weight", shape or (w,))
            out[dst + f"{new}.bias"] = _get(state, src + f"{old}.bias", (shape[0],) if shape else (w,))
    if prefix + f"transformer.resblocks.{n}.ln_1.weight" in state:
        raise ResourceError(f"the checkpoint's CLIP tower has more than {n} blocks")
    return out


def find_visual_prefix(state: dict) -> str:
    """The key prefix of the OpenAI visual tower (Zero-1-to-3: ``cond_stage_model.model.visual.``)."""
    hits = sorted(k[: -len("conv1.weight")] for k in state
                  if k.startswith("cond_stage_model.") and k.endswith("visual.conv1.weight"))
    if not hits:
        raise ResourceError("the checkpoint has no CLIP image encoder (cond_stage_model.*visual.*): "
                            "is this a Zero-1-to-3 checkpoint?")
    return hits[0]
