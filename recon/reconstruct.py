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

from .config import NeuSConfig, ReconConfig, VoxelConfig
from .mesh.config import MeshConfig
from .fields.grid import DenseGrid
from .fields.hull_field import HullField
from .fields.neus import NeuSField
from .fields.voxel import VoxelNeRF
from .hull import HullResult, carve_hull, estimate_bounds
from .mesh.io import raycasting_scene
from .mesh.meshing import extract_mesh, grid_points
from .occupancy import OccupancyGrid, use_occupancy_grid
from .rays import RayBatch, RaySampler, take_rays, build_ray_bank, march_bounds, ray_aabb, ray_sphere
from .trainer import CHECKPOINT_NAME, grid_resolutions, match_grids, train
from .unseen import fill_unseen, relax_unseen_base
from .volume_render import surface_density

log = logging.getLogger(__name__)
FIELD_NAME = "field.pt"
METHODS = ("neus", "voxel", "hull")


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


# -- bounds ---------------------------------------------------------------------------------------------------
def hull_for(cfg: ReconConfig, views: Views) -> HullResult:
    """The visual hull over [-1, 1]^3 (Zero-1-to-3 / GT scenes fit in it; objects sit at the origin)."""
    return carve_hull(views, resolution=cfg.hull_resolution, bounds=1.0, tolerance=cfg.hull_tolerance)


def sampling_box(cfg: ReconConfig, hull: HullResult) -> tuple[np.ndarray, np.ndarray]:
    """The box the grids cover and rays are clipped to: the hull's box (+ margin), or the bounding sphere's."""
    if cfg.bounds == "hull":
        b = estimate_bounds(None, hull=hull, margin=cfg.hull_margin * hull.voxel_size)
        return b.aabb_min.astype(np.float32), b.aabb_max.astype(np.float32)
    if cfg.bounds == "sphere":
        r = cfg.sphere_radius
        return np.full(3, -r, np.float32), np.full(3, r, np.float32)
    raise InputError(f"unknown recon.bounds {cfg.bounds!r}: use hull or sphere")


def ray_bounds_fn(cfg: ReconConfig, hull: HullResult, box: tuple[np.ndarray, np.ndarray]):
    """(origins, dirs) -> (near, far): inside the dilated hull (``bounds=hull``) or the sphere."""
    lo, hi = (torch.from_numpy(b) for b in box)
    if cfg.bounds == "sphere":
        return lambda o, d: ray_sphere(o, d, torch.zeros(3, device=o.device), cfg.sphere_radius)
    margin = cfg.hull_margin * hull.voxel_size

    def bounds(o: torch.Tensor, d: torch.Tensor):
        t0, t1 = ray_aabb(o, d, lo.to(o.device), hi.to(o.device))
        return march_bounds(o, d, t0, t1, hull.hull_sdf, margin, 0.5 * hull.voxel_size)

    return bounds


def candidate_dilation(cfg: ReconConfig, hull: HullResult, views: Views) -> int:
    """Pixels a ray may sit off the mask and still meet the dilated hull: the margin (+1 voxel) seen from
    the nearest camera distance to the hull's bounding sphere, rounded up, plus a pixel. -1 (all pixels)
    for sphere bounds."""
    if cfg.bounds != "hull":
        return -1
    reach = (cfg.hull_margin + 1.0) * hull.voxel_size
    b = estimate_bounds(None, hull=hull, margin=0.0)
    nearest = min(float(np.linalg.norm(v.camera.position - b.center)) for v in views) - b.radius
    focal = max(v.camera.focal for v in views)
    return int(np.ceil(reach * focal / max(nearest, 1e-3))) + 1


# -- fields ---------------------------------------------------------------------------------------------------
def build_field(cfg: ReconConfig, hull: HullResult, box, device="cpu", seed: int = 0,
                cameras: torch.Tensor | None = None):
    """The method's field, initialised from the hull where configured (seeded, so runs repeat).

    ``cameras`` [C, 3]: the views' camera centres; with them, a hull-initialised grid's unseen base is
    first relaxed to a minimal surface (``recon.base_relax_steps``) and the rest of what no view sees filled
    from the seen surface around it (``recon.unseen_fill``), recon/unseen.py."""
    lo, hi = box
    center = (lo + hi) / 2.0
    radius = float(np.linalg.norm(hi - lo) / 2.0)
    bound_res = min(cfg.hull_resolution, 128)
    bound_pos = grid_points(lo, hi, bound_res)
    bound_sdf = hull.hull_sdf(bound_pos)
    bound_margin = bound_margin_for(hull)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.method == "neus":
            n = cfg.neus
            init = None
            if n.sdf == "grid" and n.grid_init == "hull":
                # The unseen priors work at the full resolution; a coarse-to-fine run starts from that, sampled
                # down (run on a 64^3 coarse grid itself they cut spot's soles: NeuS 0.00325 against 0.00312).
                init = sampled_down(hull_init_sdf(cfg, hull, box, n.grid_resolution, cameras), n.grid_resolution,
                                    n.grid_coarse_resolution, box)
            return NeuSField(n, center, radius, lo, hi, sdf_init=init, bound_sdf=bound_sdf,
                             bound_resolution=bound_res, bound_margin=bound_margin, device=device).to(device)
        if cfg.method == "voxel":
            v = cfg.voxel
            init = None
            if v.init == "hull":
                sdf = hull_init_sdf(cfg, hull, box, v.resolution, cameras)
                voxel = float((hi - lo).max()) / (v.resolution - 1)
                init = v.init_density * (-sdf / voxel).clamp(-1.0, 1.0)  # +d inside, -d outside, a 2-voxel ramp
                init = sampled_down(init, v.resolution, v.coarse_resolution, box)
            return VoxelNeRF(v, lo, hi, density_init=init, bound_sdf=bound_sdf, bound_resolution=bound_res,
                             bound_margin=bound_margin).to(device)
    raise InputError(f"unknown recon.method {cfg.method!r}: use one of {', '.join(METHODS)}")


def sampled_down(values: torch.Tensor, resolution: int, coarse: int, box) -> torch.Tensor:
    """A one-channel grid's values [R^3] over ``box`` at the vertices of a ``coarse``^3 grid [coarse^3]; the
    values as they are when the run is not coarse-to-fine (``coarse`` 0 or the full resolution)."""
    if not coarse or coarse == resolution:
        return values
    grid = DenseGrid(resolution, 1, *box, values[:, None], trainable=False)
    grid.resample(coarse)
    return grid.values[:, 0]


def hull_init_sdf(cfg: ReconConfig, hull: HullResult, box, resolution: int, cameras: torch.Tensor | None):
    """The hull's signed distance at the vertices of a ``resolution``^3 grid over ``box`` [R^3]; when cameras
    are given, its unseen base relaxed and the rest of its unseen surface filled (recon/unseen.py)."""
    lo, hi = box
    sdf = hull_signed_distance(hull, grid_points(lo, hi, resolution))
    if cameras is None:
        return sdf
    grid = DenseGrid(resolution, 1, lo, hi, sdf[:, None], trainable=False)
    if cfg.base_relax_steps > 0:
        relax_unseen_base(grid, cameras, cfg.base_relax_steps, min_size=cfg.base_relax_min_size)
    if cfg.unseen_fill:
        fill_unseen(grid, cameras, tension=cfg.unseen_fill_tension)
    return grid.values[:, 0].clone()


def bound_margin_for(hull: HullResult) -> float:
    """How far a mesh may stand outside the hull: one hull voxel, the error of the hull's grid distance."""
    return float(hull.voxel_size)


def hull_signed_distance(hull: HullResult, points: torch.Tensor, band_voxels: float = 3.0) -> torch.Tensor:
    """Signed distance [N] to the hull's *mesh* (the soft hull's sub-voxel level set) near its surface, and the
    carved grid's distance transform further out (cheap, and only a starting point there).

    The distance transform alone puts the zero level on a voxel staircase (half a hull voxel off), which
    an optimiser would first have to undo; open3d's exact distance is used within ``band_voxels``. Its
    magnitude only: the sign comes from the soft hull itself (open3d's ray-parity sign was measured wrong
    inside half of the cow's thin legs), and where the mesh lacks a part (a dropped small component) the
    grid's distance stays.
    """
    import open3d as o3d

    sdf = hull.hull_sdf(points)
    band = torch.nonzero(sdf.abs() < band_voxels * hull.voxel_size).squeeze(1)
    if len(band):
        scene = raycasting_scene(hull.mesh.vertices, hull.mesh.faces)
        query = o3d.core.Tensor(points[band].cpu().numpy().astype(np.float32))
        unsigned = torch.from_numpy(scene.compute_distance(query).numpy()).to(sdf)
        inside = hull.soft_at(points[band]) >= 0.5
        exact = torch.where(inside, -unsigned, unsigned)
        trusted = unsigned <= sdf[band].abs() + hull.voxel_size
        sdf[band] = torch.where(trusted, exact, sdf[band])
    return sdf


# -- the stage ------------------------------------------------------------------------------------------------
def reconstruct(cfg: ReconConfig, views: Views, out_dir, *, seed: int = 0, device="cpu",
                resume: bool = True, max_steps: int | None = None) -> ReconResult:
    """Views -> ``out_dir/field.pt``. Resumes from ``out_dir/checkpoint.pt`` when ``resume``.

    ``max_steps``: stop after that many steps (of ``cfg.steps``), keeping the checkpoint so a later call
    finishes the run; the field file then holds the partly trained field.
    """
    if cfg.method not in METHODS:
        raise InputError(f"unknown recon.method {cfg.method!r}: use one of {', '.join(METHODS)}")
    validate_views(views)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    views = resize_views(views, cfg.image_size)
    hull = hull_for(cfg, views)
    stats = {"hull_seconds": round(time.time() - t0, 2)}
    if cfg.method == "hull":
        field_ = HullField.from_hull(hull)
        path = save_field(out_dir / FIELD_NAME, "hull", cfg, field_, field_.meta())
        return ReconResult("hull", path, 0, time.time() - t0, float("nan"), stats)

    box = sampling_box(cfg, hull)
    bank = build_ray_bank(views, ray_bounds_fn(cfg, hull, box), cfg.input_view_weight, cfg.background, device,
                          dilate_px=candidate_dilation(cfg, hull, views))
    stats["rays_in_bounds"] = int(bank.hit.sum())
    stats["setup_seconds"] = round(time.time() - t0, 2)
    sampler = RaySampler(bank, cfg.rays_per_batch, cfg.foreground_fraction, cfg.patch_size, cfg.patches_per_batch)
    cameras = torch.as_tensor(np.stack([v.camera.position for v in views]), dtype=torch.float32)
    field_ = build_field(cfg, hull, box, device, seed, cameras)
    meta = {"aabb_min": box[0].tolist(), "aabb_max": box[1].tolist(), "bound_margin": field_.bound_margin}
    occupancy = None
    if use_occupancy_grid(cfg.occupancy, device):
        occupancy = OccupancyGrid(cfg.occupancy, box, device, seed)
        stats["occupancy_grid"] = "nerfacc-cuda" if occupancy.use_cuda else "torch"
    trained = train(cfg, field_, sampler, out_dir, seed=seed, resume=resume, meta=meta, stop_at=max_steps,
                    occupancy=occupancy)
    if occupancy is not None:
        stats["occupied_fraction"] = round(occupancy.occupied_fraction, 4)
    if cfg.method == "voxel":  # where the renders put the surface, for meshing at the matching density
        fg = sampler.fg_idx[torch.randperm(len(sampler.fg_idx), generator=torch.Generator().manual_seed(seed))[:8192]]
        level = surface_density(field_, RayBatch(**take_rays(bank, fg)), cfg.voxel.step_size)
        if level == level:  # not nan
            field_.surface_level.fill_(level)
        stats["surface_level"] = level
    meta["grid_resolutions"] = grid_resolutions(field_)
    path = save_field(out_dir / FIELD_NAME, cfg.method, cfg, field_, meta)
    if trained.steps >= cfg.steps:
        (out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)  # the field file supersedes it
    stats.update(losses=trained.losses, resumed_from=trained.resumed_from, train_seconds=round(trained.seconds, 2))
    return ReconResult(cfg.method, path, trained.steps, time.time() - t0, trained.psnr, stats)


# -- field files ----------------------------------------------------------------------------------------------
def save_field(path: Path, method: str, cfg: ReconConfig, field_, meta: dict) -> Path:
    buf = io.BytesIO()
    torch.save({"format": "img2mesh-field/1", "method": method, "config": dataclasses.asdict(cfg), "meta": meta,
                "state": {k: v.detach().cpu() for k, v in field_.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_field(path, device="cpu"):
    """Rebuild a saved field (NeuSField, VoxelNeRF or HullField) from ``field.pt``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"field file {path} does not exist: run the recon stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        method, meta, cfg = blob["method"], blob["meta"], blob["config"]
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path} is not an img2mesh field file ({type(e).__name__}: {e}); re-run recon") from None
    state = blob["state"]
    if method == "hull":
        return HullField.from_meta(meta, state).to(device)
    lo, hi = np.asarray(meta["aabb_min"], np.float32), np.asarray(meta["aabb_max"], np.float32)
    bound_res = round(state["bound.values"].shape[0] ** (1 / 3)) if "bound.values" in state else 0
    bound = state.get("bound.values")
    margin = float(meta.get("bound_margin", 0.0))
    if method == "neus":
        ncfg = NeuSConfig(**cfg["neus"])
        f = NeuSField(ncfg, (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2), lo, hi, bound_sdf=bound,
                      bound_resolution=bound_res, bound_margin=margin, device=device)
    elif method == "voxel":
        f = VoxelNeRF(VoxelConfig(**cfg["voxel"]), lo, hi, bound_sdf=bound, bound_resolution=bound_res,
                      bound_margin=margin)
    else:
        raise InputError(f"{path} holds an unknown method {method!r}")
    match_grids(f, meta.get("grid_resolutions", {}))
    f.load_state_dict(state)
    f.method = method
    return f.to(device).eval()


def field_to_mesh(field_, mesh_cfg: MeshConfig) -> trimesh.Trimesh:
    """Marching cubes on the field (SDF at 0, density at the threshold), cleaned, with vertex colours."""
    if isinstance(field_, HullField):
        return field_.mesh(mesh_cfg)
    lo, hi = field_.aabb()
    common = dict(resolution=mesh_cfg.resolution, chunk=mesh_cfg.chunk, keep_components=mesh_cfg.keep_components,
                  smooth_iters=mesh_cfg.smooth_iters, target_faces=mesh_cfg.target_faces)
    device = next(field_.buffers()).device
    if isinstance(field_, NeuSField):
        level = mesh_cfg.level(0.0)
        return extract_mesh(field_.mesh_sdf, lo, hi, level=level, color_fn=field_.vertex_color, inside="below",
                            device=device, **common)
    if isinstance(field_, VoxelNeRF):
        level = mesh_cfg.level(field_.auto_threshold())
        return extract_mesh(field_.mesh_density, lo, hi, level=level, color_fn=field_.vertex_color, inside="above",
                            device=device, **common)
    raise TypeError(f"cannot mesh a {type(field_).__name__}")
