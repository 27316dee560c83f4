"""What cameras above the object never see, taken off the carved hull before training.

Cameras above an object (a ring at 20 deg, or views generated around an input photo) never see its
down-facing surfaces: there the hull follows the silhouette rays' tangent planes, and no colour can move it
since no ray reaches it. Two priors replace it, both moving only unseen surface and only inwards, with
heights along the cameras' up:

- the base (below the lowest surface any camera sees face-on): a cone under a flat base relaxes to the
  smallest surface spanning what the cameras see, by gradient steps on the area of the SDF's zero level
  (mean-curvature flow). A cone with a flat rim relaxes to the flat disc. Small patches (a foot's sole) are
  left as carved: their cone is shallow, while the flow, whose rim is only known to the band's voxel or two,
  can lift them above the truth. Higher up the same flow would thin a tail or a snout, hence
- the rest (a belly between legs, under a chin): the unseen mesh vertices are re-placed by a linear solve,
  bending plus membrane energy with the seen vertices fixed around them; a solve cannot run away into thin
  parts the way a flow does.
Their measured effects are in experiments/README.md.
"""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from ..fields.grid import DenseGrid
from ..mesh.io import raycasting_scene

SEEN_COS = 0.17  # a camera sees a surface within 80 deg of face-on (cosine above this)
FACE_ON_COS = 0.5  # ... looks at it face-on: within 60 deg
Z_UP = torch.tensor([0.0, 0.0, 1.0])


def horizontal_axes(up: torch.Tensor) -> torch.Tensor:
    """[2, 3]: two unit axes orthogonal to ``up`` [3] and to each other (x and y for z up)."""
    up = up / up.norm()
    helper = torch.eye(3, dtype=up.dtype)[int(torch.argmin(up.abs()))]
    e1 = helper - (helper @ up) * up
    e1 = e1 / e1.norm()
    return torch.stack([e1, torch.linalg.cross(up, e1)])


def camera_facing_cos(positions: torch.Tensor, normals: torch.Tensor, cameras: torch.Tensor,
                      chunk: int = 1 << 16) -> torch.Tensor:
    """[N]: the largest cosine between each unit normal [N, 3] and the direction from its position [N, 3] to
    any camera [C, 3] (occlusion ignored): ~0 on the hull's tangent cones, ~1 on a face a camera looks at."""
    best = torch.empty(len(positions), dtype=normals.dtype, device=normals.device)
    cameras = cameras.to(normals)
    for s in range(0, len(positions), chunk):
        to_cam = cameras[None] - positions[s:s + chunk, None].to(normals)  # [n, C, 3]
        cos = (normals[s:s + chunk, None] * to_cam).sum(-1) / to_cam.norm(dim=-1).clamp_min(1e-9)
        best[s:s + chunk] = cos.amax(dim=1)
    return best


def facing_cameras(grid: DenseGrid, cameras: torch.Tensor) -> torch.Tensor:
    """:func:`camera_facing_cos` per grid vertex [R^3], with the SDF's gradient as the normal."""
    r, h = grid.resolution, grid.voxel_size
    v = grid.values.detach()[:, 0].reshape(r, r, r)
    normal = torch.stack(torch.gradient(v, spacing=[float(s) for s in h]), dim=-1).reshape(-1, 3)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return camera_facing_cos(grid.vertex_positions(), normal, cameras, chunk=1 << 18)


@torch.no_grad()
def unseen_base(grid: DenseGrid, cameras: torch.Tensor, seen_cos: float = SEEN_COS,
                face_on_cos: float = FACE_ON_COS, min_size: float = 0.0, up: torch.Tensor = Z_UP) -> torch.Tensor:
    """Vertices [R^3] bool that may move: below the lowest surface vertex some camera sees face-on (normal
    within 60 deg of its direction: cosine >= ``face_on_cos``), except surface vertices some camera sees at
    all (cosine > ``seen_cos``, 80 deg). Deeper vertices move freely (their normals, which point to the
    nearest surface, are undefined on the distance field's ridges). Patches narrower than ``min_size`` x the
    grid box's longest side stay fixed (see the module docstring): a patch is a connected part of the free
    vertices in the area term's band (|sdf| < 5 voxels), its width the horizontal diagonal of its inside part.
    Heights are along ``up`` [3]."""
    voxel = float(grid.voxel_size.max())
    sdf = grid.values[:, 0]
    cos = facing_cameras(grid, cameras)
    positions = grid.vertex_positions().to(sdf)
    surface = sdf.abs() < 1.5 * voxel
    face_on = surface & (cos >= face_on_cos)
    if not face_on.any():
        return torch.zeros_like(face_on)
    up = up.to(positions)
    height = positions @ up
    free = (height < height[face_on].min()) & ~(surface & (cos > seen_cos))
    if min_size > 0:
        box = float((grid.aabb_max - grid.aabb_min).max())
        flat = positions @ horizontal_axes(up).T  # [R^3, 2] coordinates across the up axis
        free &= ~narrow_patches(free & (sdf.abs() < 5.0 * voxel), sdf < 0, flat, grid.resolution,
                                min_size * box)
    return free


def narrow_patches(mask: torch.Tensor, inside: torch.Tensor, flat: torch.Tensor, resolution: int,
                   min_width: float) -> torch.Tensor:
    """[R^3] bool: the vertices of ``mask`` [R^3] (26-connected components on the grid) whose component is
    narrower than ``min_width``: the diagonal of the bounding box of the horizontal coordinates ``flat``
    [R^3, 2] of its vertices that are ``inside`` [R^3] (a component with none counts as narrow)."""
    import scipy.ndimage as ndi

    r = resolution
    labels, n = ndi.label(mask.reshape(r, r, r).cpu().numpy(), structure=np.ones((3, 3, 3)))
    if n == 0:
        return torch.zeros_like(mask)
    labels = labels.reshape(-1)
    index = np.arange(1, n + 1)
    measured = np.where(inside.cpu().numpy(), labels, 0)
    xy = flat.cpu().numpy()
    lo = np.stack([ndi.minimum(xy[:, k], measured, index) for k in (0, 1)], 1)
    hi = np.stack([ndi.maximum(xy[:, k], measured, index) for k in (0, 1)], 1)
    width = np.where(np.isin(index, measured), np.linalg.norm(hi - lo, axis=1), 0.0)
    narrow = np.concatenate([[False], width < min_width])
    return torch.from_numpy(narrow[labels]).to(mask.device)


def relax_unseen_base(grid: DenseGrid, cameras: torch.Tensor, steps: int, step_voxels: float = 0.3,
                      min_size: float = 0.0, up: torch.Tensor = Z_UP) -> int:
    """Mean-curvature flow of the unseen base of the SDF in ``grid`` (in place, inwards only); returns the
    number of vertices free to move. Adam on the area with ``step_voxels`` x voxel steps, the set of free
    vertices fixed at the start (recomputing it would let the flow climb the seen sides); patches narrower
    than ``min_size`` (:func:`unseen_base`) stay as they are."""
    free = unseen_base(grid, cameras, min_size=min_size, up=up)
    if steps <= 0 or not free.any():
        return int(free.sum())
    voxel = float(grid.voxel_size.max())
    start = grid.values.detach().clone()
    work = DenseGrid(grid.resolution, 1, grid.aabb_min, grid.aabb_max, start)  # a trainable copy
    optimizer = torch.optim.Adam([work.values], lr=step_voxels * voxel)
    for _ in range(steps):
        area = work.zero_level_area(voxel)
        if area is None:
            break
        optimizer.zero_grad(set_to_none=True)
        area.backward()
        work.values.grad[~free] = 0.0
        optimizer.step()
        with torch.no_grad():
            work.values.copy_(torch.maximum(work.values, start))  # inwards only: never outside the hull
    with torch.no_grad():
        grid.values.copy_(work.values.detach())
    return int(free.sum())


# -- the rest of the unseen surface: a thin-plate fill ---------------------------------------------------------
def thin_plate_fill(mesh: trimesh.Trimesh, free: np.ndarray, tension: float = 0.0) -> np.ndarray:
    """New positions [V, 3] with the ``free`` vertices on the surface the fixed ones bound that minimises
    bending plus ``tension`` x membrane energy: (L^2 + tension L) x = 0 on the free vertices, L the umbrella
    (uniform) Laplacian. Through the two rings of fixed neighbours L^2 reaches, pure bending (tension 0)
    matches the fixed surface's tangent planes (C1): a dented sphere cap comes back round. Tension is relative
    to the edge length: at 1 a hole a few tens of edges wide is mostly membrane (a flatter, tighter span)."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    neighbour_mean = trimesh.smoothing.laplacian_calculation(mesh, equal_weight=True)  # each row: 1 / degree
    laplacian = sp.identity(len(mesh.vertices), format="csr") - neighbour_mean.tocsr()
    bilaplacian = (laplacian @ laplacian + tension * laplacian).tocsr()
    f, b = np.nonzero(free)[0], np.nonzero(~free)[0]
    x = np.asarray(mesh.vertices, dtype=np.float64).copy()
    if len(f) == 0 or len(b) == 0:
        return x
    a_ff = bilaplacian[f][:, f]
    rhs = -(bilaplacian[f][:, b] @ x[b])
    eps = 1e-8  # a free island with no fixed vertex stays put instead of making the system singular
    x[f] = spsolve((a_ff + eps * sp.identity(len(f))).tocsc(), rhs + eps * x[f])
    return x


@torch.no_grad()
def fill_unseen(grid: DenseGrid, cameras: torch.Tensor, seen_cos: float = SEEN_COS,
                face_on_cos: float = FACE_ON_COS, tension: float = 1.0, up: torch.Tensor = Z_UP) -> int:
    """Replace the surface of the SDF in ``grid`` that no camera [C, 3] sees (above the base, which
    :func:`relax_unseen_base` flattens) by :func:`thin_plate_fill` of the seen surface around it, inwards
    only; returns the number of mesh vertices moved.

    On the zero level's mesh (marching cubes at the grid's resolution), vertices whose normal no camera sees
    within 80 deg of grazing (``seen_cos``, occlusion ignored) are free. The SDF is then recomputed exactly
    (open3d) at the grid vertices near the moved ones, and kept where the old value was larger: the result
    never leaves the hull. Heights are along ``up`` [3]; its effect on the benchmark hulls is in
    experiments/README.md."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    from ..mesh.meshing import clean_mesh, marching_cubes

    r = grid.resolution
    lo, hi = grid.aabb_min.cpu().numpy(), grid.aabb_max.cpu().numpy()
    sdf = grid.values[:, 0]
    values = sdf.reshape(r, r, r).cpu().numpy()
    if values.min() >= 0 or values.max() <= 0:
        return 0
    verts, faces = marching_cubes(values, lo, hi, 0.0, inside="below")
    mesh = clean_mesh(trimesh.Trimesh(verts, faces, process=False), keep_components=0)
    cos = camera_facing_cos(torch.tensor(mesh.vertices), torch.tensor(mesh.vertex_normals), cameras.cpu())
    seen, face_on = (cos > seen_cos).numpy(), (cos >= face_on_cos).numpy()
    if not face_on.any():
        return 0
    height = np.asarray(mesh.vertices) @ up.cpu().double().numpy()
    free = ~seen & (height >= height[face_on].min())  # the base is relax_unseen_base's
    filled = thin_plate_fill(mesh, free, tension)
    displacement = np.linalg.norm(filled - mesh.vertices, axis=1)
    moved = displacement > 1e-6
    if not moved.any():
        return 0
    reach = float(displacement.max()) + 3.0 * float(grid.voxel_size.max())
    points = grid.vertex_positions().cpu().numpy()
    near = np.nonzero(values.reshape(-1) < reach)[0]  # inside or near the surface: may change
    dist, _ = cKDTree(mesh.vertices[moved]).query(points[near], distance_upper_bound=reach)
    near = near[np.isfinite(dist)]
    scene = raycasting_scene(filled, mesh.faces)
    closest = scene.compute_closest_points(o3d.core.Tensor(points[near].astype(np.float32)))
    foot = closest["points"].numpy().astype(np.float64)
    normal = trimesh.Trimesh(filled, mesh.faces, process=False).face_normals[closest["primitive_ids"].numpy()]
    offset = points[near] - foot
    signed = np.linalg.norm(offset, axis=1) * np.sign((offset * normal).sum(axis=1))
    new = torch.as_tensor(signed, dtype=sdf.dtype, device=sdf.device)
    idx = torch.as_tensor(near, device=sdf.device)
    grid.values[idx, 0] = torch.maximum(sdf[idx], new)
    return int(moved.sum())
