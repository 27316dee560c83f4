"""Fields -> clean triangle meshes: chunked grid evaluation, marching cubes (PyMCubes), clean-up, colours.

Grid convention (used by every grid in img2mesh.recon): ``resolution`` nodes per axis placed with
``linspace(bounds_min, bounds_max, resolution)`` (both ends included), the array indexed ``[ix, iy, iz]``.
Marching cubes returns node-index coordinates, so a vertex at index ``i`` sits at
``bounds_min + i * (bounds_max - bounds_min) / (resolution - 1)``.

Which side is inside: an SDF is inside *below* the level (negative inside, level 0); a density is inside
*above* its threshold. ``inside='auto'`` decides from the grid's boundary: the boundary is outside, so if
most boundary values are above the level the field is an SDF. Faces always wind outwards (positive volume).
The grid is padded by one node of "outside" so surfaces cut by the bounds still close.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import trimesh

from img2mesh.data.errors import InputError
from img2mesh.data.progress import progress

QueryFn = Callable[[torch.Tensor], torch.Tensor]  # points [N, 3] -> values [N] (or colours [N, 3])


def evaluate_in_chunks(fn: QueryFn, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """``fn`` over ``points`` [N, 3] in chunks, without autograd (a colour function that needs normals wraps
    itself in ``torch.enable_grad()``); results concatenated along dim 0, detached."""
    assert points.ndim == 2 and points.shape[1] == 3, f"points must be [N, 3], got {tuple(points.shape)}"
    outs = []
    with torch.no_grad():
        for start in range(0, points.shape[0], chunk):
            outs.append(fn(points[start : start + chunk]).detach())
    return torch.cat(outs, dim=0) if outs else points.new_zeros((0,))


def _axes(bounds_min, bounds_max, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo = np.broadcast_to(np.asarray(bounds_min, dtype=np.float64), (3,)).copy()
    hi = np.broadcast_to(np.asarray(bounds_max, dtype=np.float64), (3,)).copy()
    assert np.all(hi > lo), f"bounds_max {hi} must exceed bounds_min {lo}"
    assert resolution >= 2, f"resolution must be >= 2, got {resolution}"
    return lo, hi, (hi - lo) / (resolution - 1)


def grid_points(bounds_min, bounds_max, resolution: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """All grid nodes [R^3, 3], ordered like ``values.reshape(-1)`` of an ``[ix, iy, iz]`` grid."""
    lo, _, spacing = _axes(bounds_min, bounds_max, resolution)
    idx = torch.arange(resolution, device=device, dtype=torch.float64)
    axes = [lo[k] + idx * spacing[k] for k in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3).to(dtype)


def evaluate_grid(query_fn: QueryFn, bounds_min, bounds_max, resolution: int, *, chunk: int = 65536,
                  device="cpu") -> np.ndarray:
    """``query_fn`` on every grid node -> float32 [R, R, R]; nodes are generated chunk by chunk, so a 512^3
    grid never holds all its points at once."""
    lo, _, spacing = _axes(bounds_min, bounds_max, resolution)
    r = resolution
    lo_t = torch.as_tensor(lo, device=device, dtype=torch.float64)
    sp_t = torch.as_tensor(spacing, device=device, dtype=torch.float64)
    out = np.empty(r**3, dtype=np.float32)
    with torch.no_grad():
        for start in progress(range(0, r**3, chunk), desc="mesh grid"):
            flat = torch.arange(start, min(start + chunk, r**3), device=device)
            ijk = torch.stack([flat // (r * r), (flat // r) % r, flat % r], dim=-1)  # [n, 3]
            points = (lo_t + ijk.to(torch.float64) * sp_t).to(torch.float32)
            values = query_fn(points).detach().reshape(-1)
            assert values.shape[0] == points.shape[0], f"query_fn gave {values.shape[0]} values for {points.shape[0]} points"
            out[start : start + len(flat)] = values.float().cpu().numpy()
    return out.reshape(r, r, r)


def resolve_inside(values: np.ndarray, level: float, inside: str = "auto") -> str:
    """'below' (SDF) or 'above' (density): which side of ``level`` is the object (see the module docstring)."""
    if inside in ("below", "above"):
        return inside
    assert inside == "auto", f"inside must be 'below', 'above' or 'auto', got {inside!r}"
    boundary = np.concatenate([values[[0, -1]].ravel(), values[:, [0, -1]].ravel(), values[:, :, [0, -1]].ravel()])
    return "below" if np.mean(boundary > level) >= 0.5 else "above"


def marching_cubes(values: np.ndarray, bounds_min, bounds_max, level: float, inside: str = "auto"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes at ``level`` -> world vertices [V, 3] float64, outward faces [F, 3] int64.

    Raises InputError when the grid has no surface at ``level``."""
    import mcubes

    assert values.ndim == 3, f"values must be a [X, Y, Z] grid, got {values.shape}"
    res = values.shape[0]
    assert values.shape == (res, res, res), f"grid must be cubic, got {values.shape}"
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() >= level or finite.max() <= level:
        if finite.size == 0 or finite.min() == finite.max():
            raise InputError(f"field is empty at level {level:.4g}: the field holds "
                             + ("no finite value" if finite.size == 0 else f"the one value {finite.min():.4g}")
                             + ", no threshold makes a surface of it (the trained field is blank)")
        lo, hi = float(finite.min()), float(finite.max())
        # a level strictly between the field's extremes always crosses it: the 99th percentile (a thin shell
        # around the densest or most inside part) unless that sits on an extreme, else the middle
        suggestion = float(np.quantile(finite, 0.99))
        if not lo < float(f"{suggestion:.4g}") < hi:
            suggestion = (lo + hi) / 2.0
        raise InputError(f"field is empty at level {level:.4g}: try export.mesh.threshold={suggestion:.4g} "
                         f"(field values range from {lo:.4g} to {hi:.4g})")
    side = resolve_inside(values, level, inside)
    # PyMCubes winds faces outwards when the inside is above the level: mesh (sign * values) at sign * level.
    sign = 1.0 if side == "above" else -1.0
    field = np.nan_to_num(sign * values, nan=sign * level - 1.0, posinf=1e30, neginf=-1e30)
    # Close surfaces cut by the bounds: a far-outside pad puts the closing vertices on the boundary nodes.
    outside = sign * level - 1e6 * (1.0 + float(np.abs(field).max()))
    field = np.pad(field, 1, mode="constant", constant_values=outside)
    verts, faces = mcubes.marching_cubes(field, sign * level)
    lo, _, spacing = _axes(bounds_min, bounds_max, res)
    verts = lo + (verts - 1.0) * spacing  # undo the padding, index -> world
    return verts, faces.astype(np.int64)


def clean_mesh(mesh: trimesh.Trimesh, keep_components: int = 1) -> trimesh.Trimesh:
    """Merge duplicate vertices, drop degenerate and duplicate faces, keep the ``keep_components`` largest
    connected components by face count (0 keeps all)."""
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)  # merges duplicate vertices
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    if keep_components > 0 and len(mesh.faces):
        labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
        counts = np.bincount(labels)
        if len(counts) > keep_components:
            keep = np.argsort(-counts, kind="stable")[:keep_components]
            mesh.update_faces(np.isin(labels, keep))
            mesh.remove_unreferenced_vertices()
    return mesh


def decimate(mesh: trimesh.Trimesh, target_faces: int) -> trimesh.Trimesh:
    """Quadric decimation to about ``target_faces`` faces (fast-simplification; 0 or more than the mesh has:
    the mesh itself). The geometry only: colours are queried again on the result."""
    if target_faces <= 0 or len(mesh.faces) <= target_faces:
        return mesh
    import fast_simplification

    vertices, faces = fast_simplification.simplify(np.asarray(mesh.vertices, dtype=np.float64),
                                                   np.asarray(mesh.faces, dtype=np.int64), target_count=int(target_faces))
    return trimesh.Trimesh(vertices, faces, process=True)


def mesh_from_grid(
    values: np.ndarray,
    bounds_min,
    bounds_max,
    level: float,
    *,
    inside: str = "auto",
    keep_components: int = 1,
    smooth_iters: int = 0,
    color_fn: QueryFn | None = None,
    chunk: int = 65536,
    device="cpu",
) -> trimesh.Trimesh:
    """A clean mesh from a precomputed grid (see :func:`extract_mesh` for the steps)."""
    verts, faces = marching_cubes(values, bounds_min, bounds_max, level, inside)
    mesh = clean_mesh(trimesh.Trimesh(verts, faces, process=False), keep_components)
    if smooth_iters > 0:
        trimesh.smoothing.filter_taubin(mesh, iterations=int(smooth_iters))  # volume-preserving, in place
    if color_fn is not None:
        color_vertices(mesh, color_fn, chunk, device)
    return mesh


def color_vertices(mesh: trimesh.Trimesh, color_fn: QueryFn, chunk: int = 65536, device="cpu") -> trimesh.Trimesh:
    """Set ``mesh``'s vertex colours (in place) to ``color_fn(vertices [V, 3]) -> [V, 3]`` in [0, 1]."""
    if len(mesh.vertices):
        points = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
        colors = evaluate_in_chunks(color_fn, points, chunk).float().cpu().numpy()  # [V, 3] in [0, 1]
        assert colors.shape == (len(mesh.vertices), 3), f"color_fn must return [N, 3], got {colors.shape}"
        rgba = np.concatenate([np.clip(colors, 0, 1) * 255 + 0.5, np.full((len(colors), 1), 255.0)], axis=1)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba.astype(np.uint8))
    return mesh


def extract_mesh(
    query_fn: QueryFn,
    bounds_min,
    bounds_max,
    resolution: int,
    level: float,
    *,
    chunk: int = 65536,
    color_fn: QueryFn | None = None,
    keep_components: int = 1,
    smooth_iters: int = 0,
    inside: str = "auto",
    device="cpu",
) -> trimesh.Trimesh:
    """Mesh the ``level`` set of a field.

    1. ``query_fn(points [N, 3] on device) -> [N]`` on a ``resolution``^3 grid over the bounds, in chunks;
    2. marching cubes (PyMCubes) at ``level``: an SDF at 0 (inside negative), a density at its threshold;
       ``inside`` says which side is the object ('auto': decided from the grid boundary);
    3. clean-up: duplicate vertices merged, degenerate / duplicate faces removed, the ``keep_components``
       largest components kept (0: all);
    4. optional Taubin smoothing (``smooth_iters``; decimation is the exported asset's, recon/mesh/asset.py);
    5. vertex colours from ``color_fn(points [N, 3]) -> [N, 3]`` in [0, 1], if given.
    Raises InputError "field is empty at level X: try export.mesh.threshold=..." when there is no surface.
    """
    values = evaluate_grid(query_fn, bounds_min, bounds_max, resolution, chunk=chunk, device=device)
    return mesh_from_grid(values, bounds_min, bounds_max, level, inside=inside, keep_components=keep_components,
                          smooth_iters=smooth_iters, color_fn=color_fn, chunk=chunk, device=device)
