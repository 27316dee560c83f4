"""Ground-truth views of the shared test meshes, the same way for every benchmark.

    from gt_views import gt_views          # scripts in experiments/ have this folder on sys.path
    views, gt = gt_views("cow")            # 36 views: ring at 20 deg, radius 2, FoV 49.1 deg, 128 px

Normalisation (the metrics' convention too): each mesh is loaded with its file's up axis turned to +z
(all the OBJ files are y-up), then its bounding box is centred at the origin and its longest side scaled
to 1 (``normalize_mesh(mesh, 1.0)``), so it sits inside [-0.5, 0.5]^3 and every camera at radius 2 sees it
whole. Views are rendered by ``img2mesh.recon.render_views`` (2x2 supersampling, fixed world light),
view 0 (azimuth 0) marked as the input.
"""
from __future__ import annotations

import os
from pathlib import Path

import trimesh

from img2mesh.data.cameras import DEFAULT_FOV_X, DEFAULT_RADIUS, ring_cameras
from img2mesh.data.views import Views
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh
from img2mesh.recon.mesh.raycast import render_views

# name -> (path under shared/meshes, the file's up axis); checked by rendering: all stand upright after y -> z.
MESHES = {
    "cow": ("cow.obj", "y"),
    "spot": ("spot/spot_triangulated.obj", "y"),
    "stanford-bunny": ("stanford-bunny.obj", "y"),
    "suzanne": ("suzanne.obj", "y"),
    "ogre": ("ogre.obj", "y"),
    "beast": ("beast.obj", "y"),
    "nefertiti": ("nefertiti.obj", "y"),
    "rocker-arm": ("rocker-arm.obj", "y"),
    "teapot": ("teapot.obj", "y"),
}


def shared_dir() -> Path:
    """``$IMG2MESH_SHARED`` or the ``shared`` folder beside the checkout."""
    return Path(os.environ.get("IMG2MESH_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def gt_mesh(name: str) -> trimesh.Trimesh:
    """The named test mesh, z up, centred, longest side 1."""
    if name not in MESHES:
        raise KeyError(f"unknown test mesh {name!r}: choose from {sorted(MESHES)}")
    rel, up = MESHES[name]
    return normalize_mesh(load_mesh(shared_dir() / "meshes" / rel, up=up), 1.0)


def gt_views(
    name: str,
    n: int = 36,
    elevation: float = 20.0,
    size: int = 128,
    radius: float = DEFAULT_RADIUS,
    fov_x: float = DEFAULT_FOV_X,
    supersample: int = 2,
) -> tuple[Views, trimesh.Trimesh]:
    """(views, normalised ground-truth mesh) for a ring of ``n`` cameras at ``elevation``."""
    mesh = gt_mesh(name)
    views = render_views(mesh, ring_cameras(n, elevation, radius, fov_x, size), supersample=supersample)
    return views, mesh
