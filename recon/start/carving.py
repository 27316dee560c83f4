"""Robust carving: how tolerant the hull must be, measured from how much the views' masks disagree.

A strict hull (every view carves) is right for exact renders and wrong for generated views, where one view's
mask missing a few pixels of an ear cuts the ear off for every method that starts from the hull. The views
tell which case holds: carve strictly, look at the hull from each view, and measure how far each mask
reaches beyond the hull's silhouette. Exact views reach at most a pixel or so (the carving grid's own error);
disagreeing views reach further, by about how much the views that did the carving were off. Then:

- each generated view's mask is grown by ``GROW_PER_PX`` times that distance, scaled by how little the view
  is trusted (the views far from the input drift most), so a few pixels of disagreement no longer carve;
- the carving vote is weighted by each view's confidence; ``recon.init.hull_tolerance`` (a share of the
  total confidence that may see background without carving) makes one view unable to carve alone.
  ``auto`` leaves that share at 0: on generated-like views a small share also kept concavities that only a
  few views see, and the hulls came out worse than with growth alone (experiments/README.md, "Robust
  carving"). Where the silhouettes share no point at all, the error names the least share that keeps one.

Both are 0 when the masks agree: the hull of exact views stays the strict hull.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from img2mesh.data.views import Views

from .hull import HullResult, carve_hull

log = logging.getLogger(__name__)

# Rim of exact masks beyond a strict hull (the carving grid's own error), subtracted before a disagreement
# counts; a little above what exact renders show (experiments/README.md, "Robust carving").
GRID_ERROR_PX = 0.75
GROW_PER_PX = 1.5  # mask growth per pixel of measured disagreement, for the least trusted view
MAX_GROW = 0.05  # growth is capped at this share of the image size (masks that far apart are not one object)


def mask_overreach(hull: HullResult, views: Views) -> np.ndarray:
    """[V] how far (px) each view's mask reaches beyond the hull's silhouette in that view, as a rim width: the
    mask's area outside the silhouette over the mask's outline length. A thin part the carving grid missed
    adds little area; a mask shifted or grown all round by k pixels gives about k."""
    from ..mesh.raycast import render_mesh

    renders = render_mesh(hull.mesh, views.cameras, supersample=1) if len(hull.mesh.faces) else None
    reach = []
    for i, view in enumerate(views):
        mask = view.mask >= 0.5
        silhouette = renders[i].rgba[..., 3] >= 0.5 if renders is not None else np.zeros_like(mask)
        outline = mask & ~ndimage.binary_erosion(mask)
        reach.append(float((mask & ~silhouette).sum() / max(1, outline.sum())))
    return np.asarray(reach)


def carving_cube(views: Views) -> tuple[np.ndarray, float]:
    """(centre [3], half side) of the cube the hull is carved in, from the cameras alone, so any world frame
    works: centred where the cameras' optical axes pass closest (least squares), and reaching at least half the
    cameras' median distance from there to each side (the [-1, 1] cube for cameras 2 units from the origin),
    more for views wider than that: whatever a camera sees around the centre, in frame, lies inside. Rounded to
    1e-6, so float noise in the poses does not move the grid."""
    c2w = np.stack([v.camera.c2w for v in views])  # [V, 4, 4]
    origins, forward = c2w[:, :3, 3], -c2w[:, :3, 2]  # OpenGL cameras look along -z
    across = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]  # [V, 3, 3]: projects out each axis
    center = np.linalg.lstsq(across.sum(axis=0), np.einsum("vij,vj->i", across, origins), rcond=None)[0]
    distance = float(np.median(np.linalg.norm(origins - center, axis=1)))
    widest = max(np.tan(v.camera.fov_x / 2.0) for v in views)
    return np.round(center, 6) + 0.0, round(distance * max(0.5, widest), 6)  # + 0.0: no negative zeros


def robust_carving(cfg, views: Views, confidence: np.ndarray) -> tuple[HullResult, dict]:
    """The hull carved as ``cfg`` (recon.init) says, an ``auto`` growth set from the masks' disagreement with
    a hull carved without it; returns (hull, what was chosen: share, grown pixels, measured disagreement)."""
    weights = np.asarray(confidence, dtype=np.float64)
    center, half = carving_cube(views)
    share = 0.0 if cfg.hull_tolerance == "auto" else float(cfg.hull_tolerance)  # auto: no share (module doc)
    info = {"hull_tolerance": share}
    if cfg.hull_tolerance_px != "auto":
        grow = float(cfg.hull_tolerance_px)
        hull = carve_hull(views, cfg.hull_resolution, half, center=center, tolerance=share, weights=weights,
                          grow_px=trust_scaled(grow, weights))
        return hull, {**info, "hull_grow_px": grow}
    first = carve_hull(views, cfg.hull_resolution, half, center=center, tolerance=share, weights=weights)
    disagreement = float(np.median(mask_overreach(first, views))) - GRID_ERROR_PX
    size = min(v.camera.width for v in views)
    grow = max(0.0, min(GROW_PER_PX * disagreement, MAX_GROW * size))
    info.update(hull_grow_px=round(grow, 2), mask_disagreement_px=round(max(0.0, disagreement), 2))
    if grow == 0.0:
        return first, info
    log.info("the views' masks disagree by about %.1f px: growing the doubted views' masks by up to %.1f px",
             disagreement, grow)
    return carve_hull(views, cfg.hull_resolution, half, center=center, tolerance=share, weights=weights,
                      grow_px=trust_scaled(grow, weights)), info


def trust_scaled(pixels: float, confidence: np.ndarray) -> np.ndarray:
    """[V] ``pixels`` for the least trusted view, less for more trusted ones, 0 for the most trusted (the input)."""
    doubt = confidence.max() - confidence
    if doubt.max() <= 0:
        return np.full(len(confidence), float(pixels))
    return pixels * doubt / doubt.max()
