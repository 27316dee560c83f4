"""Meshing: world placement of marching cubes, which side is inside, clean-up, colours, errors."""
import numpy as np
import pytest
import torch

from img2mesh.data.errors import InputError
from img2mesh.recon.mesh import MeshConfig
from img2mesh.recon.mesh.meshing import (color_vertices, decimate, evaluate_grid, evaluate_in_chunks, extract_mesh,
                                         grid_points)


def sphere_sdf(centre=(0.0, 0.0, 0.0), radius=0.5):
    c = torch.tensor(centre)
    return lambda p: (p - c).norm(dim=-1) - radius


def box_sdf(half):
    h = torch.tensor(half)

    def sdf(p):
        q = p.abs() - h
        return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)

    return sdf


def test_sphere_sdf_meshes_to_its_radius_and_centre():
    # Off-centre sphere in anisotropic bounds: checks index -> world on every axis.
    centre, lo, hi, res = (0.2, -0.1, 0.3), (-0.5, -1.0, -0.4), (1.0, 0.8, 1.2), 48
    mesh = extract_mesh(sphere_sdf(centre, 0.5), lo, hi, res, 0.0, chunk=5000)
    spacing = (np.array(hi) - np.array(lo)) / (res - 1)
    r = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.abs(r - 0.5).max() < 0.1 * spacing.max()
    assert np.allclose(mesh.vertices.mean(axis=0), centre, atol=0.01)
    assert mesh.is_watertight and mesh.volume > 0  # faces wind outwards
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.125, rel=0.02)


def test_cube_sdf_meshes_to_the_box_size():
    mesh = extract_mesh(box_sdf([0.3, 0.2, 0.4]), -0.6, 0.6, 61, 0.0)  # spacing 0.02: faces on grid planes
    assert np.allclose(mesh.bounds, [[-0.3, -0.2, -0.4], [0.3, 0.2, 0.4]], atol=1e-6)
    assert mesh.volume == pytest.approx(0.6 * 0.4 * 0.8, rel=0.02)


def test_density_field_is_inside_above_its_threshold():
    density = lambda p: 10.0 * torch.exp(-(p.norm(dim=-1) ** 2) / 0.18)  # = 5 on the sphere r = 0.3 * sqrt(ln 2 * 2)
    radius = np.sqrt(0.18 * np.log(2.0))
    mesh = extract_mesh(density, -1, 1, 41, 5.0)
    assert mesh.volume > 0 and np.abs(np.linalg.norm(mesh.vertices, axis=1) - radius).max() < 0.01
    explicit = extract_mesh(density, -1, 1, 41, 5.0, inside="above")
    assert np.allclose(explicit.vertices, mesh.vertices)


def test_surfaces_cut_by_the_bounds_are_closed():
    mesh = extract_mesh(sphere_sdf(radius=0.5), -0.4, 0.4, 33, 0.0)
    assert mesh.is_watertight and np.allclose(mesh.bounds, [[-0.4] * 3, [0.4] * 3], atol=1e-5)


def test_components_smoothing_decimation_and_colours():
    two = lambda p: torch.minimum(sphere_sdf((-0.5, 0, 0), 0.3)(p), sphere_sdf((0.5, 0, 0), 0.2)(p))
    both = extract_mesh(two, -1, 1, 48, 0.0, keep_components=0)
    big = extract_mesh(two, -1, 1, 48, 0.0, keep_components=1)
    assert len(both.split(only_watertight=False)) == 2 and len(big.split(only_watertight=False)) == 1
    assert big.vertices[:, 0].max() < 0  # the larger sphere, on the -x side
    colour = lambda p: (p + 1.0) / 2.0  # [N, 3] in [0, 1]
    mesh = decimate(extract_mesh(sphere_sdf(radius=0.5), -1, 1, 40, 0.0, smooth_iters=5), 300)  # as assets do
    assert 250 <= len(mesh.faces) <= 300
    color_vertices(mesh, colour)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.5).max() < 0.03
    expected = np.round((mesh.vertices + 1.0) / 2.0 * 255.0)
    assert np.abs(mesh.visual.vertex_colors[:, :3] - expected).max() <= 1


def test_empty_field_suggests_a_threshold():
    with pytest.raises(InputError, match=r"field is empty at level 50: the field holds the one value 0, no threshold"):
        extract_mesh(lambda p: torch.zeros(len(p)), -1, 1, 8, 50.0)
    with pytest.raises(InputError, match="must be 'auto' or a number"):
        MeshConfig(threshold="high").level(0.0)
    assert MeshConfig().level(0.0) == 0.0 and MeshConfig(threshold="2.5").level(0.0) == 2.5


def test_chunked_evaluation_matches_one_pass():
    fn = sphere_sdf((0.1, 0.0, 0.0), 0.4)
    full = evaluate_grid(fn, -1, 1, 9, chunk=10**6)
    assert np.allclose(evaluate_grid(fn, -1, 1, 9, chunk=7), full)
    points = grid_points(-1, 1, 9)
    assert np.allclose(fn(points).reshape(9, 9, 9).numpy(), full)
    assert torch.equal(evaluate_in_chunks(fn, points, chunk=5), fn(points))
