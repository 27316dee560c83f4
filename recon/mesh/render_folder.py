"""A mesh rendered into a NeRF-format views folder, with depth and normal maps (`img2mesh render`)."""
from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import trimesh

from img2mesh.data.cameras import Camera
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes, atomic_write_text, png_bytes
from img2mesh.data.views import View, Views, write_views

from .framing import framing_problems
from .io import load_mesh, normalize_mesh
from .raycast import render_mesh
from .up_axis import file_up_axis

log = logging.getLogger(__name__)


def render_mesh_to_folder(
    mesh: str | os.PathLike | trimesh.Trimesh,
    out_dir: str | os.PathLike,
    cameras: list[Camera],
    *,
    up: str | None = None,
    normalize: float | None = None,
    **render_kwargs,
) -> Views:
    """Render a mesh (file or Trimesh) into a NeRF-format views folder, plus depth and normal maps.

    Writes ``r_XXX.png`` + ``transforms.json`` (read back by ``read_views``), ``r_XXX_depth.npy`` (float32
    [H, W], distance along the camera's -z, 0 off the object), ``r_XXX_normal.png`` (RGBA uint8: world normal
    mapped by (n + 1) / 2, alpha = coverage), ``render.json`` (source, up axis and the normalisation applied)
    and ``gt_mesh.ply`` (the geometry exactly as rendered: compare reconstructions against it).
    ``up``: the file's up axis (None: :func:`file_up_axis` picks it and the choice is logged).
    ``normalize``: longest bounding-box side after :func:`normalize_mesh` (None: the file's coordinates).
    A camera inside the mesh's bounding box is an error (see :func:`framing_problems`), nothing written.
    """
    out_dir = Path(out_dir)
    source = str(mesh) if not isinstance(mesh, trimesh.Trimesh) else "<in-memory mesh>"
    if not isinstance(mesh, trimesh.Trimesh):
        up, why = file_up_axis(mesh, up)
        log.info("reading %s as %s-up (%s; --up %s if it is not)", Path(mesh).name, up, why, "z" if up == "y" else "y")
        mesh = load_mesh(mesh, up=up)
    info = {"source": source, "up": up, "normalize": normalize}
    if normalize is not None:
        lo, hi = mesh.bounds
        info.update(center=((lo + hi) / 2).tolist(), scale=float(normalize / np.max(hi - lo)))
        mesh = normalize_mesh(mesh, normalize)
    error, warning = framing_problems(mesh, cameras)
    if error:
        raise InputError(error)
    if warning:
        log.warning(warning)
    renders = render_mesh(mesh, cameras, **render_kwargs)
    views = Views([View(r.rgba, c, name=f"r_{i:03d}", is_input=(i == 0)) for i, (r, c) in enumerate(zip(renders, cameras))])
    out_dir.mkdir(parents=True, exist_ok=True)
    for view, r in zip(views, renders):
        atomic_write_bytes(out_dir / f"{view.name}_depth.npy", _npy_bytes(r.depth))
        normal_rgb = np.clip((r.normal + 1.0) * 0.5, 0.0, 1.0) * (r.rgba[..., 3:] > 0)
        normal_rgba = np.concatenate([normal_rgb, r.rgba[..., 3:]], axis=-1)
        atomic_write_bytes(out_dir / f"{view.name}_normal.png", png_bytes((normal_rgba * 255 + 0.5).astype(np.uint8)))
    # The mesh exactly as rendered (up axis turned, normalised): the ground truth for `img2mesh metrics`.
    atomic_write_bytes(out_dir / "gt_mesh.ply", trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(file_type="ply"))
    atomic_write_text(out_dir / "render.json", json.dumps(info, indent=2))
    write_views(views, out_dir)  # transforms.json last: the folder is complete once it exists
    return views


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()
