"""Training rays: every pixel's ray with its target, bounded to where the object can be, and batch sampling.

Bounds are the key to speed on CPU: the object lies inside its visual hull, so each ray is sampled only
between where it enters and leaves the (slightly dilated) carved hull, and rays that miss it are never
rendered (their opacity is zero by construction). ``bounds=sphere`` is the reference's bounding sphere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from img2mesh.data.cameras import camera_rays
from img2mesh.data.views import Views


@dataclass
class RayBank:
    """All training pixels of all views, flat in (view, row, column) order. M = n_views * H * W."""

    origins: torch.Tensor  # [M, 3]
    dirs: torch.Tensor  # [M, 3] unit
    rgb: torch.Tensor  # [M, 3] target colour on the white background
    alpha: torch.Tensor  # [M] target mask
    near: torch.Tensor  # [M] where sampling starts (0 where the ray misses the bounds)
    far: torch.Tensor  # [M]
    weight: torch.Tensor  # [M] loss weight: the ray's view's confidence
    n_views: int
    height: int
    width: int

    @property
    def hit(self) -> torch.Tensor:  # [M] bool: the ray passes through the bounds
        return self.far > self.near

    def to(self, device) -> "RayBank":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return RayBank(**moved)


@dataclass
class RayBatch:
    """Rays to render in one step; the first ``n_patches * patch_size^2`` are patches, row-major each."""

    origins: torch.Tensor  # [n, 3]
    dirs: torch.Tensor  # [n, 3]
    rgb: torch.Tensor  # [n, 3]
    alpha: torch.Tensor  # [n]
    near: torch.Tensor  # [n]
    far: torch.Tensor  # [n]
    weight: torch.Tensor  # [n]
    n_patches: int = 0
    patch_size: int = 0
    view: torch.Tensor | None = None  # [n] long: the view each ray comes from (None: no view, e.g. a render)

    def __len__(self) -> int:
        return self.origins.shape[0]


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, aabb_min: torch.Tensor, aabb_max: torch.Tensor):
    """Slab test. origins, dirs: [n, 3] -> t_near, t_far [n] (t_far <= t_near where the ray misses)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (aabb_min - origins) / safe, (aabb_max - origins) / safe
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


def ray_sphere(origins: torch.Tensor, dirs: torch.Tensor, center: torch.Tensor, radius: float):
    """Unit dirs [n, 3] against a sphere -> t_near, t_far [n] (equal where the ray misses)."""
    oc = origins - center
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius**2)
    root = disc.clamp_min(0.0).sqrt()
    hit = disc > 0
    t_near = torch.where(hit, (-b - root).clamp_min(0.0), torch.zeros_like(b))
    t_far = torch.where(hit, -b + root, torch.zeros_like(b))
    return t_near, t_far


@torch.no_grad()
def march_bounds(origins: torch.Tensor, dirs: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
                 sdf_fn: Callable[[torch.Tensor], torch.Tensor], margin: float, step: float,
                 chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Tighten [t_near, t_far] to where ``sdf_fn`` (e.g. the hull's signed distance) is below ``margin``.

    Marches each ray in ``step`` increments; returns the first and last inside sample, padded by a step,
    and near = far = 0 for rays that never come within ``margin``.
    """
    n = origins.shape[0]
    near_out, far_out = torch.zeros(n, device=origins.device), torch.zeros(n, device=origins.device)
    n_steps = int(np.ceil(float((t_far - t_near).clamp_min(0).max()) / step)) + 1 if n else 0
    ks = torch.arange(n_steps, device=origins.device, dtype=origins.dtype)
    for s in range(0, n, chunk):
        o, d, tn, tf = origins[s:s + chunk], dirs[s:s + chunk], t_near[s:s + chunk], t_far[s:s + chunk]
        t = tn[:, None] + ks[None, :] * step  # [c, n_steps]
        valid = t <= tf[:, None]
        pts = o[:, None, :] + t[..., None] * d[:, None, :]  # [c, n_steps, 3]
        inside = (sdf_fn(pts.reshape(-1, 3)).reshape(t.shape) < margin) & valid
        any_in = inside.any(dim=1)
        first = torch.where(inside, t, torch.full_like(t, float("inf"))).amin(dim=1)
        last = torch.where(inside, t, torch.full_like(t, -float("inf"))).amax(dim=1)
        near_out[s:s + chunk] = torch.where(any_in, (first - step).clamp_min(0.0), torch.zeros_like(first))
        far_out[s:s + chunk] = torch.where(any_in, last + step, torch.zeros_like(last))
    return near_out, far_out


def build_ray_bank(views: Views, bounds_fn: Callable[[torch.Tensor, torch.Tensor], tuple], view_weights,
                   background: float = 1.0, device="cpu", dilate_px: int = -1) -> RayBank:
    """Rays and targets of every pixel; ``bounds_fn(origins, dirs) -> (near, far)`` bounds the sampling;
    ``view_weights`` [V]: each view's loss weight.

    ``dilate_px`` >= 0: only pixels within that distance of a view's mask are bounded (rays further out
    cannot meet a hull carved by that mask); the others get near = far = 0 without marching.
    """
    h, w = views[0].camera.height, views[0].camera.width
    origins, dirs, rgb, alpha, weight, candidate = [], [], [], [], [], []
    for view, view_weight in zip(views, view_weights):
        o, d = camera_rays(view.camera, device=device)
        a = torch.from_numpy(np.ascontiguousarray(view.rgba[..., 3])).reshape(-1).to(device)
        c = torch.from_numpy(np.ascontiguousarray(view.rgba[..., :3])).reshape(-1, 3).to(device)
        origins.append(o)
        dirs.append(d)
        rgb.append(c * a[:, None] + background * (1.0 - a[:, None]))
        alpha.append(a)
        weight.append(torch.full((h * w,), float(view_weight), device=device))
        if dilate_px >= 0:
            k = 2 * dilate_px + 1
            grown = torch.nn.functional.max_pool2d(a.reshape(1, 1, h, w), k, stride=1, padding=dilate_px)
            candidate.append(grown.reshape(-1) > 0)
    origins, dirs = torch.cat(origins), torch.cat(dirs)
    near, far = torch.zeros(len(origins), device=device), torch.zeros(len(origins), device=device)
    sel = torch.cat(candidate) if candidate else torch.ones(len(origins), dtype=torch.bool, device=device)
    near[sel], far[sel] = bounds_fn(origins[sel], dirs[sel])
    return RayBank(origins, dirs, torch.cat(rgb), torch.cat(alpha), near, far, torch.cat(weight),
                   len(views), h, w)


def take_rays(bank: RayBank, idx: torch.Tensor) -> dict:
    """RayBatch fields of the bank's rays ``idx``."""
    return dict(origins=bank.origins[idx], dirs=bank.dirs[idx], rgb=bank.rgb[idx], alpha=bank.alpha[idx],
                near=bank.near[idx], far=bank.far[idx], weight=bank.weight[idx],
                view=idx // (bank.height * bank.width))


def patch_indices(bank: RayBank, centers: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Flat ray indices [n_patches * p * p] of p x p patches around flat pixel indices ``centers``."""
    hw, p = bank.height * bank.width, patch_size
    view, pix = centers // hw, centers % hw
    y0 = (pix // bank.width - p // 2).clamp(0, bank.height - p)
    x0 = (pix % bank.width - p // 2).clamp(0, bank.width - p)
    dy, dx = torch.meshgrid(torch.arange(p, device=centers.device), torch.arange(p, device=centers.device),
                            indexing="ij")
    idx = view[:, None, None] * hw + (y0[:, None, None] + dy) * bank.width + (x0[:, None, None] + dx)
    return idx.reshape(-1)


class RaySampler:
    """Draws batches: uniform rays among those that hit the bounds, a share of foreground rays, and patches
    centred on foreground pixels. Every draw goes through the given ``torch.Generator``."""

    def __init__(self, bank: RayBank, n_rays: int, foreground_fraction: float, patch_size: int, n_patches: int):
        self.bank, self.n_rays = bank, n_rays
        self.hit_idx = torch.nonzero(bank.hit).squeeze(1)
        self.fg_idx = torch.nonzero(bank.hit & (bank.alpha > 0.5)).squeeze(1)
        if len(self.fg_idx) == 0:
            from img2mesh.data.errors import InputError

            raise InputError("no view has foreground pixels inside the object's bounds: check the views' masks "
                             "(alpha) and cameras")
        self.patch_size = patch_size if n_patches > 0 else 0
        self.n_patches = n_patches if self.patch_size > 0 else 0
        n_patch_rays = self.n_patches * self.patch_size**2
        assert n_patch_rays < n_rays, f"patches ({n_patch_rays} rays) must leave room in a {n_rays}-ray batch"
        self.n_fg = int(round((n_rays - n_patch_rays) * foreground_fraction))
        self.n_uniform = n_rays - n_patch_rays - self.n_fg

    def sample(self, generator: torch.Generator) -> RayBatch:
        dev = self.bank.origins.device
        parts = []
        if self.n_patches:
            pick = torch.randint(len(self.fg_idx), (self.n_patches,), generator=generator, device="cpu").to(dev)
            parts.append(patch_indices(self.bank, self.fg_idx[pick], self.patch_size))
        pick = torch.randint(len(self.fg_idx), (self.n_fg,), generator=generator, device="cpu").to(dev)
        parts.append(self.fg_idx[pick])
        pick = torch.randint(len(self.hit_idx), (self.n_uniform,), generator=generator, device="cpu").to(dev)
        parts.append(self.hit_idx[pick])
        return RayBatch(**take_rays(self.bank, torch.cat(parts)), n_patches=self.n_patches, patch_size=self.patch_size)


def jittered_patch_rays(batch: RayBatch, jitter: float, generator: torch.Generator) -> RayBatch:
    """The batch's patches seen from cameras moved by a random offset of norm ``jitter`` (one per patch).

    Same pixel directions, shifted origins; the bounds widen by ``jitter`` so the shifted rays stay covered.
    """
    p2 = batch.patch_size**2
    n = batch.n_patches * p2
    offset = torch.randn(batch.n_patches, 3, generator=generator).to(batch.origins.device)
    offset = jitter * offset / offset.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    offset = offset.repeat_interleave(p2, dim=0)  # [n, 3]
    hit = batch.far[:n] > batch.near[:n]
    near = torch.where(hit, (batch.near[:n] - jitter).clamp_min(0.0), batch.near[:n])
    far = torch.where(hit, batch.far[:n] + jitter, batch.far[:n])
    return RayBatch(batch.origins[:n] + offset, batch.dirs[:n], batch.rgb[:n], batch.alpha[:n], near, far,
                    batch.weight[:n], batch.n_patches, batch.patch_size,
                    None if batch.view is None else batch.view[:n])
