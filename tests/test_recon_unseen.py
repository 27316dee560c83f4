"""The hull's unseen base relaxed to a minimal surface: a carved cone under a flat base flattens."""
import math

import numpy as np
import pytest
import torch
import trimesh

from img2mesh.data.cameras import ring_cameras
from img2mesh.recon.fields.grid import DenseGrid
from img2mesh.recon.start.unseen import fill_unseen, relax_unseen_base, thin_plate_fill, unseen_base

R, LO, HI = 48, [-0.5] * 3, [0.5] * 3
RIM, RADIUS, TOP = -0.2, 0.3, 0.3
TIP = RIM - RADIUS * math.tan(math.radians(20.0))  # the cone a 20-degree ring carves under a flat base


def carved_cylinder(radius: float = RADIUS, to_z_up=lambda p: p) -> DenseGrid:
    """The hull a ring at 20 deg carves around a flat-bottomed cylinder: the cylinder plus a cone below.
    Its SDF is the max of the side's, the top's and the cone's (exact inside, close enough outside).
    ``to_z_up``: the grid's points in the z-up frame the cylinder is described in (for other world frames)."""
    grid = DenseGrid(R, 1, LO, HI)
    p = to_z_up(grid.vertex_positions())
    r, z = p[:, :2].norm(dim=-1), p[:, 2]
    slope = math.radians(20.0)
    cone = (RIM - z - (radius - r) * math.tan(slope)) * math.cos(slope)
    sdf = torch.maximum(torch.maximum(r - radius, z - TOP), cone)
    with torch.no_grad():
        grid.values.copy_(sdf[:, None])
    return grid


def axis_bottom(grid: DenseGrid) -> float:
    """Height where the SDF crosses zero going up the z axis from below."""
    z = torch.linspace(-0.45, 0.0, 451)
    sdf = grid(torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], dim=-1))[:, 0].detach()
    return float(z[torch.nonzero(sdf <= 0)[0, 0]])


def cameras() -> torch.Tensor:
    return torch.tensor(np.stack([c.position for c in ring_cameras(36, 20.0)]), dtype=torch.float32)


def test_only_the_unseen_base_may_move():
    grid = carved_cylinder()
    free = unseen_base(grid, cameras())
    z = grid.vertex_positions()[:, 2]
    r = grid.vertex_positions()[:, :2].norm(dim=-1)
    assert free.any()
    assert z[free].max() < RIM  # nothing at or above the rim, where the sides are seen face-on
    cone_inside = (z < RIM - 0.03) & (r < 0.1) & (grid.values[:, 0] < 0)
    assert free[cone_inside].float().mean() > 0.85


def test_relaxing_flattens_the_cone_and_keeps_the_seen_surface():
    grid = carved_cylinder()
    before = grid.values.detach().clone()
    assert abs(axis_bottom(grid) - TIP) < 0.015
    relax_unseen_base(grid, cameras(), steps=150)
    voxel = 1.0 / (R - 1)
    assert abs(axis_bottom(grid) - RIM) < 1.2 * voxel, axis_bottom(grid)  # was 0.11 below the rim
    assert (grid.values >= before).all()  # inwards only
    z = grid.vertex_positions()[:, 2]
    assert torch.equal(grid.values[z > RIM + 0.01], before[z > RIM + 0.01])  # the seen cylinder untouched


def test_a_narrow_base_stays_as_carved():
    """A post 0.12 wide (a foot) in a unit box: its shallow cone is kept at min_size 0.25, relaxed at 0."""
    relaxed = carved_cylinder(radius=0.06)
    carved = axis_bottom(relaxed)
    assert relax_unseen_base(relaxed, cameras(), steps=150) > 0
    assert axis_bottom(relaxed) > carved + 0.005  # without the limit the flow moves its sole
    kept = carved_cylinder(radius=0.06)
    before = kept.values.detach().clone()
    free = unseen_base(kept, cameras(), min_size=0.25)
    assert not free[kept.values[:, 0].abs() < 5.0 / (R - 1)].any()  # nothing the area term reaches may move
    relax_unseen_base(kept, cameras(), steps=150, min_size=0.25)
    assert torch.equal(kept.values, before)
    wide = carved_cylinder()  # 0.6 wide: still relaxed
    relax_unseen_base(wide, cameras(), steps=150, min_size=0.25)
    assert abs(axis_bottom(wide) - RIM) < 1.2 / (R - 1)


# -- the rest of the unseen surface: the fill -----------------------------------------------------------------
def test_bending_fill_brings_a_flattened_sphere_cap_back_round():
    sphere = trimesh.creation.icosphere(subdivisions=4)
    cap = sphere.vertices[:, 2] < -0.6
    flat = sphere.vertices.copy()
    flat[cap, 2] = -0.6  # the cap cut off flat: 0.4 short at the pole
    mesh = trimesh.Trimesh(flat, sphere.faces, process=False)
    filled = thin_plate_fill(mesh, cap, tension=0.0)
    assert np.array_equal(filled[~cap], flat[~cap])  # the fixed surface stays
    assert np.abs(np.linalg.norm(filled[cap], axis=1) - 1.0).max() < 0.06  # C1 with the sphere: round again
    membrane = thin_plate_fill(mesh, cap, tension=100.0)
    assert abs(membrane[:, 2].min() + 0.6) < 0.05  # a tight membrane spans the rim flat


RB, CZ = 0.15, 0.1
SLOPE = math.radians(20.0)


def body_on_posts() -> DenseGrid:
    """A horizontal cylinder (axis y) on two posts, with the wedge a 20-degree ring carves under the
    cylinder: the tangent planes of the lowest silhouette rays, meeting 0.064 x RB below it."""
    grid = DenseGrid(R, 1, LO, HI)
    x, y, z = grid.vertex_positions().unbind(-1)
    circle = torch.sqrt(x**2 + (z - CZ) ** 2) - RB
    planes = torch.maximum(x, -x) * math.sin(SLOPE) - (z - CZ) * math.cos(SLOPE) - RB
    below_tangents = torch.maximum(planes, z - (CZ - RB * math.cos(SLOPE)))
    body = torch.maximum(torch.minimum(circle, below_tangents), y.abs() - 0.3)
    posts = torch.maximum(torch.maximum(torch.sqrt(x**2 + (y.abs() - 0.25) ** 2) - 0.05, -0.4 - z), z - CZ)
    with torch.no_grad():
        grid.values.copy_(torch.minimum(body, posts)[:, None])
    return grid


def bottom_at(grid: DenseGrid, x: float, y: float) -> float:
    z = torch.linspace(-0.3, CZ, 801)
    sdf = grid(torch.stack([torch.full_like(z, x), torch.full_like(z, y), z], dim=-1))[:, 0].detach()
    return float(z[torch.nonzero(sdf <= 0)[0, 0]])


def test_fill_lifts_the_carved_wedge_inwards_only_and_keeps_seen_surface_and_base():
    grid = body_on_posts()
    before = grid.values.detach().clone()
    apex = bottom_at(grid, 0.0, 0.0)
    assert abs(apex - (CZ - RB / math.cos(SLOPE))) < 0.01
    moved = fill_unseen(grid, cameras(), tension=1.0)
    assert moved > 0
    assert bottom_at(grid, 0.0, 0.0) > apex + 0.01  # the wedge's edge is gone
    assert (grid.values >= before).all()  # inwards only: never outside the hull
    z = grid.vertex_positions()[:, 2]
    assert torch.equal(grid.values[z > CZ], before[z > CZ])  # the seen top
    assert torch.equal(grid.values[z < -0.3], before[z < -0.3])  # the posts' base is relax_unseen_base's


def test_fill_leaves_a_base_and_an_empty_grid_alone():
    sphere = DenseGrid(R, 1, LO, HI)
    with torch.no_grad():
        sphere.values.copy_((sphere.vertex_positions().norm(dim=-1) - 0.3)[:, None])
    before = sphere.values.detach().clone()
    assert fill_unseen(sphere, cameras()) == 0  # all it hides is below its lowest face-on point: its base
    assert torch.equal(sphere.values, before)
    empty = DenseGrid(R, 1, LO, HI)
    with torch.no_grad():
        empty.values.fill_(1.0)
    assert fill_unseen(empty, cameras()) == 0


def test_the_priors_follow_the_cameras_up_in_a_y_up_world():
    """The same object and ring in a y-up world (as OBJ files are): up comes from the cameras, and the base
    and the fill move what they move in the z-up world."""
    from img2mesh.data.cameras import Camera, mean_up

    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # y-up point -> z-up point
    z_up_grid, y_up_grid = carved_cylinder(), carved_cylinder(to_z_up=lambda q: q @ rot.T)
    ring = ring_cameras(36, 20.0)
    turned = [Camera(np.block([[rot.T.numpy() @ c.c2w[:3, :3], rot.T.numpy() @ c.c2w[:3, 3:]], [np.eye(4)[3:]]]),
                     c.fov_x, c.width, c.height) for c in ring]
    up = mean_up(turned)
    assert np.allclose(up, [0.0, 1.0, 0.0]) and np.allclose(mean_up(ring), [0.0, 0.0, 1.0])
    y_cameras = torch.tensor(np.stack([c.position for c in turned]), dtype=torch.float32)
    up = torch.tensor(up, dtype=torch.float32)
    free_z, free_y = unseen_base(z_up_grid, cameras()), unseen_base(y_up_grid, y_cameras, up=up)
    assert abs(int(free_y.sum()) - int(free_z.sum())) <= 0.01 * int(free_z.sum())
    relax_unseen_base(y_up_grid, y_cameras, steps=150, up=up)
    y = torch.linspace(-0.45, 0.0, 451)
    sdf = y_up_grid(torch.stack([torch.zeros_like(y), y, torch.zeros_like(y)], dim=-1))[:, 0].detach()
    assert abs(float(y[torch.nonzero(sdf <= 0)[0, 0]]) - RIM) < 1.2 / (R - 1)  # flattened at the rim, along y


@pytest.mark.parametrize("layout", ["ring at 0", "ring at 20", "ring at 40", "syncdreamer16"])
def test_the_priors_hold_for_any_camera_elevation(layout):
    """Views of a flat-bottomed cylinder from a ring at 0, 20 or 40 deg, or SyncDreamer's 16 views at 30: the
    start with the priors has its base where the cylinder's is (the carved cone under it flattened; at 0 deg
    there is no cone and nothing to change), and is never further from the truth than the hull alone."""
    from img2mesh.data.cameras import camera_layout
    from img2mesh.recon.config import InitConfig
    from img2mesh.recon.mesh.raycast import render_views
    from img2mesh.recon.start.prepare import prepare_start

    cylinder = trimesh.creation.cylinder(radius=0.3, height=0.5, sections=64)  # base at z = -0.25
    cams = (camera_layout("syncdreamer16", size=64) if layout == "syncdreamer16"
            else ring_cameras(24, float(layout.split()[-1]), size=64))
    views = render_views(cylinder, cams, smooth=False)

    def bottom_and_error(cfg):
        start = prepare_start(cfg, views, resolution=48)
        grid = DenseGrid(48, 1, *start.box, start.initial_sdf[:, None], trainable=False)
        z = torch.linspace(-0.45, 0.0, 451)
        axis = grid(torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], dim=-1))[:, 0]
        bottom = float(z[torch.nonzero(axis <= 0)[0, 0]])
        pts = grid.vertex_positions()
        near = grid.values[:, 0].abs() < 0.01  # points on the start's surface
        d = torch.stack([pts[near, :2].norm(dim=-1) - 0.3, pts[near, 2].abs() - 0.25], dim=-1)
        truth = (d.amax(dim=-1).clamp(max=0) + d.clamp(min=0).norm(dim=-1)).abs()  # the cylinder's own distance
        return bottom, float(truth.mean()), float(start.box[1][0] - start.box[0][0]) / 47

    with_priors = bottom_and_error(InitConfig(hull_resolution=64, unseen_fill=True))
    without = bottom_and_error(InitConfig(hull_resolution=64, base_relax_steps=0, unseen_fill=False))
    voxel = without[2]
    assert abs(with_priors[0] + 0.25) < 1.5 * voxel, (with_priors, without)
    assert with_priors[1] <= without[1] + 0.1 * voxel, (with_priors, without)
