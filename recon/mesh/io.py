"""Meshes in the z-up world: loading (OBJ/PLY/GLB, up axis, textures), normalisation, surface colours.

``load_mesh`` returns one ``trimesh.Trimesh``; ``normalize_mesh`` is the ground-truth convention of this
project; ``surface_colors`` looks up a mesh's colour (UV texture, vertex, face, or grey) at surface points.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

from img2mesh.data.errors import InputError

GREY = np.array([0.7, 0.7, 0.7], dtype=np.float32)  # colour of meshes that carry none
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Rotations between the glTF / y-up convention and the z-up world (+90 deg about x): y-up's +y becomes +z
# and y-up's +z (glTF "front") becomes -y. export.py uses the inverse, so export -> load is the identity.
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
Z_UP_TO_Y_UP = np.linalg.inv(Y_UP_TO_Z_UP)
# The first line of img2mesh's OBJ files, which are y-up (OBJ's usual convention; earlier versions wrote z-up
# OBJ files without it).
OBJ_Y_UP = "# img2mesh mesh, y up"


def obj_is_y_up(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OBJ written y-up by img2mesh (its first line says so)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip() == OBJ_Y_UP
    except OSError:
        return False


def raycasting_scene(vertices: np.ndarray, faces: np.ndarray):
    """An open3d ``RaycastingScene`` holding one triangle mesh (rays, distances, closest points, inside tests)."""
    import open3d as o3d  # slow to import: only where a scene is needed

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)))
    return scene


# ----------------------------------------------------------------------------------------------- loading


def load_mesh(path: str | os.PathLike, up: str | None = None, texture: str | os.PathLike | None = None) -> trimesh.Trimesh:
    """Read OBJ / PLY / GLB / GLTF (or anything trimesh reads) as one mesh in the z-up world.

    ``up`` is the file's up axis: ``'z'`` (kept as is) or ``'y'`` (rotated +90 deg about x so +y becomes +z).
    Default: ``'y'`` for GLB/GLTF (the glTF convention, undoing :func:`export_mesh`'s conversion) and for
    img2mesh's own OBJ files (:func:`obj_is_y_up`), ``'z'`` otherwise (img2mesh's PLY, earlier OBJ files).
    A scene is flattened into one mesh with its node transforms applied.
    Textures are kept. An OBJ with UVs but no ``mtllib`` gets ``texture`` if given, else the one image
    beside it whose name starts with the mesh name's first word (``spot_triangulated.obj`` ->
    ``spot_texture.png``), if exactly one such image exists.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file {path} does not exist")
    suffix = path.suffix.lower()
    if up is None:
        up = "y" if suffix in (".glb", ".gltf") or (suffix == ".obj" and obj_is_y_up(path)) else "z"
    if up not in ("y", "z"):
        raise InputError(f"unknown up axis {up!r}: use 'y' or 'z'")
    try:
        loaded = trimesh.load(path, process=False)
    except Exception as e:  # trimesh raises many types for unreadable files
        raise InputError(f"cannot read mesh {path} ({type(e).__name__}: {e}); use an OBJ, PLY or GLB file") from None
    if isinstance(loaded, trimesh.Scene):
        loaded = _flatten(loaded)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError(f"{path} holds no triangles: give a mesh file (a point cloud cannot be rendered)")
    mesh = loaded
    if texture is not None or (suffix == ".obj" and _has_uv(mesh) and not _obj_has_mtllib(path)):
        image_path = Path(texture) if texture is not None else _sibling_texture(path)
        if image_path is not None:
            if not _has_uv(mesh):
                raise InputError(f"{path} has no UV coordinates, so texture {image_path} cannot be applied")
            from PIL import Image

            with Image.open(image_path) as im:
                image = im.convert("RGB")
            # White diffuse: trimesh's default (0.4 grey) would darken the texture in MTL / glTF viewers.
            material = trimesh.visual.material.SimpleMaterial(image=image, diffuse=[255, 255, 255, 255])
            mesh.visual = trimesh.visual.TextureVisuals(uv=mesh.visual.uv, material=material)
    if up == "y":
        mesh.apply_transform(Y_UP_TO_Z_UP)
    return mesh


def _flatten(scene: trimesh.Scene) -> trimesh.Trimesh | None:
    """One mesh with every node's transform applied. Textured parts keep their textures when all parts are
    textured (trimesh packs them); mixed with coloured parts, textures are sampled to vertex colours
    (concatenating mixed visuals would drop every colour)."""
    parts = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not parts:
        return None
    textured = [isinstance(g.visual, trimesh.visual.TextureVisuals) for g in parts]
    if len(parts) > 1 and any(textured) and not all(textured):
        for g in parts:
            if isinstance(g.visual, trimesh.visual.TextureVisuals):
                g.visual = g.visual.to_color()
            elif g.visual.kind is None:  # uncoloured: grey, like the renderer shows it
                g.visual.vertex_colors = np.tile(np.append(GREY * 255, 255).astype(np.uint8), (len(g.vertices), 1))
            else:  # face colours -> vertex colours, so every part has the same kind of colour
                g.visual = trimesh.visual.ColorVisuals(g, vertex_colors=g.visual.vertex_colors)
    return scene.to_mesh()


def _has_uv(mesh: trimesh.Trimesh) -> bool:
    return isinstance(mesh.visual, trimesh.visual.TextureVisuals) and mesh.visual.uv is not None and len(mesh.visual.uv) > 0


def _obj_has_mtllib(path: Path) -> bool:
    with open(path, "r", errors="ignore") as f:
        return any(line.startswith("mtllib") for line in f)


def _sibling_texture(path: Path) -> Path | None:
    prefix = path.stem.replace("-", "_").split("_")[0].lower()
    found = [p for p in sorted(path.parent.iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.lower().startswith(prefix)]
    return found[0] if len(found) == 1 else None


def normalize_mesh(mesh: trimesh.Trimesh, size: float = 1.0) -> trimesh.Trimesh:
    """A copy centred on its bounding-box centre with the longest bounding-box side scaled to ``size``.

    The ground-truth convention of this project (and of SyncDreamer's evaluation): ``size=1`` puts the object
    inside [-0.5, 0.5]^3, i.e. within a bounding sphere of radius <= 0.87, which a camera at radius 2 with
    a 49.1 deg field of view sees whole (its half-width at the origin is 0.91).
    """
    lo, hi = mesh.bounds
    extent = float(np.max(hi - lo))
    if extent <= 0:
        raise InputError("cannot normalise a mesh with an empty bounding box")
    out = mesh.copy()
    out.apply_translation(-(lo + hi) / 2.0)
    out.apply_scale(size / extent)
    return out


# ----------------------------------------------------------------------------------------------- colours


def texture_image(visual) -> tuple[np.ndarray | None, np.ndarray]:
    """(texture [Ht, Wt, 3] float32 or None, colour factor [3]) of a TextureVisuals' material."""
    material = visual.material
    image = getattr(material, "image", None)
    factor = np.ones(3, dtype=np.float32)
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image = material.baseColorTexture
        if material.baseColorFactor is not None:
            factor = np.asarray(material.baseColorFactor[:3], dtype=np.float32) / 255.0
    elif image is None and getattr(material, "diffuse", None) is not None:
        factor = np.asarray(material.diffuse[:3], dtype=np.float32) / 255.0
    if image is None:
        return None, factor
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0, factor


def _sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around; uv [N, 2] with v up (OBJ/glTF as trimesh loads them) -> [N, 3]."""
    h, w = image.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1, y0, y1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def surface_colors(mesh: trimesh.Trimesh, face_ids: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Colour [N, 3] in [0, 1] at points given by face ids [N] and barycentric weights [N, 3]."""
    visual = mesh.visual
    corners = mesh.faces[face_ids]  # [N, 3] vertex ids
    if isinstance(visual, trimesh.visual.TextureVisuals):
        image, factor = texture_image(visual)
        if image is not None and visual.uv is not None:
            uv = np.einsum("nk,nkc->nc", bary, np.asarray(visual.uv, dtype=np.float64)[corners])
            return _sample_texture(image, uv) * factor
        return np.broadcast_to(factor, (len(face_ids), 3)).astype(np.float32)
    if visual.kind == "vertex":
        colors = np.asarray(visual.vertex_colors[:, :3], dtype=np.float32) / 255.0
        return np.einsum("nk,nkc->nc", bary, colors[corners]).astype(np.float32)
    if visual.kind == "face":
        return np.asarray(visual.face_colors[face_ids, :3], dtype=np.float32) / 255.0
    return np.broadcast_to(GREY, (len(face_ids), 3)).astype(np.float32)
