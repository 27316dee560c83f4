"""The recon stage: posed views -> a saved field (NeuS SDF, voxel NeRF, or the carved hull) -> mesh.

    result = reconstruct(cfg.recon, views, out_dir, seed=0, device="cpu")
    mesh = field_to_mesh(load_field(result.field_path), cfg.export.mesh)

Every method carves the visual hull first (seconds): it is the ``hull`` method's result, the optimisers'
sampling bounds (rays are marched only where the hull is) and their initial shape.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes
from img2mesh.data.views import View, Views

from .config import ReconConfig, config_from_dict
from .mesh.config import MeshConfig
from .methods import METHODS
from .methods.base import Method
from .masks import soften_binary_masks
from .occupancy import OccupancyGrid, use_occupancy_grid
from .rays import RayBatch, RaySampler, build_ray_bank, march_bounds, ray_aabb, ray_sphere, take_rays
from .start import START_NAME, Start, load_start, prepare_start, save_start, start_key
from .trainer import CHECKPOINT_NAME, train
from .view_corrections import ViewCorrections, view_confidence

log = logging.getLogger(__name__)
FIELD_NAME = "field.pt"
CORRECTIONS_NAME = "view_corrections.json"  # each view's learned pose and colour correction
FIELD_FORMAT = "img2mesh-field/2"


@dataclass
class ReconResult:
    method: str
    field_path: Path
    steps: int
    seconds: float
    psnr: float  # training PSNR of the last batches (nan for the hull)
    stats: dict = field(default_factory=dict)


# -- inputs ---------------------------------------------------------------------------------------------------
def validate_views(views: Views) -> None:
    """Clear errors for views an optimiser cannot use (read_views has already checked the folder itself)."""
    if len(views) == 0:
        raise InputError("no views to reconstruct from: the views folder lists no frames")
    h, w = views[0].rgba.shape[:2]
    for v in views:
        if v.rgba.shape[:2] != (h, w):
            raise InputError(f"view {v.name or '?'} is {v.rgba.shape[1]}x{v.rgba.shape[0]} but the first is {w}x{h}: "
                             "all views must have the same size")
    for v in views:
        alpha = v.rgba[..., 3]
        if float(alpha.min()) > 0.5:
            raise InputError(f"view {v.name or '?'} has no mask (alpha is opaque everywhere): give RGBA views with "
                             "the background transparent (run background removal first)")
        if float(alpha.max()) < 0.5:
            raise InputError(f"view {v.name or '?'} has an empty mask (nothing opaque): the object must be visible "
                             "in every view")


def resize_views(views: Views, size: int) -> Views:
    """Views at ``size`` x ``size`` px (area filtering on premultiplied colour, so edges stay clean)."""
    if size <= 0 or all(v.rgba.shape[:2] == (size, size) for v in views):
        return views
    out = []
    for v in views:
        rgba = torch.from_numpy(np.ascontiguousarray(v.rgba)).permute(2, 0, 1)[None]  # [1, 4, H, W]
        premul = torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], dim=1)
        small = F.interpolate(premul, size=(size, size), mode="area" if size < v.rgba.shape[0] else "bilinear")
        a = small[:, 3:]
        rgb = torch.where(a > 1e-6, small[:, :3] / a.clamp_min(1e-6), torch.zeros_like(small[:, :3]))
        arr = torch.cat([rgb.clamp(0, 1), a], dim=1)[0].permute(1, 2, 0).numpy().astype(np.float32)
        out.append(View(arr, v.camera.resized(size, size), v.name, v.is_input))
    return Views(out)


# -- rays -----------------------------------------------------------------------------------------------------
def ray_bounds_fn(cfg: ReconConfig, start: Start):
    """(origins, dirs) -> (near, far): inside the dilated hull (``init.bounds=hull``) or the sphere."""
    lo, hi = (torch.from_numpy(b) for b in start.box)
    if cfg.init.bounds == "sphere":
        return lambda o, d: ray_sphere(o, d, torch.zeros(3, device=o.device), cfg.init.sphere_radius)
    hull = start.hull

    def bounds(o: torch.Tensor, d: torch.Tensor):
        t0, t1 = ray_aabb(o, d, lo.to(o.device), hi.to(o.device))
        return march_bounds(o, d, t0, t1, hull.hull_sdf, start.margin, 0.5 * hull.voxel_size)

    return bounds


def candidate_dilation(cfg: ReconConfig, start: Start, views: Views) -> int:
    """Pixels a ray may sit off the mask and still meet the dilated hull: the margin (+1 voxel) seen from
    the nearest camera distance to the hull's bounding sphere, rounded up, plus a pixel. -1 (all pixels)
    for sphere bounds."""
    if cfg.init.bounds != "hull":
        return -1
    from .hull import estimate_bounds

    reach = start.margin + start.hull.voxel_size
    b = estimate_bounds(None, hull=start.hull, margin=0.0)
    nearest = min(float(np.linalg.norm(v.camera.position - b.center)) for v in views) - b.radius
    focal = max(v.camera.focal for v in views)
    return int(np.ceil(reach * focal / max(nearest, 1e-3))) + 1


def foreground_sample(sampler: RaySampler, seed: int, n: int = 8192) -> RayBatch:
    """Up to ``n`` foreground rays, seeded (what a method's finish() measures the trained field on)."""
    pick = torch.randperm(len(sampler.fg_idx), generator=torch.Generator().manual_seed(seed))[:n]
    return RayBatch(**take_rays(sampler.bank, sampler.fg_idx[pick]))


def pixel_size(views: Views, start: Start) -> float:
    """World size of a pixel at the object: the mean camera distance to the box's centre over the focal length."""
    center = (start.box[0] + start.box[1]) / 2.0
    return float(np.mean([np.linalg.norm(v.camera.position - center) / v.camera.focal for v in views]))


# -- the stage ------------------------------------------------------------------------------------------------
def method_for(cfg: ReconConfig) -> Method:
    if cfg.method not in METHODS:
        raise InputError(f"unknown recon.method {cfg.method!r}: use one of {', '.join(METHODS)}")
    return METHODS[cfg.method]


def cached_start(cfg: ReconConfig, method: Method, views: Views, out_dir: Path, confidence) -> tuple[Start, bool]:
    """The start from ``out_dir/start.pt`` when it was computed from the same config, resolution, views and
    their ``confidence``; else computed and saved there. Returns (start, whether it was cached)."""
    resolution = method.start_resolution(cfg)
    path = out_dir / START_NAME
    start = load_start(path, start_key(cfg.init, views, resolution, confidence))
    if start is not None:
        return start, True
    start = prepare_start(cfg.init, views, resolution, confidence)
    save_start(path, start)
    return start, False


def reconstruct(cfg: ReconConfig, views: Views, out_dir, *, seed: int = 0, device="cpu", resume: bool = True,
                max_steps: int | None = None, start: Start | None = None) -> ReconResult:
    """Views -> ``out_dir/field.pt``. Resumes from ``out_dir/checkpoint.pt`` when ``resume``.

    ``start``: the start to train from (:func:`~img2mesh.recon.start.prepare_start` on the same views, resized
    to ``cfg.image_size``); by default the one cached in ``out_dir/start.pt``, computed when missing or stale.
    ``max_steps``: stop after that many steps (of ``cfg.steps``), keeping the checkpoint so a later call
    finishes the run; the field file then holds the partly trained field.
    """
    method = method_for(cfg)
    validate_views(views)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    views = resize_views(views, cfg.image_size)
    views, softened = soften_binary_masks(views, cfg.mask_edges)
    confidence = view_confidence(views, cfg.views.falloff, cfg.views.input_weight)
    cached = False
    if start is None:
        start, cached = cached_start(cfg, method, views, out_dir, confidence)
    stats = {"start": "cached" if cached else "computed", "start_seconds": round(start.seconds, 2), **start.carving,
             "up": [round(float(u), 4) for u in start.up], "softened_masks": softened}
    with torch.random.fork_rng(devices=[]):  # seeded, so runs repeat
        torch.manual_seed(seed)
        field_ = method.build(cfg, start, device)
    if not method.trains:
        path = save_field(out_dir / FIELD_NAME, cfg, field_, method.meta(field_))
        return ReconResult(cfg.method, path, 0, time.time() - t0, float("nan"), stats)

    bank = build_ray_bank(views, ray_bounds_fn(cfg, start), confidence, cfg.background, device,
                          dilate_px=candidate_dilation(cfg, start, views))
    stats["rays_in_bounds"] = int(bank.hit.sum())
    stats["setup_seconds"] = round(time.time() - t0, 2)
    sampler = RaySampler(bank, cfg.rays_per_batch, cfg.foreground_fraction, cfg.patch_size, cfg.patches_per_batch)
    meta = method.meta(field_)
    occupancy = None
    if use_occupancy_grid(cfg.occupancy, device):
        occupancy = OccupancyGrid(cfg.occupancy, start.box, device, seed)
        stats["occupancy_grid"] = "nerfacc-cuda" if occupancy.use_cuda else "torch"
    fixed = [v.is_input for v in views]
    fixed[0] = fixed[0] or not any(fixed)  # one view fixes the frame and the colours
    corrections = ViewCorrections(fixed, cfg.views.pose, cfg.views.appearance)
    reach = float(np.linalg.norm(np.maximum(np.abs(start.box[0]), np.abs(start.box[1]))))
    trained = train(cfg, method, field_, sampler, out_dir, seed=seed, resume=resume, meta=meta, stop_at=max_steps,
                    occupancy=occupancy, pixel_size=pixel_size(views, start), corrections=corrections, reach=reach)
    if occupancy is not None:
        stats["occupied_fraction"] = round(occupancy.occupied_fraction, 4)
    if cfg.views.pose or cfg.views.appearance:
        names = [v.name or f"view {i}" for i, v in enumerate(views)]
        atomic_write_bytes(out_dir / CORRECTIONS_NAME, json.dumps(corrections.per_view(names), indent=1).encode())
    stats.update(method.finish(cfg, field_, foreground_sample(sampler, seed)))
    path = save_field(out_dir / FIELD_NAME, cfg, field_, method.meta(field_))
    if trained.steps >= cfg.steps:
        (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # the field file supersedes it
    stats.update(losses=trained.losses, resumed_from=trained.resumed_from, train_seconds=round(trained.seconds, 2),
                 **trained.live)
    return ReconResult(cfg.method, path, trained.steps, time.time() - t0, trained.psnr, stats)


# -- field files ----------------------------------------------------------------------------------------------
def save_field(path: Path, cfg: ReconConfig, field_, meta: dict) -> Path:
    """The field as its method rebuilds it: the recon config (the constructor's settings), the method's meta
    (box, grid resolutions) and the state dict."""
    buf = io.BytesIO()
    torch.save({"format": FIELD_FORMAT, "method": cfg.method, "config": dataclasses.asdict(cfg), "meta": meta,
                "state": {k: v.detach().cpu() for k, v in field_.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_field(path, device="cpu"):
    """Rebuild a saved field from ``field.pt``; its method is ``field.method``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"field file {path} does not exist: run the recon stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        name, meta, cfg = blob["method"], blob["meta"], blob["config"]
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path} is not an img2mesh field file ({type(e).__name__}: {e}); re-run recon") from None
    if blob.get("format") != FIELD_FORMAT:
        raise InputError(f"{path} was written by an older img2mesh ({blob.get('format')}): delete it and give the "
                         f"command that made its run again with --resume {path.parent.parent} instead of --out: the "
                         "missing field is trained again")
    if name not in METHODS:
        raise InputError(f"{path} holds an unknown method {name!r}")
    field_ = METHODS[name].load(config_from_dict(cfg), meta, blob["state"], device)
    field_.method = name
    return field_.eval()


def field_colors(field_):
    """The field's colour function for vertex colours and baked textures (points [N, 3] -> [N, 3]), or None."""
    return METHODS[field_.method].colors(field_)


def field_to_mesh(field_, mesh_cfg: MeshConfig) -> trimesh.Trimesh:
    """The field's surface by its method's rule (SDF at 0, density at its threshold, the hull's level), cleaned,
    with vertex colours."""
    return METHODS[field_.method].mesh(field_, mesh_cfg)
