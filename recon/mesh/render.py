"""Render a mesh into posed views on the CPU (open3d ray casting): ground truth, turntables, tests.

What a render is:
- ``rgba``: straight alpha. Alpha is pixel coverage (the fraction of ``supersample``^2 sub-pixel rays that
  hit the mesh); RGB is the surface colour (UV texture, else vertex colours, else face colours, else grey)
  times a Lambertian factor ``ambient + diffuse * max(0, n . l)``. The default light is fixed in the *world*
  (above and to one side), so a surface point has the same colour in every view (multi-view consistent, as
  the optimisers' view-independent colour fields assume); ``Light(direction=None)`` is a headlight instead.
  Shading is done in display (sRGB) space, no gamma. Pixels with alpha 0 take the ``background`` colour.
- ``depth``: distance along the camera's -z axis (not along the ray), averaged over the sub-pixel hits;
  **0 where nothing is hit**.
- ``normal``: world-space unit normal, smooth (interpolated vertex normals) or flat, flipped to face the
  camera (meshes with inconsistent winding render the same); zeros where nothing is hit.

Meshes come from ``mesh_io`` (re-exported here): :func:`load_mesh` reads OBJ/PLY/GLB/GLTF into one
``trimesh.Trimesh`` in the z-up world; :func:`normalize_mesh` centres and scales a mesh the way every
ground-truth render in this project does.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from img2mesh.data.cameras import Camera, camera_rays
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes, atomic_write_text, png_bytes
from img2mesh.data.progress import progress
from img2mesh.data.views import View, Views, write_views

from .io import Y_UP_TO_Z_UP, Z_UP_TO_Y_UP, load_mesh, normalize_mesh, obj_is_y_up, surface_colors  # noqa: F401 (re-exported)
from .io import raycasting_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Light:
    """colour * (ambient + diffuse * max(0, n . l) + headlight * |n . v|) + specular * max(0, n . h)^shininess:
    Lambertian by default; the headlight and the (white, Blinn-Phong) specular lobe change with the viewpoint,
    as real captures and other renderers do (h: half-way between the light l and the view direction v)."""

    ambient: float = 0.35
    diffuse: float = 0.65
    direction: tuple[float, float, float] | None = (0.35, -0.25, 0.9)  # world, towards the light; None = headlight
    headlight: float = 0.0
    specular: float = 0.0
    shininess: float = 32.0


@dataclass
class MeshRender:
    rgba: np.ndarray  # [H, W, 4] float32 in [0, 1], straight alpha (alpha = coverage)
    depth: np.ndarray  # [H, W] float32, distance along the camera's -z axis, 0 where nothing is hit
    normal: np.ndarray  # [H, W, 3] float32, world-space unit normals facing the camera, 0 where nothing is hit


def smooth_vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] that ignore UV seams (vertices at one position share a normal)."""
    _, position_id = np.unique(np.round(mesh.vertices, 9), axis=0, return_inverse=True)
    position_id = position_id.reshape(-1)
    tri = mesh.vertices[mesh.faces]  # [F, 3, 3]
    area_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 * area
    acc = np.zeros((position_id.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, position_id[mesh.faces[:, k]], area_normals)
    normals = acc[position_id]
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def file_up_axis(path: str | os.PathLike, up: str | None = None) -> tuple[str, str]:
    """(up axis, why) for reading a mesh file: ``up`` when given; y for glTF (its specification) and for
    img2mesh's OBJ files (marked by their first line); z for the other files img2mesh writes (a run's mesh.ply,
    `render`'s gt_mesh.ply, older runs' mesh.obj: the z-up world), found by the run.json / render.json beside
    them; otherwise y, the convention of OBJ and PLY files from Blender,
    scanners and the common test models."""
    path = Path(path)
    if up is not None:
        return up, "as given"
    if path.suffix.lower() in (".glb", ".gltf"):
        return "y", "glTF files are y-up"
    if path.suffix.lower() == ".obj" and obj_is_y_up(path):
        return "y", "an img2mesh OBJ, y-up"
    if (path.parent / "run.json").is_file() or (path.parent / "render.json").is_file():
        return "z", "an img2mesh output, z-up"
    return "y", "the usual up axis of OBJ/PLY files"


def framing_problems(mesh: trimesh.Trimesh, cameras: list[Camera]) -> tuple[str | None, str | None]:
    """(error, warning) about where ``mesh`` sits for ``cameras``: an error when a camera is inside the mesh's
    bounding box (every view would be of its inside), a warning when the mesh overflows the views or fills
    under a twentieth of their width (an unnormalised mesh, in other units)."""
    lo, hi = mesh.bounds
    centre, radius = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo)) / 2.0
    inside = [i for i, c in enumerate(cameras) if np.all(c.position >= lo) and np.all(c.position <= hi)]
    size = f"{float(np.max(hi - lo)):.3g} units across, centred at ({', '.join(f'{x:.3g}' for x in centre)})"
    if inside:
        return (f"{len(inside)} of {len(cameras)} cameras are inside the mesh's bounding box (the mesh is {size}): "
                "pass --normalize 1 to centre it and scale it to the cameras, or place the cameras further out"), None
    # the half-width each camera sees at the mesh's centre, against the mesh's bounding sphere
    seen = min(float(np.linalg.norm(c.position - centre)) * np.tan(c.fov_x / 2.0) for c in cameras)
    if radius > seen or radius < seen / 20.0:
        what = "overflows the views" if radius > seen else "fills under a twentieth of the views"
        return None, f"the mesh ({size}) {what}: pass --normalize 1 to fit it to the cameras"
    return None, None


# --------------------------------------------------------------------------------------------- rendering


class _Scene:
    """A mesh prepared once for ray casting from many cameras."""

    def __init__(self, mesh: trimesh.Trimesh, smooth: bool):
        import open3d as o3d  # slow to import: only when rendering

        self.mesh = mesh
        self.scene = raycasting_scene(mesh.vertices, mesh.faces)
        self.vertex_normals = smooth_vertex_normals(mesh) if smooth else None
        self._o3d = o3d

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> dict[str, np.ndarray]:
        """origins, dirs [N, 3] (unit dirs) -> t [N] (inf on miss), face ids [N], barycentric [N, 3], geometric normals [N, 3]."""
        rays = np.concatenate([origins, dirs], axis=1).astype(np.float32)
        out = self.scene.cast_rays(self._o3d.core.Tensor(rays))
        t = out["t_hit"].numpy()
        uv = out["primitive_uvs"].numpy().astype(np.float64)
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        face_ids = out["primitive_ids"].numpy().astype(np.int64)
        return {"t": t, "face_ids": face_ids, "bary": bary, "normals": out["primitive_normals"].numpy().astype(np.float64)}


def _render_one(scene: _Scene, camera: Camera, light: Light, background: float, supersample: int) -> MeshRender:
    s = int(supersample)
    hi = camera.resized(camera.width * s, camera.height * s)
    origins, dirs = (x.numpy().astype(np.float64) for x in camera_rays(hi, dtype=torch.float64))
    hit = scene.cast(origins, dirs)
    n_rays = len(dirs)
    mask = np.isfinite(hit["t"])  # [N]
    idx = np.nonzero(mask)[0]
    face_ids, bary, d = hit["face_ids"][idx], hit["bary"][idx], dirs[idx]

    # Normals facing the camera: flip the geometric normal first, then the shading normal to agree with it.
    geo = hit["normals"][idx]
    geo *= np.where(np.sum(geo * d, axis=1, keepdims=True) > 0, -1.0, 1.0)
    if scene.vertex_normals is not None:
        normal = np.einsum("nk,nkc->nc", bary, scene.vertex_normals[scene.mesh.faces[face_ids]])
        normal *= np.where(np.sum(normal * geo, axis=1, keepdims=True) < 0, -1.0, 1.0)
        length = np.linalg.norm(normal, axis=1, keepdims=True)
        normal = np.where(length > 1e-8, normal / np.maximum(length, 1e-12), geo)
    else:
        normal = geo

    l = -d if light.direction is None else np.broadcast_to(np.asarray(light.direction, dtype=np.float64), d.shape)
    l = l / np.linalg.norm(l, axis=1, keepdims=True)
    shade = light.ambient + light.diffuse * np.clip(np.sum(normal * l, axis=1, keepdims=True), 0.0, None)
    if light.headlight:
        shade = shade + light.headlight * np.abs(np.sum(normal * d, axis=1, keepdims=True))
    rgb = surface_colors(scene.mesh, face_ids, bary) * shade
    if light.specular:
        half = l - d
        half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
        rgb = rgb + light.specular * np.clip(np.sum(normal * half, axis=1, keepdims=True), 0.0, None) ** light.shininess
    rgb = np.clip(rgb, 0.0, 1.0)  # [n_hit, 3]
    forward = -camera.c2w[:3, 2]
    z = hit["t"][idx] * (d @ forward)  # [n_hit] distance along the camera's -z

    # Scatter the hits into full-resolution buffers, then average each s x s block of sub-pixels.
    buf = np.zeros((n_rays, 8), dtype=np.float64)  # rgb, depth, normal, coverage
    buf[idx, 0:3], buf[idx, 3], buf[idx, 4:7], buf[idx, 7] = rgb, z, normal, 1.0
    h, w = camera.height, camera.width
    summed = buf.reshape(h, s, w, s, 8).sum(axis=(1, 3))  # [H, W, 8]
    hits = summed[..., 7]
    covered = hits > 0
    denom = np.maximum(hits, 1.0)[..., None]
    alpha = hits / (s * s)
    rgb_img = np.where(covered[..., None], summed[..., 0:3] / denom, background)
    depth = np.where(covered, summed[..., 3] / denom[..., 0], 0.0)
    nrm = summed[..., 4:7]
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
    rgba = np.concatenate([rgb_img, alpha[..., None]], axis=-1).astype(np.float32)
    return MeshRender(rgba=rgba, depth=depth.astype(np.float32), normal=nrm.astype(np.float32))


def render_mesh(
    mesh: trimesh.Trimesh,
    cameras: list[Camera],
    *,
    light: Light = Light(),
    background: float = 1.0,
    supersample: int = 2,
    smooth: bool = True,
) -> list[MeshRender]:
    """Render ``mesh`` from every camera (see the module docstring for what the buffers hold).

    ``supersample``: sub-pixel rays per side (antialiased alpha and colour); ``smooth``: shade with
    interpolated vertex normals (False: flat face normals, right for boxes and other hard-edged meshes).
    """
    if len(mesh.faces) == 0:
        raise InputError("cannot render a mesh without faces")
    assert supersample >= 1, f"supersample must be >= 1, got {supersample}"
    scene = _Scene(mesh, smooth)
    return [_render_one(scene, cam, light, background, supersample) for cam in progress(cameras, desc="render")]


def render_views(mesh: trimesh.Trimesh, cameras: list[Camera], **kwargs) -> Views:
    """Renders as :class:`Views` named ``r_000``, ``r_001``, ...; the first is the input view."""
    renders = render_mesh(mesh, cameras, **kwargs)
    return Views([View(r.rgba, cam, name=f"r_{i:03d}", is_input=(i == 0)) for i, (r, cam) in enumerate(zip(renders, cameras))])


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
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()
