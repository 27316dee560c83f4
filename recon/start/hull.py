"""Silhouette carving (visual hull): the `hull` baseline, and bounds / initial shape for the optimisers.

Every grid node of a cube (``center`` +- ``bounds``: where the cameras look, recon/start/carving.py; the
meshing.py grid convention) is projected into every view and the view's alpha is sampled there (bilinear). The *soft hull* field is the minimum of those samples over
the views; the hull is where it is >= ``threshold`` (0.5), and its mesh is that level set (sub-voxel
silhouettes, not voxel stair-steps).

Nodes a view does not see (projecting outside its image or behind it): if the view's mask stays clear of
the image border, the whole object is in frame, so such a node is empty for that view (sample 0); if the
mask touches the border, the object may continue outside the image, so that view says nothing about the
node (sample 1: not carved). A node no view sees inside its image is carved (an object seen by nobody is
not evidence).

Views that disagree (generated views: a few degrees of pose, a few pixels of shape) must not carve a true
part away, so carving can be robust: each view's mask may be grown by a tolerance in pixels before it is
sampled, and a point is empty only when views holding more than a ``tolerance`` share of the total
confidence (``weights``) see it as background. ``robust_carving`` (recon/start/carving.py) sets both from how much
the masks actually disagree.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from img2mesh.data.errors import InputError
from img2mesh.data.views import Views

from ..fields.box import FieldBox
from ..mesh.meshing import grid_points, mesh_from_grid


@dataclass
class HullResult:
    occupancy: np.ndarray  # [R, R, R] bool: the carved cube's grid nodes inside every silhouette
    bounds: float  # half-size of the carved cube
    mesh: trimesh.Trimesh  # level set of the soft hull at the carving threshold
    soft: np.ndarray  # [R, R, R] float32: min over views of the sampled alpha
    # [R, R, R] float32: signed distance between the carving grid's nodes (the occupancy's distance transform),
    # world units, positive outside: accurate to about a voxel
    node_sdf: np.ndarray
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [3] the carved cube's centre, world units
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def resolution(self) -> int:
        return self.occupancy.shape[0]

    @property
    def voxel_size(self) -> float:
        return 2.0 * self.bounds / (self.resolution - 1)

    def coarse_sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance [N] (positive outside, world units) at ``points`` [N, 3], trilinear in the grid;
        beyond the carved cube the distance to the cube is added. Accurate to about one voxel (it is
        the distance transform of the node occupancy), enough to initialise an SDF and bound samples."""
        inside = self._sample("node_sdf", points, padding="border")
        beyond = ((points - self._center(points)).abs() - self.bounds).clamp(min=0).norm(dim=-1)
        return inside + beyond

    def soft_at(self, points: torch.Tensor) -> torch.Tensor:
        """The soft hull [N] at ``points`` [N, 3], trilinear: its 0.5 level is the hull mesh (0 beyond the cube)."""
        return self._sample("soft", points, padding="zeros")

    def _center(self, points: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.center, dtype=points.dtype, device=points.device)

    def _sample(self, name: str, points: torch.Tensor, padding: str) -> torch.Tensor:
        """Trilinear sample of the node grid ``name`` (an [R, R, R] attribute) at ``points`` [N, 3]."""
        assert points.ndim == 2 and points.shape[1] == 3, f"points must be [N, 3], got {tuple(points.shape)}"
        key = (name, points.device, points.dtype)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(getattr(self, name), device=points.device, dtype=points.dtype)[None, None]
        grid = self._cache[key]  # [1, 1, X, Y, Z]
        # grid_sample's (x, y, z) index (W, H, D) = our (iz, iy, ix).
        coords = ((points - self._center(points)) / self.bounds).flip(-1).reshape(1, -1, 1, 1, 3)
        return F.grid_sample(grid, coords, mode="bilinear", padding_mode=padding, align_corners=True).reshape(-1)


def grown_mask(alpha: np.ndarray, pixels: float) -> np.ndarray:
    """``alpha`` [H, W] with the background within ``pixels`` of the mask (alpha >= 0.5) raised to 1, ramping
    back to the given alpha over one more pixel."""
    if pixels <= 0:
        return alpha
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(alpha < 0.5)
    return np.maximum(alpha, np.clip(1.0 + pixels - distance, 0.0, 1.0)).astype(np.float32)


def _view_tensors(views: Views, device, grow_px=None) -> list[tuple[torch.Tensor, torch.Tensor, float, int, int, bool]]:
    out = []
    for i, view in enumerate(views):
        cam = view.camera
        mask = view.mask if grow_px is None else grown_mask(view.mask, float(grow_px[i]))
        alpha = torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32, device=device)  # [H, W]
        border = torch.cat([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        w2c = torch.as_tensor(np.linalg.inv(cam.c2w), dtype=torch.float32, device=device)
        out.append((alpha[None, None], w2c, cam.focal, cam.width, cam.height, bool(border.max() < 0.5)))
    return out


def soft_hull(views: Views, points: torch.Tensor, threshold: float = 0.5, chunk: int = 1 << 21,
              tolerance: float = 0.0, weights=None, grow_px=None) -> torch.Tensor:
    """Min over views of the alpha sampled at ``points`` [N, 3] -> [N] (see the module docstring for unseen
    points); a point is inside the hull where this is >= ``threshold``.

    ``tolerance`` > 0: a weighted quantile instead of the min, so views holding up to that share of the
    ``weights`` [V] (default: all 1) may call a point background without carving it. ``grow_px`` [V]: each
    view's mask grown by that many pixels first.
    """
    if len(views) == 0:
        raise InputError("cannot carve a hull from zero views")
    if not 0.0 <= tolerance < 1.0:
        raise InputError(f"recon.init.hull_tolerance={tolerance} must be in [0, 1)")
    per_view = _view_tensors(views, points.device, grow_px)
    w = torch.ones(len(per_view)) if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if tolerance > 0 and float(tolerance * w.sum()) >= float(w.min()):
        return _weighted_quantile_alpha(per_view, points, tolerance, w.to(points.device), max(1, chunk // len(per_view)))
    out = []
    for start in range(0, points.shape[0], chunk):
        p_all = points[start : start + chunk]  # [n, 3]
        soft = torch.ones(p_all.shape[0], device=p_all.device)
        seen = torch.zeros(p_all.shape[0], dtype=torch.bool, device=p_all.device)
        alive = torch.arange(p_all.shape[0], device=p_all.device)  # nodes whose min is still above 0
        for view in per_view:
            sample, visible = _sample_view(view, p_all[alive])
            soft[alive] = torch.minimum(soft[alive], sample)
            seen[alive] |= visible
            alive = alive[soft[alive] > 0]  # a min at 0 stays 0: later views need not look at these nodes
        out.append(torch.where(seen, soft, torch.zeros_like(soft)))
    return torch.cat(out)


def _sample_view(view, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One view's alpha at points ``p`` [m, 3] (unseen points: 0 if the mask is in frame, else 1) and
    whether the view sees them [m]."""
    alpha, w2c, focal, width, height, in_frame = view
    pc = p @ w2c[:3, :3].T + w2c[:3, 3]  # [m, 3] camera frame, looking along -z
    depth = -pc[:, 2]
    safe = depth.clamp(min=1e-6)
    u = focal * pc[:, 0] / safe + 0.5 * width
    v = -focal * pc[:, 1] / safe + 0.5 * height
    visible = (depth > 1e-6) & (u >= 0) & (u <= width) & (v >= 0) & (v <= height)
    grid = torch.stack([u / width * 2 - 1, v / height * 2 - 1], dim=-1).reshape(1, -1, 1, 2)
    sample = F.grid_sample(alpha, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(-1)
    return torch.where(visible, sample, torch.full_like(sample, 0.0 if in_frame else 1.0)), visible


def _weighted_quantile_alpha(per_view, points: torch.Tensor, share: float, weights: torch.Tensor,
                             chunk: int) -> torch.Tensor:
    """At each point, the smallest sample s such that the views sampling below s hold at most ``share`` of
    the weight: views with that much confidence may see background there without carving it (0 where no
    view sees the point)."""
    out = []
    budget = share * weights.sum()
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk]
        samples, seen = zip(*(_sample_view(view, p) for view in per_view))
        values, order = torch.stack(samples).sort(dim=0)  # [V, n] ascending
        below = torch.cumsum(weights[order], dim=0) - weights[order]  # weight of the views sorted before each
        pick = (below <= budget).sum(dim=0, keepdim=True) - 1  # the last sample still within the budget
        quantile = values.gather(0, pick.clamp_min(0))[0]
        out.append(torch.where(torch.stack(seen).any(dim=0), quantile, torch.zeros_like(quantile)))
    return torch.cat(out)


def tolerance_to_keep(views: Views, points: torch.Tensor, threshold: float = 0.5, weights=None, grow_px=None,
                      keep: int = 1, chunk: int = 1 << 18) -> float:
    """The smallest ``hull_tolerance`` (in steps of 0.05) whose hull keeps at least ``keep`` of ``points``; 1.0
    when none below 1 does. A point survives a share s when the views that see background there hold at most
    s of the weight and some view sees it inside its mask (see :func:`_weighted_quantile_alpha`)."""
    per_view = _view_tensors(views, points.device, grow_px)
    w = torch.ones(len(per_view)) if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    w = w.to(points.device)
    needed = []
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk]
        samples, seen = zip(*(_sample_view(view, p) for view in per_view))
        samples, seen = torch.stack(samples), torch.stack(seen)  # [V, n]
        background = (w[:, None] * (samples < threshold)).sum(dim=0) / w.sum()
        inside_some = ((samples >= threshold) & seen).any(dim=0)
        needed.append(torch.where(inside_some, background, torch.full_like(background, math.inf)))
    share = float(torch.cat(needed).kthvalue(min(keep, points.shape[0])).values)
    # the quantile carving applies only from one view's weight up (below it, every view carves)
    share = max(share, float(w.min() / w.sum()))
    if not share < 1.0:
        return 1.0
    steps = math.ceil(share * 20.0 + 1e-4) / 20.0  # strictly above: a node at exactly the share is kept
    return steps if steps < 1.0 else 1.0


def carve_hull(
    views: Views,
    resolution: int = 128,
    bounds: float = 1.0,
    *,
    center=(0.0, 0.0, 0.0),
    threshold: float = 0.5,
    keep_components: int = 1,
    device="cpu",
    tolerance: float = 0.0,
    weights=None,
    grow_px=None,
) -> HullResult:
    """Carve a ``resolution``^3 grid over the cube ``center`` +- ``bounds`` with every view's mask (alpha >= ``threshold``);
    ``tolerance``, ``weights``, ``grow_px``: how far views may disagree about a node before it is carved
    (see soft_hull)."""
    from scipy import ndimage

    center = np.asarray(center, dtype=np.float64)
    points = grid_points(center - bounds, center + bounds, resolution, device=device)  # [R^3, 3]
    soft = soft_hull(views, points, threshold, tolerance=tolerance, weights=weights, grow_px=grow_px)
    soft = soft.reshape(resolution, resolution, resolution).cpu().numpy()
    occupancy = soft >= threshold
    if not occupancy.any():
        share = tolerance_to_keep(views, points, threshold, weights, grow_px, keep=max(1, resolution**3 // 1000))
        raise InputError("the views' silhouettes do not overlap anywhere inside the bounds: check that the masks "
                         "are not empty and the camera poses are right (object at the origin)"
                         + (f"; to let the views disagree, recon.init.hull_tolerance={share:.2f} is the least that "
                            "keeps a hull of these views" if share < 1.0 else
                            "; no tolerance helps: no point is inside the masks of views holding any of the weight"))
    mesh = mesh_from_grid(soft, center - bounds, center + bounds, threshold, inside="above",
                          keep_components=keep_components)
    # Signed distance between node centres: half a voxel short of either side's nearest node.
    voxel = 2.0 * bounds / (resolution - 1)
    outside = ndimage.distance_transform_edt(~occupancy)
    inside = ndimage.distance_transform_edt(occupancy)
    sdf = np.where(occupancy, -(inside - 0.5), outside - 0.5) * voxel
    return HullResult(occupancy=occupancy, bounds=float(bounds), mesh=mesh, soft=soft.astype(np.float32),
                      node_sdf=sdf.astype(np.float32), center=center)


def hull_box(hull: HullResult, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(min [3], max [3]) float64: the box around the hull's nodes, grown by one voxel plus ``margin`` (world
    units) on every side."""
    idx = np.argwhere(hull.occupancy)
    lo = hull.center - hull.bounds + idx.min(axis=0) * hull.voxel_size - hull.voxel_size - margin
    hi = hull.center - hull.bounds + idx.max(axis=0) * hull.voxel_size + hull.voxel_size + margin
    return lo.astype(np.float64), hi.astype(np.float64)


def estimate_bounds(views: Views, resolution: int = 64, margin: float = 0.05, bounds: float = 1.0) -> FieldBox:
    """The box around the hull carved from ``views`` at ``resolution`` (:func:`hull_box`)."""
    return FieldBox(*hull_box(carve_hull(views, resolution, bounds), margin))
