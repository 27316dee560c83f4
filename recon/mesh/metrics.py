"""Mesh-vs-ground-truth metrics: Chamfer distance, F-score and volume IoU (SyncDreamer's protocol).

Both meshes are first mapped by the *ground truth's* normalisation: its bounding box centred at the origin
and its longest side scaled to 1, so numbers compare across objects and with SyncDreamer's tables.
- Chamfer: ``n_points`` points sampled uniformly (by area, seeded) on each surface; nearest-neighbour
  distances (scipy cKDTree) both ways; ``(mean d(pred -> gt) + mean d(gt -> pred)) / 2``.
- F-score at ``fscore_threshold`` (0.01 of the GT's size): precision = share of pred points within the
  threshold of GT points, recall = the converse, F = 2PR / (P + R).
- Volume IoU: occupancy of the two meshes at the cell centres of an ``iou_resolution``^3 grid over
  [-iou_bounds, iou_bounds]^3. The default (64 cells over [-1, 1]^3, the GT filling the central [-0.5, 0.5])
  is SyncDreamer's grid (mesh2sdf at size 64 in the [-1, 1] cube). Inside tests are majority votes of
  ray-crossing parity over ``occupancy_rays`` directions (open3d), which tolerates the holes and seams of
  scanned or UV-split ground-truth meshes far better than open3d's single-direction ``compute_occupancy``
  (far fewer GT cells fall outside the views' hull, which a correct test never puts there).
"""
from __future__ import annotations

import logging

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from img2mesh.data.errors import InputError

from .io import raycasting_scene

log = logging.getLogger(__name__)
SIZE_RATIO_LIMIT = 10.0  # meshes this many times apart in size are in different units, not a bad reconstruction


def gt_normalization(gt: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    """(centre [3], scale): ``(x - centre) * scale`` puts ``gt``'s bounding box at the origin, longest side 1."""
    lo, hi = gt.bounds
    extent = float(np.max(hi - lo))
    if not extent > 0:
        raise InputError("the ground-truth mesh has an empty bounding box")
    return (lo + hi) / 2.0, 1.0 / extent


def frame_mismatch(pred: trimesh.Trimesh, gt: trimesh.Trimesh, normalize_pred: bool = False) -> tuple[str | None, str | None]:
    """(error, warning) when the two meshes are plainly not in one frame: an error when their sizes differ
    ``SIZE_RATIO_LIMIT`` times or more (unless ``normalize_pred``: then sizes do not matter), a warning when
    their proportions match only with y and z swapped (a y-up file read as z-up)."""
    ext_p, ext_g = np.ptp(pred.vertices, axis=0), np.ptp(gt.vertices, axis=0)
    ratio = float(ext_p.max() / max(ext_g.max(), 1e-12))
    if not normalize_pred and not 1 / SIZE_RATIO_LIMIT < ratio < SIZE_RATIO_LIMIT:
        return (f"the predicted mesh is {ratio:.3g} times the size of the ground truth (longest sides "
                f"{ext_p.max():.3g} and {ext_g.max():.3g}): they are not in the same units; pass --normalize-pred "
                "(normalize_pred=True) to scale it to the ground truth's box"), None
    shape_p, shape_g = ext_p / max(ext_p.max(), 1e-12), ext_g / max(ext_g.max(), 1e-12)
    as_is, swapped = np.abs(shape_p - shape_g).max(), np.abs(shape_p[[0, 2, 1]] - shape_g).max()
    if swapped < 0.05 and as_is > 0.2:
        return None, ("the meshes' proportions match only with y and z swapped: one of them is probably read with "
                      "the wrong up axis (--pred-up / --gt-up)")
    return None, None


def quick_chamfer(pred: trimesh.Trimesh, gt: trimesh.Trimesh, normalize_pred: bool = False,
                  n_points: int = 20_000) -> float:
    """Chamfer as :func:`mesh_metrics` measures it, on fewer points and without the rest: cheap enough to score
    several readings of the same files (inf where :func:`frame_mismatch` refuses the pair)."""
    if len(pred.faces) == 0 or len(gt.faces) == 0 or frame_mismatch(pred, gt, normalize_pred)[0]:
        return float("inf")
    centre, scale = gt_normalization(gt)
    p_centre, p_scale = gt_normalization(pred) if normalize_pred else (centre, scale)
    pred_pts = (sample_surface(pred, n_points) - p_centre) * p_scale
    gt_pts = (sample_surface(gt, n_points) - centre) * scale
    return float((cKDTree(gt_pts).query(pred_pts)[0].mean() + cKDTree(pred_pts).query(gt_pts)[0].mean()) / 2.0)


def sample_surface(mesh: trimesh.Trimesh, n_points: int, seed: int = 0) -> np.ndarray:
    """``n_points`` points [n, 3] uniformly on the surface (area-weighted), reproducible with ``seed``."""
    points, _ = trimesh.sample.sample_surface(mesh, int(n_points), seed=seed)
    return np.asarray(points, dtype=np.float64)


def ray_directions(n: int) -> np.ndarray:
    """``n`` fixed unit directions [n, 3] spread over the sphere (Fibonacci lattice, tilted off the axes)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i + 0.1
    d = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], axis=1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def occupancy(mesh: trimesh.Trimesh, points: np.ndarray, rays: int = 7) -> np.ndarray:
    """Inside test [N] bool: the majority over ``rays`` (odd) directions of ray-crossing parity (open3d).

    One direction is exact for closed meshes; spreading the votes over the sphere makes holes (a scan's
    open bottom, Suzanne's eye sockets) wrong for only the few directions that escape through them."""
    import open3d as o3d

    assert rays % 2 == 1, f"rays must be odd (a majority vote), got {rays}"
    scene = raycasting_scene(mesh.vertices, mesh.faces)
    points = np.asarray(points, dtype=np.float32)
    votes = np.zeros(len(points), dtype=np.int32)
    for d in ray_directions(rays).astype(np.float32):
        cast = np.concatenate([points, np.broadcast_to(d, points.shape)], axis=1)
        votes += scene.count_intersections(o3d.core.Tensor(np.ascontiguousarray(cast))).numpy() % 2
    return votes > rays // 2


def cell_centres(resolution: int, bounds: float) -> np.ndarray:
    """Centres [R^3, 3] of an R^3 grid of cells over [-bounds, bounds]^3."""
    c = (np.arange(resolution) + 0.5) / resolution * 2.0 * bounds - bounds
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)


def mesh_metrics(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    n_points: int = 100_000,
    seed: int = 0,
    fscore_threshold: float = 0.01,
    iou_resolution: int = 64,
    iou_bounds: float = 1.0,
    occupancy_rays: int = 7,
    normalize_pred: bool = False,
) -> dict[str, float]:
    """Chamfer, F-score and volume IoU of ``pred`` against ``gt`` (see the module docstring).

    ``normalize_pred``: map ``pred`` by its *own* box normalisation (single-image reconstructions, whose
    scale and centre follow the input's cropping, as SyncDreamer normalises both meshes); else by the GT's.

    Meshes whose sizes differ ten times or more are refused (:func:`frame_mismatch`): the numbers would only
    say that. Returns ``{"chamfer", "fscore", "iou", "precision", "recall"}`` as floats."""
    for name, mesh in (("predicted", pred), ("ground-truth", gt)):
        if len(mesh.faces) == 0:
            raise InputError(f"the {name} mesh has no faces")
    error, warning = frame_mismatch(pred, gt, normalize_pred)
    if error:
        raise InputError(error)
    if warning:
        log.warning(warning)
    centre, scale = gt_normalization(gt)
    # Geometry only (visuals are irrelevant here), mapped by the GT's normalisation.
    p_centre, p_scale = gt_normalization(pred) if normalize_pred else (centre, scale)
    pred_n = trimesh.Trimesh((np.asarray(pred.vertices) - p_centre) * p_scale, pred.faces, process=False)
    gt_n = trimesh.Trimesh((np.asarray(gt.vertices) - centre) * scale, gt.faces, process=False)

    # One seed for both: identical meshes give identical samples, hence exactly 0 / 1 / 1.
    pred_pts = sample_surface(pred_n, n_points, seed)
    gt_pts = sample_surface(gt_n, n_points, seed)
    d_pred_gt, _ = cKDTree(gt_pts).query(pred_pts, workers=-1)
    d_gt_pred, _ = cKDTree(pred_pts).query(gt_pts, workers=-1)
    chamfer = (d_pred_gt.mean() + d_gt_pred.mean()) / 2.0
    precision = float(np.mean(d_pred_gt < fscore_threshold))
    recall = float(np.mean(d_gt_pred < fscore_threshold))
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    centres = cell_centres(iou_resolution, iou_bounds)
    occ_pred = occupancy(pred_n, centres, occupancy_rays)
    occ_gt = occupancy(gt_n, centres, occupancy_rays)
    union = np.sum(occ_pred | occ_gt)
    iou = float(np.sum(occ_pred & occ_gt) / union) if union else 0.0
    return {"chamfer": float(chamfer), "fscore": float(fscore), "iou": iou, "precision": precision, "recall": recall}
