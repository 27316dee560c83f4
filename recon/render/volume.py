"""Volume rendering of NeuS and voxel-NeRF fields along ray batches, through nerfacc's functions.

The field is passed in; rendering knows only its interface:
  NeuS:  ``sdf(x) -> [N]``, ``geometry(x) -> (sdf [N], grad [N, 3], feature [N, F])``,
         ``color(x, dirs, normal, feature) -> [N, 3]``, ``inv_s() -> scalar``
  voxel: ``density(x) -> [N]``, ``color(x, dirs) -> [N, 3]``
Samples are batched ``[n_rays, n_samples]`` (nerfacc's pure-torch path, which runs on CPU too); colour is
evaluated only where a sample's weight matters and accumulated with ``ray_indices``.
Background is a constant colour (white); depth is SJC's: sum w t + (1 - opacity) * far.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from nerfacc import accumulate_along_rays, render_visibility_from_alpha, render_weight_from_alpha

from ..fields.neus import neus_section_alpha
from .rays import RayBatch

WEIGHT_EPS = 1e-4  # samples whose weight is below this get no colour evaluation (their share is negligible)


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [n_rays, 3] composited on the background
    opacity: torch.Tensor  # [n_rays]
    depth: torch.Tensor  # [n_rays]
    weights: torch.Tensor  # [n_rays, n_samples]
    gradients: torch.Tensor | None = None  # [n_points, 3] SDF gradients at samples (NeuS, for the eikonal loss)
    surface_points: torch.Tensor | None = None  # [k, 3] detached samples that carry weight (near the surface)
    n_points: int = 0  # samples whose colour was evaluated (a cost measure)


def stratified_t(near: torch.Tensor, far: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """n samples per ray in [near, far]: bin centres, or jittered within bins when a generator is given."""
    u = torch.arange(n, device=near.device, dtype=near.dtype)[None, :]
    if generator is None:
        u = u + 0.5
    else:
        u = u + torch.rand(near.shape[0], n, generator=generator).to(near.device, near.dtype)
    return near[:, None] + (far - near)[:, None] * (u / n)  # [n_rays, n]


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse-CDF samples (deterministic, evenly spaced in the CDF) from piecewise-constant weights.

    bins: [n_rays, s + 1] interval edges; weights: [n_rays, s] -> [n_rays, n] positions.
    """
    pdf = (weights + 1e-5) / (weights + 1e-5).sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1)], dim=-1)  # [n_rays, s + 1]
    u = torch.linspace(0.5 / n, 1.0 - 0.5 / n, n, device=bins.device, dtype=bins.dtype).expand(bins.shape[0], n)
    idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
    below, above = (idx - 1).clamp(0, bins.shape[1] - 1), idx.clamp(0, bins.shape[1] - 1)
    cdf_b, cdf_a = cdf.gather(1, below), cdf.gather(1, above)
    bin_b, bin_a = bins.gather(1, below), bins.gather(1, above)
    denom = torch.where(cdf_a - cdf_b < 1e-5, torch.ones_like(cdf_a), cdf_a - cdf_b)
    return bin_b + (u - cdf_b) / denom * (bin_a - bin_b)


def neus_alpha(sdf: torch.Tensor, cos: torch.Tensor, dists: torch.Tensor, inv_s: torch.Tensor | float,
               cos_anneal: float = 1.0) -> torch.Tensor:
    """NeuS's opacity of each section from the SDF at its midpoint (all [n_rays, n_samples]): the ends are
    estimated from the midpoint value and the slope ``cos`` = dir . grad. ``cos_anneal`` < 1 blends in a slope
    that never lets alpha vanish early in training (NeuS's anneal)."""
    iter_cos = -(torch.relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal) + torch.relu(-cos) * cos_anneal)
    return neus_section_alpha(sdf - iter_cos * dists * 0.5, sdf + iter_cos * dists * 0.5, inv_s)


def _upsample_weights(t: torch.Tensor, sdf: torch.Tensor, inv_s: float) -> torch.Tensor:
    """NeuS's importance weights [n_rays, s - 1] from SDF values at sorted samples t [n_rays, s] (no grad): the
    slope between samples, never positive (only a surface entered counts), bounds each section's ends."""
    prev_sdf, next_sdf = sdf[:, :-1], sdf[:, 1:]
    dist = t[:, 1:] - t[:, :-1]
    mid = 0.5 * (prev_sdf + next_sdf)
    cos = (next_sdf - prev_sdf) / (dist + 1e-5)
    cos = torch.minimum(torch.cat([torch.zeros_like(cos[:, :1]), cos[:, :-1]], dim=-1), cos).clamp(-1e3, 0.0)
    alpha = neus_section_alpha(mid - cos * dist * 0.5, mid + cos * dist * 0.5, inv_s)
    weights, _ = render_weight_from_alpha(alpha)
    return weights


@torch.no_grad()
def neus_samples(field, rays: RayBatch, n_samples: int, n_importance: int, up_sample_steps: int,
                 generator: torch.Generator | None, up_sample_growth: float = 2.0) -> torch.Tensor:
    """Sorted sample positions [n_rays, n_samples + n_importance]: stratified, then NeuS's importance rounds
    with sharpening inv_s = 64 * growth^i (NeuS: growth 2) that concentrate samples at the first zero
    crossing of the SDF."""
    t = stratified_t(rays.near, rays.far, n_samples, generator)
    if n_importance <= 0:
        return t
    o, d = rays.origins[:, None, :], rays.dirs[:, None, :]
    sdf = field.sdf((o + t[..., None] * d).reshape(-1, 3)).reshape(t.shape)
    steps = max(1, up_sample_steps)
    per_step = [n_importance // steps + (1 if i < n_importance % steps else 0) for i in range(steps)]
    for i, k in enumerate(per_step):
        if k == 0:
            continue
        new_t = sample_pdf(t, _upsample_weights(t, sdf, 64.0 * up_sample_growth**i), k)
        new_sdf = field.sdf((o + new_t[..., None] * d).reshape(-1, 3)).reshape(new_t.shape)
        t, order = torch.sort(torch.cat([t, new_t], dim=-1), dim=-1)
        sdf = torch.cat([sdf, new_sdf], dim=-1).gather(1, order)
    return t


def render_neus(field, rays: RayBatch, n_samples: int, n_importance: int, up_sample_steps: int, *,
                cos_anneal: float = 1.0, generator: torch.Generator | None = None, background: float = 1.0,
                up_sample_growth: float = 2.0, early_stop_eps: float = 1e-5, sdf_band: float = 12.0) -> RenderOutput:
    """Render a NeuS field: samples -> SDF, gradient -> NeuS alpha -> nerfacc weights -> rgb, opacity, depth.

    A no-grad pass over all samples finds those that can matter: visible (transmittance above
    ``early_stop_eps``) and within ``sdf_band`` / inv_s of the surface (further out, alpha and its
    gradient both vanish, as sigmoid' < 1e-5). Only those are evaluated again with gradients, which on CPU
    is most of the cost saved; the others keep alpha 0.
    """
    n_rays = len(rays)
    t = neus_samples(field, rays, n_samples, n_importance, up_sample_steps, generator, up_sample_growth)
    edges = torch.cat([t, torch.maximum(rays.far[:, None], t[:, -1:])], dim=-1)
    dists = edges[:, 1:] - edges[:, :-1]  # [n_rays, s]
    mid = t + 0.5 * dists
    dirs = rays.dirs[:, None, :].expand(-1, t.shape[1], -1).reshape(-1, 3)  # [n_rays * s, 3]
    points = (rays.origins[:, None, :] + mid[..., None] * rays.dirs[:, None, :]).reshape(-1, 3)
    inv_s = field.inv_s()
    with torch.no_grad():
        # Opacity estimated from the SDF at consecutive samples alone (NeuS's discrete alpha, no gradient
        # needed); it only decides which samples are visible, so it errs towards keeping them (small eps).
        sdf = field.sdf(points)
        sdf_rays = sdf.reshape(t.shape)  # [n_rays, s]
        alpha_est = neus_section_alpha(sdf_rays[:, :-1], sdf_rays[:, 1:], inv_s)
        alpha_est = torch.cat([alpha_est, torch.zeros_like(alpha_est[:, :1])], dim=-1)
        visible = render_visibility_from_alpha(alpha_est, early_stop_eps=early_stop_eps).reshape(-1)
        active = visible & (sdf.abs() * inv_s < sdf_band) & (dists.reshape(-1) > 0)
    # Gathers by index_select throughout: its backward (index_add) costs a fraction of boolean or advanced
    # indexing's (index_put with accumulation), and with unique indices both give the same numbers.
    idx = torch.nonzero(active).squeeze(1)
    sdf, grad, feature = field.geometry(points.index_select(0, idx))
    alpha_active = neus_alpha(sdf, (dirs.index_select(0, idx) * grad).sum(-1), dists.reshape(-1)[idx], inv_s,
                              cos_anneal)
    alpha = torch.zeros(t.numel(), device=t.device, dtype=alpha_active.dtype).index_put((idx,), alpha_active)
    weights, _ = render_weight_from_alpha(alpha.reshape(t.shape))  # [n_rays, s]
    w_active = weights.reshape(-1).index_select(0, idx)
    keep = torch.nonzero(w_active.detach() > WEIGHT_EPS).squeeze(1)  # colour only where it shows
    ci = idx[keep]
    grad_kept = grad.index_select(0, keep)
    normal = grad_kept / grad_kept.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    points_kept = points.index_select(0, ci)
    feature = field.feature(points_kept) if feature is None else feature.index_select(0, keep)
    color = field.color(points_kept, dirs.index_select(0, ci), normal, feature)
    ray_idx = torch.div(ci, t.shape[1], rounding_mode="floor")
    rgb = accumulate_along_rays(w_active.index_select(0, keep), color, ray_idx, n_rays)
    opacity = accumulate_along_rays(weights, None).squeeze(-1)
    depth = accumulate_along_rays(weights, mid[..., None]).squeeze(-1) + (1.0 - opacity) * rays.far
    rgb = rgb + background * (1.0 - opacity[:, None])
    return RenderOutput(rgb, opacity, depth, weights, grad, points_kept.detach(), len(keep))


def render_voxel(field, rays: RayBatch, step_size: float, *, generator: torch.Generator | None = None,
                 background: float = 1.0, early_stop_eps: float = 1e-4) -> RenderOutput:
    """Render a density field by ray marching with a fixed step (SJC): alpha = 1 - exp(-sigma * step).

    A no-grad pass finds the visible samples (transmittance above ``early_stop_eps``); density and colour
    are then evaluated with gradients only there.
    """
    n_rays = len(rays)
    n_steps = max(1, int(math.ceil(float((rays.far - rays.near).max()) / step_size)))
    t = stratified_t(rays.near, rays.near + n_steps * step_size, n_steps, generator)  # [n_rays, n_steps]
    inside = t < rays.far[:, None]
    points = rays.origins[:, None, :] + t[..., None] * rays.dirs[:, None, :]  # [n_rays, n_steps, 3]
    flat_inside = inside.reshape(-1)
    with torch.no_grad():
        sigma = torch.zeros(t.numel(), device=t.device)
        sigma[flat_inside] = field.density(points.reshape(-1, 3)[flat_inside])
        alpha = 1.0 - torch.exp(-sigma.reshape(t.shape) * step_size)
        visible = render_visibility_from_alpha(alpha, early_stop_eps=early_stop_eps).reshape(-1) & flat_inside
    sel_points = points.reshape(-1, 3)[visible]
    sel_dirs = rays.dirs[:, None, :].expand(-1, n_steps, -1).reshape(-1, 3)[visible]
    sel_alpha = 1.0 - torch.exp(-field.density(sel_points) * step_size)
    alpha = torch.zeros(t.numel(), device=t.device, dtype=sel_alpha.dtype).masked_scatter(visible, sel_alpha)
    weights, _ = render_weight_from_alpha(alpha.reshape(t.shape))  # [n_rays, n_steps]
    ray_idx = torch.arange(n_rays, device=t.device).repeat_interleave(n_steps)[visible]
    color = field.color(sel_points, sel_dirs)
    rgb = accumulate_along_rays(weights.reshape(-1)[visible], color, ray_idx, n_rays)
    opacity = accumulate_along_rays(weights, None).squeeze(-1)
    depth = accumulate_along_rays(weights, t[..., None]).squeeze(-1) + (1.0 - opacity) * rays.far
    rgb = rgb + background * (1.0 - opacity[:, None])
    return RenderOutput(rgb, opacity, depth, weights, None, sel_points.detach(), int(visible.sum()))


@torch.no_grad()
def surface_density(field, rays: RayBatch, step_size: float) -> float:
    """Median density where the rendered transmittance of (foreground) rays crosses 0.5: the level at which a
    density field's iso-surface sits where its renders put the surface (the voxel NeRF's meshing level)."""
    n_steps = max(1, int(math.ceil(float((rays.far - rays.near).max()) / step_size)))
    t = stratified_t(rays.near, rays.near + n_steps * step_size, n_steps, None)  # [n_rays, n_steps]
    points = rays.origins[:, None, :] + t[..., None] * rays.dirs[:, None, :]
    sigma = field.density(points.reshape(-1, 3)).reshape(t.shape) * (t < rays.far[:, None])
    depth = (sigma * step_size).cumsum(dim=-1)  # optical depth up to each sample
    crossed = depth >= math.log(2.0)
    hit = crossed.any(dim=-1)
    if not hit.any():
        return float("nan")
    first = crossed.float().argmax(dim=-1)[hit]  # first sample at or past half transmittance
    return float(sigma[hit].gather(1, first[:, None]).median())
