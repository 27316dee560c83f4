"""The start of every reconstruction, as a step of its own: views -> carved hull, the box the field lives in,
and the hull-initialised signed distance with the priors for what no camera sees (recon/start/unseen.py).

    start = prepare_start(cfg.recon.init, views, resolution=128)
    reconstruct(cfg.recon, views, out_dir, start=start)

It assumes nothing about the world frame: up is the cameras' mean up vector (``data.cameras.mean_up``), and
"unseen" is judged from the views' own camera centres. ``reconstruct`` caches it in the run's recon folder
(``start.pt``, keyed by the init config, the resolution and the views), so a resumed run does not recompute it;
a benchmark may compute it elsewhere and pass it in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from dataclasses import dataclass

import numpy as np
import torch
import trimesh

from img2mesh.data.cameras import mean_up
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes
from img2mesh.data.views import Views

from ..sections import InitConfig
from ..fields.grid import DenseGrid
from .carving import robust_carving
from .hull import HullResult, hull_box
from ..mesh.io import raycasting_scene
from ..mesh.meshing import grid_points
from .unseen import fill_unseen, relax_unseen_base

START_NAME = "start.pt"
START_FORMAT = "img2mesh-start/3"


@dataclass
class Start:
    hull: HullResult  # the carved hull (over a cube where the cameras look)
    box: tuple[np.ndarray, np.ndarray]  # [3], [3] float32: where the field lives (hull box + margin, or sphere)
    margin: float  # world units rays and the mesh may reach beyond the hull (hull_margin hull voxels)
    up: np.ndarray  # [3] unit: the world's up as the cameras see it
    cameras: np.ndarray  # [C, 3] camera centres
    # [R^3] the methods' starting signed distance at the vertices of an R^3 grid over box: the hull's, its
    # unseen parts replaced by the priors (None: a blank start)
    initial_sdf: torch.Tensor | None
    resolution: int  # R (0 when sdf is None)
    key: str  # what it was computed from (init config, resolution, views, their confidence)
    seconds: float  # how long it took to compute
    carving: dict = dataclasses.field(default_factory=dict)  # the hull's tolerances as chosen (recon/start/carving.py)


def views_digest(views: Views) -> str:
    """A hash of the views' pixels and cameras (what the start depends on)."""
    h = hashlib.sha256()
    for v in views:
        h.update(np.ascontiguousarray(v.rgba, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(v.camera.c2w).tobytes())
        h.update(f"{v.camera.fov_x}:{v.camera.width}:{v.camera.height}".encode())
    return h.hexdigest()[:16]


def start_key(cfg: InitConfig, views: Views, resolution: int | None, confidence=None) -> str:
    weights = None if confidence is None else [round(float(c), 6) for c in confidence]
    blob = json.dumps([dataclasses.asdict(cfg), int(resolution or 0), views_digest(views), weights], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_start(cfg: InitConfig, views: Views, resolution: int | None = None, confidence=None) -> Start:
    """Carve the hull, fix the box and, when ``resolution`` is given and ``cfg.shape`` is hull, the initial SDF
    on a ``resolution``^3 vertex grid over the box (its unseen base relaxed, the rest of its unseen surface
    filled). ``confidence`` [V]: each view's weight in the carving vote (default: all 1)."""
    t0 = time.time()
    weights = np.ones(len(views)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    hull, carving = robust_carving(cfg, views, weights)
    box = field_box(cfg, hull)
    cameras = np.stack([v.camera.position for v in views]).astype(np.float32)
    up = mean_up(views.cameras)
    sdf = None
    if resolution and cfg.shape == "hull":
        sdf = compute_initial_sdf(cfg, hull, box, resolution, torch.from_numpy(cameras), torch.from_numpy(up).float())
    elif cfg.shape not in ("hull", "blank"):
        raise InputError(f"unknown recon.init.shape {cfg.shape!r}: use hull or blank")
    return Start(hull, box, cfg.hull_margin * hull.voxel_size, up, cameras, sdf, int(resolution) if sdf is not None else 0,
                 start_key(cfg, views, resolution, confidence), time.time() - t0, carving)


def field_box(cfg: InitConfig, hull: HullResult) -> tuple[np.ndarray, np.ndarray]:
    """The box the grids cover and rays are clipped to: the hull's box (+ margin), or the bounding sphere's."""
    if cfg.bounds == "hull":
        lo, hi = hull_box(hull, cfg.hull_margin * hull.voxel_size)
        return lo.astype(np.float32), hi.astype(np.float32)
    if cfg.bounds == "sphere":
        r = cfg.sphere_radius
        return np.full(3, -r, np.float32), np.full(3, r, np.float32)
    raise InputError(f"unknown recon.init.bounds {cfg.bounds!r}: use hull or sphere")


def compute_initial_sdf(cfg: InitConfig, hull: HullResult, box, resolution: int, cameras: torch.Tensor,
                        up: torch.Tensor) -> torch.Tensor:
    """``Start.initial_sdf``: the hull mesh's signed distance at the vertices of a ``resolution``^3 grid over
    ``box`` [R^3], its unseen base relaxed and the rest of its unseen surface filled (recon/start/unseen.py)."""
    lo, hi = box
    sdf = hull_mesh_sdf(hull, grid_points(lo, hi, resolution))
    grid = DenseGrid(resolution, 1, lo, hi, sdf[:, None], trainable=False)
    if cfg.base_relax_steps > 0:
        relax_unseen_base(grid, cameras, cfg.base_relax_steps, min_size=cfg.base_relax_min_size, up=up)
    if cfg.unseen_fill:
        fill_unseen(grid, cameras, tension=cfg.unseen_fill_tension, up=up)
    return grid.values[:, 0].clone()


def hull_mesh_sdf(hull: HullResult, points: torch.Tensor, band_voxels: float = 3.0) -> torch.Tensor:
    """Signed distance [N] to the hull's *mesh* (the soft hull's sub-voxel level set) near its surface, and the
    carved grid's distance transform further out (cheap, and only a starting point there).

    The distance transform alone puts the zero level on a voxel staircase (half a hull voxel off), which an
    optimiser would first have to undo; open3d's exact distance is used within ``band_voxels``. Its magnitude
    only: the sign comes from the soft hull itself (open3d's ray-parity sign is unreliable inside thin parts),
    and where the mesh lacks a part (a dropped small component) the grid's distance stays.
    """
    import open3d as o3d

    sdf = hull.coarse_sdf(points)
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


def sampled_down(values: torch.Tensor, resolution: int, coarse: int, box) -> torch.Tensor:
    """A one-channel grid's values [R^3] over ``box`` at the vertices of a ``coarse``^3 grid [coarse^3]; the
    values as they are when ``coarse`` is 0 or ``resolution``."""
    if not coarse or coarse == resolution:
        return values
    grid = DenseGrid(resolution, 1, *box, values[:, None], trainable=False)
    grid.resample(coarse)
    return grid.values[:, 0]


# -- the cached copy in a run folder ----------------------------------------------------------------------------
def save_start(path, start: Start) -> None:
    h = start.hull
    blob = {"format": START_FORMAT, "key": start.key, "seconds": start.seconds, "margin": start.margin,
            "carving": json.dumps(start.carving),
            "box": [torch.from_numpy(b) for b in start.box], "up": torch.from_numpy(start.up),
            "cameras": torch.from_numpy(start.cameras), "initial_sdf": start.initial_sdf, "resolution": start.resolution,
            "hull": {"occupancy": torch.from_numpy(h.occupancy), "bounds": h.bounds, "center": torch.from_numpy(h.center), "soft": torch.from_numpy(h.soft),
                     "node_sdf": torch.from_numpy(h.node_sdf), "vertices": torch.from_numpy(np.asarray(h.mesh.vertices)),
                     "faces": torch.from_numpy(np.asarray(h.mesh.faces))}}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_start(path, key: str) -> Start | None:
    """The start cached at ``path`` if it was computed from the same ``key``; None otherwise."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated or foreign: compute it again
        return None
    if blob.get("format") != START_FORMAT or blob.get("key") != key:
        return None
    h = blob["hull"]
    hull = HullResult(occupancy=h["occupancy"].numpy(), bounds=float(h["bounds"]),
                      mesh=trimesh.Trimesh(h["vertices"].numpy(), h["faces"].numpy(), process=False),
                      soft=h["soft"].numpy(), node_sdf=h["node_sdf"].numpy(), center=h["center"].numpy())
    return Start(hull, tuple(b.numpy() for b in blob["box"]), float(blob["margin"]), blob["up"].numpy(),
                 blob["cameras"].numpy(), blob["initial_sdf"], int(blob["resolution"]), key, float(blob["seconds"]),
                 json.loads(blob.get("carving", "{}")))
