"""Write the final mesh (OBJ + MTL, PLY, GLB) and show it (turntable MP4, grid of views).

Units and frame: the mesh stays in img2mesh's world units (the object about 1 unit across, cameras at
radius 2; read 1 unit as 1 metre) and its world placement (object at the origin, where every camera
looks; export.origin places it otherwise, in the asset). PLY keeps the z-up world (Blender's PLY importer
assumes z up); GLB is rotated to glTF's y-up (+z up -> +y up, -y front -> +z front), so Blender, three.js and
model viewers show it upright, and ``load_mesh`` rotates it back; OBJ is y-up too (OBJ's usual convention, what
Blender's OBJ importer assumes), marked as img2mesh's by its first line. Colours: vertex colours in all
three formats (OBJ as ``v x y z r g b``, GLB as COLOR_0); a UV texture goes into OBJ (MTL ``map_Kd``) and GLB,
and is baked to vertex colours for PLY. Every file is written atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import trimesh

from img2mesh.data.cameras import DEFAULT_FOV_X, Camera, look_at, spherical_to_position
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_path, atomic_write_bytes, png_bytes
from img2mesh.data.views import View, Views, on_white

from .io import OBJ_Y_UP, Z_UP_TO_Y_UP
from .raycast import MeshRender, render_mesh

FORMATS = ("obj", "glb", "ply")


def _obj_files(mesh: trimesh.Trimesh, stem: str) -> dict[str, bytes]:
    """File name -> contents for an OBJ, its MTL and any texture images."""
    from trimesh.exchange.obj import export_obj

    text, extra = export_obj(mesh, include_color=True, include_texture=True, return_texture=True,
                             mtl_name=f"{stem}.mtl")
    files = {}
    if f"{stem}.mtl" in extra:  # textured: give the images names that cannot clash with another stem's
        mtl = extra.pop(f"{stem}.mtl").decode("utf-8")
        for name, data in extra.items():
            mtl = mtl.replace(f"map_Kd {name}", f"map_Kd {stem}_{name}")
            files[f"{stem}_{name}"] = data
        files[f"{stem}.mtl"] = mtl.encode("utf-8")
    else:  # vertex colours: a white material library beside it. No `usemtl`: with one, trimesh (and
        # other readers) replace the vertex colours by the material's colour on reload.
        header, _, body = text.partition("\n")
        text = f"{header}\nmtllib {stem}.mtl\n{body}"
        files[f"{stem}.mtl"] = f"newmtl {stem}\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nillum 1\n".encode()
    files[f"{stem}.obj"] = f"{OBJ_Y_UP}\n{text}".encode("utf-8")
    return files


def export_mesh(
    mesh: trimesh.Trimesh,
    out_dir: str | os.PathLike,
    formats=FORMATS,
    stem: str = "mesh",
) -> dict[str, Path]:
    """Write ``mesh`` as ``out_dir/{stem}.{obj,glb,ply}`` (see the module docstring); returns format -> path."""
    if mesh is None or len(mesh.faces) == 0:
        raise InputError("the mesh is empty: nothing to export (try another export.mesh.threshold)")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown export format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if "obj" in formats or "glb" in formats:
        y_up = mesh.copy(include_cache=True)  # keeps vertex normals set on the mesh (rotated with it)
        y_up.apply_transform(Z_UP_TO_Y_UP)
    if "obj" in formats:
        for name, data in _obj_files(y_up, stem).items():
            atomic_write_bytes(out_dir / name, data)
        written["obj"] = out_dir / f"{stem}.obj"
    if "ply" in formats:
        flat = mesh
        if isinstance(mesh.visual, trimesh.visual.TextureVisuals):
            flat = mesh.copy()
            flat.visual = mesh.visual.to_color()  # PLY has no textures: sample them at the vertices
        written["ply"] = atomic_write_bytes(out_dir / f"{stem}.ply", flat.export(file_type="ply"))
    if "glb" in formats:
        written["glb"] = atomic_write_bytes(out_dir / f"{stem}.glb", y_up.export(file_type="glb"))
    return written


# ----------------------------------------------------------------------------------------------- previews


def turntable_cameras(mesh: trimesh.Trimesh, n_frames: int, size: int, elevation: float,
                      fov_x: float = DEFAULT_FOV_X, margin: float = 1.1) -> list[Camera]:
    """``n_frames`` cameras circling the mesh's bounding-box centre at ``elevation``, far enough that its
    bounding sphere (times ``margin``) fills the view."""
    lo, hi = mesh.bounds
    centre, radius = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo)) / 2.0
    distance = margin * radius / math.sin(fov_x / 2.0)
    cams = []
    for i in range(n_frames):
        eye = centre + spherical_to_position(elevation, 360.0 * i / n_frames, distance)
        cams.append(Camera(look_at(eye, centre), fov_x, size, size))
    return cams


def _on_white(images) -> list[np.ndarray]:
    """Views / View / MeshRender / arrays (float [0, 1] or uint8; RGB or RGBA) -> uint8 RGB on white."""
    if isinstance(images, Views):
        images = images.views
    out = []
    for item in images:
        img = item.rgba if isinstance(item, (View, MeshRender)) else np.asarray(item)
        img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.shape[-1] == 4:
            img = on_white(img)
        out.append((np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    return out


def views_grid(images, path_png: str | os.PathLike, cols: int | None = None, pad: int = 2) -> Path:
    """Tile images (Views, MeshRenders or arrays; straight-alpha RGBA is composited on white) into one PNG,
    ``cols`` per row (default: ~square), ``pad`` white pixels between tiles."""
    tiles = _on_white(images)
    if not tiles:
        raise InputError("no images to put in a grid")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    cols = cols or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + tile.shape[0], c * (w + pad) : c * (w + pad) + tile.shape[1]] = tile
    return atomic_write_bytes(path_png, png_bytes(grid))


def render_turntable(
    mesh: trimesh.Trimesh,
    path_mp4: str | os.PathLike,
    n_frames: int = 60,
    size: int = 256,
    elevation: float = 20.0,
    fps: int = 24,
    **render_kwargs,
) -> Path:
    """An H.264 (yuv420p) MP4 of the mesh turning once, on white, through imageio-ffmpeg.

    ``size`` is rounded up to even (yuv420p needs even sides); extra keywords go to ``render_mesh``."""
    import imageio.v2 as imageio

    if n_frames < 1:
        raise InputError(f"a turntable needs at least one frame, got {n_frames}")
    size = int(size) + int(size) % 2
    frames = _on_white(render_mesh(mesh, turntable_cameras(mesh, n_frames, size, elevation), **render_kwargs))
    path_mp4 = Path(path_mp4)
    with atomic_path(path_mp4) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=2, output_params=["-movflags", "+faststart"])
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
    return path_mp4
