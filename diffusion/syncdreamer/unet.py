"""SyncDreamer's UNet: Zero-1-to-3's SD-1.x UNet (diffusers' ``UNet2DConditionModel``) plus depth-wise
attention blocks that read each target view's frustum features.

The original subclasses LDM's UNet and inserts a :class:`DepthTransformer` after the middle block
(``middle_conditions``) and after each of the last output blocks (``output_conditions.0-8`` for output blocks
3-11 of SD-1.x); each attends, at every pixel, over the frustum feature map of the same width with a softmax
over depth. diffusers' up blocks run several LDM output blocks in one call, so :meth:`SyncDreamerUNet.forward`
walks their resnets, attentions and upsamplers itself, in the order diffusers' own blocks use.
Depth-attention parameter names are the original's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .volume import GROUPS


class DepthAttention(nn.Module):
    """Per pixel, a query from the 2D features attends over the D depth samples of the frustum features."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head ** -0.5
        self.to_q = nn.Conv2d(query_dim, inner, 1, 1, bias=False)
        self.to_k = nn.Conv3d(context_dim, inner, 1, 1, bias=False)
        self.to_v = nn.Conv3d(context_dim, inner, 1, 1, bias=False)
        self.to_out = nn.Conv2d(inner, query_dim, 1, 1, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x [b, c, h, w], context [b, c', d, h, w] -> [b, c, h, w]."""
        hn, hd = self.heads, self.dim_head
        b, _, h, w = x.shape
        d = context.shape[2]
        q = self.to_q(x).reshape(b, hn, hd, h, w)
        k = self.to_k(context).reshape(b, hn, hd, d, h, w)
        v = self.to_v(context).reshape(b, hn, hd, d, h, w)
        attn = (torch.sum(q.unsqueeze(3) * k, 2) * self.scale).softmax(dim=2)  # [b, hn, d, h, w]
        out = torch.sum(v * attn.unsqueeze(2), 3)  # [b, hn, hd, h, w]
        return self.to_out(out.reshape(b, hn * hd, h, w))


class DepthTransformer(nn.Module):
    """x + proj_out(depth_attn(proj_in(x), proj_context(frustum features))).

    ``proj_context`` is conv (no bias) -> GroupNorm -> ReLU, so zero features (the unconditional branch) still
    become GroupNorm's bias through the ReLU: the block cannot be skipped for them.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        inner = heads * dim_head
        self.proj_in = nn.Sequential(nn.Conv2d(dim, inner, 1, 1), nn.GroupNorm(GROUPS, inner), nn.SiLU(True))
        self.proj_context = nn.Sequential(nn.Conv3d(context_dim, context_dim, 1, 1, bias=False),
                                          nn.GroupNorm(GROUPS, context_dim), nn.ReLU(True))
        self.depth_attn = DepthAttention(inner, context_dim, heads, dim_head)
        self.proj_out = nn.Sequential(nn.GroupNorm(GROUPS, inner), nn.ReLU(True),
                                      nn.Conv2d(inner, inner, 3, 1, 1, bias=False),
                                      nn.GroupNorm(GROUPS, inner), nn.ReLU(True),
                                      nn.Conv2d(inner, dim, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.depth_attn(self.proj_in(x), self.proj_context(context))
        return self.proj_out(h) + x


def condition_layout(widths: list[int], layers: int, volume_dims: list[int], conditioned: int) -> list[tuple[int, int]]:
    """(channels, frustum feature width index) after each of the last ``conditioned`` output blocks.

    widths: the UNet's per-level channels; layers: resnets per down level (up levels have one more);
    volume_dims: frustum feature channels at full, 1/2, 1/4, 1/8 latent width. Output block j of level
    ``l`` (from the lowest resolution) ends at that level's width, or, when it upsamples, one level finer.
    """
    n = len(widths)
    out = []
    for up in range(n):
        level = n - 1 - up  # resolution index of this up level: 0 = full latent size
        for i in range(layers + 1):
            upsamples = up < n - 1 and i == layers
            out.append((widths[level], level - 1 if upsamples else level))
    return [(ch, volume_dims[r]) for ch, r in out[len(out) - conditioned:]]


class SyncDreamerUNet(nn.Module):
    """``unet`` (diffusers SD-1.x UNet) with ``middle_conditions`` and ``output_conditions`` (original names)."""

    def __init__(self, unet_kwargs: dict, volume_dims: list[int], conditioned: int, heads: int):
        from diffusers import UNet2DConditionModel
        from diffusers.models.attention_processor import AttnProcessor2_0

        super().__init__()
        self.unet = UNet2DConditionModel(**unet_kwargs)
        self.unet.set_attn_processor(AttnProcessor2_0())
        widths = list(unet_kwargs["block_out_channels"])
        d_mid = volume_dims[len(widths) - 1]
        self.middle_conditions = DepthTransformer(widths[-1], heads, d_mid // 2, d_mid)
        self.output_conditions = nn.ModuleList(
            DepthTransformer(ch, heads, d // 2, d)
            for ch, d in condition_layout(widths, unet_kwargs["layers_per_block"], volume_dims, conditioned))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                volume: dict[int, torch.Tensor]) -> torch.Tensor:
        """x [B, 8, h, w] (noisy latent + concat latent), t [B], context [B, 1, 768], volume {width: [B, c, D,
        width, width]} -> eps [B, 4, h, w]."""
        u = self.unet
        emb = u.time_embedding(u.time_proj(t).to(x.dtype))
        h = u.conv_in(x)
        skips = [h]
        for block in u.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            skips += res
        h = u.mid_block(h, emb, encoder_hidden_states=context)
        h = self.middle_conditions(h, volume[h.shape[-1]])

        first_conditioned = sum(len(b.resnets) for b in u.up_blocks) - len(self.output_conditions)
        j = 0  # LDM output block index
        for block in u.up_blocks:
            attentions = getattr(block, "attentions", None)
            for i, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
                if attentions is not None:
                    h = attentions[i](h, encoder_hidden_states=context, return_dict=False)[0]
                if i == len(block.resnets) - 1 and block.upsamplers is not None:
                    for upsampler in block.upsamplers:
                        h = upsampler(h)
                if j >= first_conditioned:
                    h = self.output_conditions[j - first_conditioned](h, volume[h.shape[-1]])
                j += 1
        h = u.conv_out(u.conv_act(u.conv_norm_out(h)))
        return h
