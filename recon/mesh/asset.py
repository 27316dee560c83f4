"""The exported asset: the meshed surface decimated, coloured (a baked texture or vertex colours), placed
where Blender, three.js and game engines expect it, and written as OBJ / GLB / PLY.

    asset = make_asset(mesh, color_fn, target_faces=20000, texture_size=1024, origin="bottom")
    paths, files = write_asset(asset, out_dir, ("obj", "glb", "ply"))

Steps: quadric decimation to ``target_faces`` (fast-simplification; 0 keeps the full mesh) -> vertex colours
from ``color_fn`` at the vertices -> with ``texture``, a UV atlas (xatlas) and a base-colour texture baked from
``color_fn`` at every texel's surface point -> placement (``origin``, ``scale``). ``color_fn`` is queried in
the reconstruction's world frame, so colours are taken before the mesh is moved.

Files: OBJ + MTL + PNG and GLB (PBR material, texture embedded, y up) hold the textured mesh; PLY, which has no
textures, holds the same surface with vertex colours. Without ``texture`` all three hold vertex colours.
Placement: ``center`` puts the bounding-box centre at the origin; ``bottom`` centres it horizontally and puts the
lowest point on the ground (z = 0 in the z-up OBJ / PLY, y = 0 in the y-up GLB); ``world`` keeps the
reconstruction's frame, where the views' cameras are. ``scale`` then multiplies every coordinate: the
reconstruction lives in a box about 1 unit across (cameras at radius 2), which Blender and three.js read as
metres.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from img2mesh.data.errors import InputError

from .export import FORMATS, export_mesh
from .meshing import QueryFn, color_vertices, decimate
from .raycast import smooth_vertex_normals
from .texture import bake_texture, textured_mesh, unwrap

log = logging.getLogger(__name__)

ORIGINS = ("center", "bottom", "world")
TEXTURE_SIZES = (16, 8192)  # smallest and largest texture side accepted


@dataclass
class Asset:
    mesh: trimesh.Trimesh  # OBJ and GLB: UVs + base-colour texture (texture=True), else vertex colours
    colored: trimesh.Trimesh  # PLY: the same surface, not split at UV seams, with vertex colours
    transform: np.ndarray  # [4, 4] the placement applied: reconstruction frame -> file (z up)
    stats: dict = field(default_factory=dict)


def check_settings(*, target_faces: int = 0, texture_size: int = 1024, origin: str = "center",
                   scale: float = 1.0) -> None:
    """One-line errors for settings :func:`make_asset` cannot use (named by their `export.*` keys)."""
    if origin not in ORIGINS:
        raise InputError(f"export.origin={origin!r}: choose one of {', '.join(ORIGINS)}")
    if not scale > 0:
        raise InputError(f"export.scale={scale}: must be a positive number")
    if not TEXTURE_SIZES[0] <= texture_size <= TEXTURE_SIZES[1]:
        raise InputError(f"export.texture_size={texture_size}: choose {TEXTURE_SIZES[0]} to {TEXTURE_SIZES[1]} "
                         "pixels (e.g. 1024)")
    if target_faces < 0 or 0 < target_faces < 4:
        raise InputError(f"export.target_faces={target_faces}: use 0 (keep the full mesh) or at least 4 faces")


def placement(mesh: trimesh.Trimesh, origin: str = "center", scale: float = 1.0) -> np.ndarray:
    """[4, 4] transform that places ``mesh`` (z up) by ``origin`` and then scales it (module docstring)."""
    lo, hi = mesh.bounds
    shift = np.zeros(3)
    if origin == "center":
        shift = -(lo + hi) / 2.0
    elif origin == "bottom":
        shift = np.array([-(lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, -lo[2]])
    transform = np.eye(4)
    transform[:3, :3] *= scale
    transform[:3, 3] = scale * shift
    return transform


def make_asset(mesh: trimesh.Trimesh, color_fn: QueryFn | None, *, target_faces: int = 0, texture: bool = True,
               texture_size: int = 1024, origin: str = "center", scale: float = 1.0, chunk: int = 65536,
               device="cpu") -> Asset:
    """The asset from a meshed surface (module docstring). ``color_fn``: points [N, 3] -> colours [N, 3] in
    [0, 1] in the mesh's frame, e.g. a field's ``vertex_color``; None (a method without colour, the hull)
    keeps the mesh's own colours and bakes no texture."""
    check_settings(target_faces=target_faces, texture_size=texture_size, origin=origin, scale=scale)
    if mesh is None or len(mesh.faces) == 0:
        raise InputError("the mesh is empty: nothing to export (try another export.mesh.threshold)")
    stats: dict = {"faces_meshed": len(mesh.faces)}
    t0 = time.perf_counter()
    small = decimate(mesh, target_faces)
    stats["decimate_seconds"] = round(time.perf_counter() - t0, 3)
    colored = small.copy()  # the caller's mesh is never changed
    if color_fn is not None and (small is not mesh or mesh.visual.kind != "vertex"):
        color_vertices(colored, color_fn, chunk, device)  # decimation drops colours: ask the field again
    out = colored
    if texture and color_fn is not None:
        t0 = time.perf_counter()
        uv_mesh = unwrap(small, texture_size)
        stats["unwrap_seconds"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        out = textured_mesh(uv_mesh, bake_texture(uv_mesh, color_fn, texture_size, chunk=chunk, device=device))
        stats["bake_seconds"] = round(time.perf_counter() - t0, 3)
        stats["texture_size"] = int(texture_size)
    elif texture:
        log.info("this method reconstructs no colour: the mesh is exported without a texture")
    transform = placement(colored, origin, scale)
    for m in [colored] if out is colored else [colored, out]:
        m.apply_transform(transform)
        # Smooth normals that ignore UV seams: written into the GLB, so viewers shade it smooth, not faceted.
        m.vertex_normals = smooth_vertex_normals(m)
    stats.update(faces=len(out.faces), vertices=len(out.vertices))
    return Asset(out, colored, transform, stats)


def write_asset(asset: Asset, out_dir: str | os.PathLike, formats=FORMATS, stem: str = "mesh"
                ) -> tuple[dict[str, Path], list[Path]]:
    """Write the asset as ``out_dir/{stem}.{obj,glb,ply}``; returns (format -> path, every file written,
    the OBJ's MTL and texture included)."""
    paths = export_mesh(asset.mesh, out_dir, [f for f in formats if f != "ply"], stem)  # (it checks formats)
    if "ply" in formats:
        paths.update(export_mesh(asset.colored, out_dir, ("ply",), stem))
    paths = {f: paths[f] for f in formats}
    files = list(paths.values())
    if "obj" in paths:
        files.extend(obj_companions(paths["obj"]))
    return paths, files


def obj_companions(obj_path: Path) -> list[Path]:
    """The MTL an OBJ names and the images that MTL names (paths beside the OBJ)."""
    obj_path = Path(obj_path)
    out = []
    with open(obj_path, errors="ignore") as f:
        for line in f:
            if line.startswith("v "):
                break  # the header is over
            if line.startswith("mtllib "):
                mtl = obj_path.parent / line.split(maxsplit=1)[1].strip()
                out.append(mtl)
                out.extend(obj_path.parent / l.split(maxsplit=1)[1].strip()
                           for l in mtl.read_text().splitlines() if l.startswith("map_"))
    return out
