"""Reconstruction losses as pure functions of rendered and target tensors.

Each returns a scalar; the trainer collects them in a named dict and weights them with ``lambda_<name>``
from :class:`~img2mesh.recon.config.LossConfig`. Per-ray ``weight`` tensors carry the input-view weight.
"""
from __future__ import annotations

import math

import torch


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` [n] (or [n, c], averaged over c) with per-row ``weight`` [n]."""
    if values.dim() == 2:
        values = values.mean(dim=-1)
    if weight is None:
        return values.mean()
    assert weight.shape == values.shape, f"weight {tuple(weight.shape)} vs values {tuple(values.shape)}"
    return (values * weight).sum() / weight.sum().clamp_min(1e-8)


def rgb_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             kind: str = "soft_l1") -> torch.Tensor:
    """Photometric loss. pred, target: [n_rays, 3]; soft_l1 = sqrt(d^2 + 1e-3) (NeuS), mse = d^2 (SJC)."""
    assert pred.shape == target.shape and pred.shape[-1] == 3, f"pred {tuple(pred.shape)} target {tuple(target.shape)}"
    d = pred - target
    if kind == "soft_l1":
        per = torch.sqrt(d * d + 1e-3)
    elif kind == "mse":
        per = d * d
    else:
        raise ValueError(f"unknown rgb loss {kind!r}: use soft_l1 or mse")
    return _weighted_mean(per, weight)


def mask_loss(opacity: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between rendered opacity [n_rays] and the view's alpha [n_rays] (NeuS's mask loss)."""
    assert opacity.shape == alpha.shape and opacity.dim() == 1, f"{tuple(opacity.shape)} vs {tuple(alpha.shape)}"
    return _weighted_mean((opacity - alpha) ** 2, weight)


def eikonal_loss(gradients: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean (|grad sdf| - 1)^2 over points. gradients: [n_points, 3]; weight: [n_points] or None."""
    assert gradients.dim() == 2 and gradients.shape[-1] == 3, f"gradients must be [n, 3], got {tuple(gradients.shape)}"
    return _weighted_mean((gradients.norm(dim=-1) - 1.0) ** 2, weight)


def depth_smoothness_loss(depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SJC's depth smoothness on image patches, restricted to the object.

    depth: [n_patches, p, p] rendered depth; mask: [n_patches, p, p] in {0, 1} (the view's alpha > 0.5).
    (mean |dx| + mean |dy|) / 2 where each difference counts only if both of its pixels are in the mask.
    """
    assert depth.shape == mask.shape and depth.dim() == 3, f"depth {tuple(depth.shape)} mask {tuple(mask.shape)}"
    m = mask.to(depth.dtype)
    mx = m[:, :, 1:] * m[:, :, :-1]  # [n_patches, p, p - 1]
    my = m[:, 1:, :] * m[:, :-1, :]  # [n_patches, p - 1, p]
    dx = (depth[:, :, 1:] - depth[:, :, :-1]).abs()
    dy = (depth[:, 1:, :] - depth[:, :-1, :]).abs()
    mean_dx = (dx * mx).sum() / mx.sum().clamp_min(1.0)
    mean_dy = (dy * my).sum() / my.sum().clamp_min(1.0)
    return 0.5 * (mean_dx + mean_dy)


def near_view_loss(rgb: torch.Tensor, rgb_near: torch.Tensor, depth: torch.Tensor, depth_near: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """SJC's near-view consistency: L1 colour [n, 3] + L1 depth [n] between a camera and a jittered copy.

    ``mask`` [n] (optional) restricts the depth term to object pixels, where depth is defined.
    """
    assert rgb.shape == rgb_near.shape and depth.shape == depth_near.shape, "near-view renders must match in shape"
    color = (rgb - rgb_near).abs().mean()
    d = (depth - depth_near).abs()
    depth_term = d.mean() if mask is None else (d * mask).sum() / mask.sum().clamp_min(1.0)
    return color + depth_term


def emptiness_loss(weights: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    """SJC's emptiness: mean log(1 + scale * w) over samples [n_rays, n_samples]: few, strong weights."""
    return torch.log1p(scale * weights).mean()


def sparsity_loss(opacity: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Mean opacity [n_rays] of rays whose target alpha [n_rays] is background (< 0.5): no floaters."""
    off = (alpha < 0.5).to(opacity.dtype)
    return (opacity * off).sum() / off.sum().clamp_min(1.0)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = float(((pred.detach() - target.detach()) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))
