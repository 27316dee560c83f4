"""UV unwrapping (xatlas) and a base-colour texture baked from a colour function.

    uv_mesh = unwrap(mesh, size=1024)                            # vertices split at chart seams, uv in [0, 1]
    image = bake_texture(uv_mesh, field.vertex_color, size=1024)  # [size, size, 3] uint8
    textured = textured_mesh(uv_mesh, image)                      # TextureVisuals + PBR material

Texture convention (trimesh's, OBJ's and glTF's as trimesh loads them): uv (0, 0) is the image's bottom-left
corner, so texel (row y, column x) has its centre at u = (x + 0.5) / W, v = 1 - (y + 0.5) / H, as
``io._sample_texture`` reads it. Texels no triangle covers take the colour of the nearest covered texel, so
bilinear filtering and mipmaps at chart borders never pull in the empty background.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import trimesh
from PIL import Image

from .meshing import evaluate_in_chunks

ColorFn = Callable[[torch.Tensor], torch.Tensor]  # points [N, 3] -> colours [N, 3] in [0, 1]
PADDING = 2  # xatlas gutter between charts, in atlas texels: room for bilinear filtering at chart borders
PIECE_FACES = 1000  # faces per piece the unwrapper charts at once (see unwrap)


def unwrap(mesh: trimesh.Trimesh, size: int = 1024, piece_faces: int | None = None) -> trimesh.Trimesh:
    """The mesh with a UV atlas from xatlas: vertices split where charts meet, ``visual.uv`` [V', 2] in [0, 1].

    ``size`` is the texture the atlas is packed for (xatlas picks the texel density that roughly fills it).
    xatlas's chart search grows much faster than linearly with the faces of one mesh, so the mesh goes in as
    spatially compact pieces of at most ``piece_faces`` faces (None: PIECE_FACES; 0: whole), charted separately
    and packed into one atlas; a cut between pieces is one more seam."""
    import xatlas

    assert len(mesh.faces), "cannot unwrap a mesh without faces"
    piece_faces = PIECE_FACES if piece_faces is None else piece_faces
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    atlas = xatlas.Atlas()
    pieces = compact_pieces(vertices[faces].mean(axis=1), piece_faces) if piece_faces else [np.arange(len(faces))]
    local = []
    for ids in pieces:
        used, piece_faces_local = np.unique(faces[ids], return_inverse=True)
        local.append(used)
        atlas.add_mesh(np.ascontiguousarray(vertices[used], dtype=np.float32),
                       np.ascontiguousarray(piece_faces_local.reshape(-1, 3), dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.padding, pack.resolution, pack.bilinear, pack.blockAlign = PADDING, int(size), True, True
    atlas.generate(pack_options=pack)
    out_vertices, out_faces, out_uv, offset = [], [], [], 0
    for i, used in enumerate(local):
        vmapping, piece_faces_uv, uv = atlas[i]  # uv already normalised by the atlas's width and height
        out_vertices.append(vertices[used[vmapping]])
        out_faces.append(piece_faces_uv.astype(np.int64) + offset)
        out_uv.append(uv)
        offset += len(vmapping)
    out = trimesh.Trimesh(np.concatenate(out_vertices), np.concatenate(out_faces), process=False)
    out.visual = trimesh.visual.TextureVisuals(uv=np.clip(np.concatenate(out_uv).astype(np.float64), 0.0, 1.0))
    return out


def compact_pieces(centroids: np.ndarray, max_faces: int) -> list[np.ndarray]:
    """Face ids split into groups of at most ``max_faces`` by halving at the median of the longest side of
    each group's bounding box (a k-d tree's leaves: compact pieces with short cuts)."""
    pieces, todo = [], [np.arange(len(centroids))]
    while todo:
        ids = todo.pop()
        if len(ids) <= max_faces:
            pieces.append(ids)
            continue
        points = centroids[ids]
        axis = int(np.argmax(points.max(axis=0) - points.min(axis=0)))
        order = np.argsort(points[:, axis], kind="stable")
        half = len(ids) // 2
        todo += [ids[order[:half]], ids[order[half:]]]
    return pieces


def rasterize_uv(uv: np.ndarray, faces: np.ndarray, size: int, max_candidates: int = 1 << 22
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre of a ``size`` x ``size`` texture, and where.

    uv [V, 2], faces [F, 3] -> (rows [n], cols [n], face ids [n], barycentric weights [n, 3]) for the n covered
    texels, each texel once (one on an edge shared by two triangles goes to one of them). Triangles are processed in groups
    whose bounding boxes hold at most ``max_candidates`` texels (bounds memory)."""
    tri = np.asarray(uv, dtype=np.float64)[faces] * size  # [F, 3, 2] in texel units, x right
    tri[..., 1] = size - tri[..., 1]  # y down (image rows)
    lo = np.clip(np.ceil(tri.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)  # first texel centre inside the box
    hi = np.clip(np.floor(tri.max(axis=1) - 0.5), -1, size - 1).astype(np.int64)
    extent = np.maximum(hi - lo + 1, 0)  # [F, 2] texels per side of each box
    counts = extent[:, 0] * extent[:, 1]
    # Barycentrics from 2D cross products: p = a + w1 (b - a) + w2 (c - a); a small tolerance keeps texels on
    # a shared edge from being lost to rounding.
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])  # [F], 2x signed
    rows, cols, ids, weights = [], [], [], []
    cum = np.cumsum(counts)
    start = 0
    while start < len(faces):
        before = cum[start - 1] if start else 0
        end = max(int(np.searchsorted(cum, before + max_candidates, side="right")), start + 1)
        sel = np.arange(start, end)
        start = end
        sel = sel[(counts[sel] > 0) & (np.abs(area[sel]) > 1e-12)]
        if not len(sel):
            continue
        f = np.repeat(sel, counts[sel])  # [m] candidate texels, grouped by face
        k = np.arange(len(f)) - np.repeat(np.cumsum(counts[sel]) - counts[sel], counts[sel])
        x = lo[f, 0] + k % extent[f, 0]
        y = lo[f, 1] + k // extent[f, 0]
        px, py = x + 0.5, y + 0.5
        w1 = ((px - a[f, 0]) * (c[f, 1] - a[f, 1]) - (py - a[f, 1]) * (c[f, 0] - a[f, 0])) / area[f]
        w2 = ((b[f, 0] - a[f, 0]) * (py - a[f, 1]) - (b[f, 1] - a[f, 1]) * (px - a[f, 0])) / area[f]
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        rows.append(y[inside]), cols.append(x[inside]), ids.append(f[inside])
        weights.append(np.clip(np.stack([w0, w1, w2], axis=1)[inside], 0.0, 1.0))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros((0, 3))
    rows, cols, ids, bary = np.concatenate(rows), np.concatenate(cols), np.concatenate(ids), np.concatenate(weights)
    _, first = np.unique(rows * size + cols, return_index=True)  # a texel on a shared edge: its first triangle
    return rows[first], cols[first], ids[first], bary[first] / bary[first].sum(axis=1, keepdims=True)


def fill_empty(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Every texel outside ``covered`` [H, W] takes the colour of the nearest covered texel (an unbounded
    dilation: gutters, and the space between charts that mipmaps average in)."""
    from scipy.ndimage import distance_transform_edt

    if covered.all() or not covered.any():
        return image
    _, (iy, ix) = distance_transform_edt(~covered, return_indices=True)
    return image[iy, ix]


def bake_texture(uv_mesh: trimesh.Trimesh, color_fn: ColorFn, size: int = 1024, *, chunk: int = 65536,
                 device="cpu") -> np.ndarray:
    """Base colour [size, size, 3] uint8: ``color_fn`` at the surface point of every covered texel (the mesh's
    points, in the coordinates ``color_fn`` expects), empty texels filled from their nearest covered ones."""
    assert isinstance(uv_mesh.visual, trimesh.visual.TextureVisuals) and uv_mesh.visual.uv is not None, \
        "bake_texture needs a mesh with UVs (see unwrap)"
    faces = np.asarray(uv_mesh.faces)
    rows, cols, face_ids, bary = rasterize_uv(uv_mesh.visual.uv, faces, size)
    points = np.einsum("nk,nkc->nc", bary, np.asarray(uv_mesh.vertices)[faces[face_ids]])  # [n, 3]
    image = np.zeros((size, size, 3), dtype=np.float32)
    covered = np.zeros((size, size), dtype=bool)
    if len(points):
        colors = evaluate_in_chunks(color_fn, torch.as_tensor(points, dtype=torch.float32, device=device), chunk)
        colors = colors.float().cpu().numpy()
        assert colors.shape == (len(points), 3), f"color_fn must return [N, 3], got {colors.shape}"
        image[rows, cols] = np.clip(colors, 0.0, 1.0)
        covered[rows, cols] = True
    image = fill_empty(image, covered)
    return (image * 255.0 + 0.5).astype(np.uint8)


def textured_mesh(uv_mesh: trimesh.Trimesh, image: np.ndarray) -> trimesh.Trimesh:
    """``uv_mesh`` with a PBR material whose base colour is ``image``: white factor (viewers multiply the
    texture by it), not metallic (glTF's default of 1 shows a dark mirror), fully rough (no baked lighting
    to reflect)."""
    material = trimesh.visual.material.PBRMaterial(
        name="albedo", baseColorTexture=Image.fromarray(image), baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0, roughnessFactor=1.0)
    out = uv_mesh.copy()
    out.visual = trimesh.visual.TextureVisuals(uv=uv_mesh.visual.uv, material=material)
    return out
