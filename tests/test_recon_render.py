"""Mesh renderer: analytic silhouettes, depths and normals of a sphere and a cube; textures; folders."""
import math

import numpy as np
import pytest
import trimesh

from img2mesh.data.cameras import camera_from_spherical, ring_cameras
from img2mesh.data.errors import InputError
from img2mesh.data.views import read_views
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh
from img2mesh.recon.mesh.raycast import Light, render_mesh
from img2mesh.recon.mesh.render_folder import render_mesh_to_folder


def test_sphere_silhouette_depth_and_normals():
    r, dist, size = 0.5, 2.0, 96
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=r)
    cam = camera_from_spherical(20.0, 30.0, dist, width=size)
    out = render_mesh(sphere, [cam], supersample=3)[0]
    # The silhouette of a sphere seen from distance D is a circle of angular radius asin(r / D).
    radius_px = cam.focal * math.tan(math.asin(r / dist))
    area = out.rgba[..., 3].sum()
    assert area == pytest.approx(math.pi * radius_px**2, rel=0.01)
    # Near the image centre the visible point is the one closest to the camera: depth D - r, normal to the camera.
    c = size // 2
    centre_depth = out.depth[c - 1 : c + 1, c - 1 : c + 1]
    assert np.allclose(centre_depth, dist - r, atol=3e-3)
    to_camera = cam.position / np.linalg.norm(cam.position)
    assert np.allclose(out.normal[c, c], to_camera, atol=0.03)
    assert out.depth[0, 0] == 0.0 and out.rgba[0, 0, 3] == 0.0 and np.allclose(out.rgba[0, 0, :3], 1.0)
    # Every covered normal is unit length and faces the camera.
    hit = out.rgba[..., 3] == 1.0
    assert np.allclose(np.linalg.norm(out.normal[hit], axis=-1), 1.0, atol=1e-4)
    # An uncoloured mesh renders grey, lit (not flat) so it shows shape.
    grey = out.rgba[hit][:, :3]
    assert np.allclose(grey[:, 0], grey[:, 1]) and grey.std() > 0.03


def test_cube_front_face_is_flat_with_exact_size_and_depth():
    half, dist, size = 0.4, 2.0, 64
    cube = trimesh.creation.box(extents=(2 * half,) * 3)
    cam = camera_from_spherical(0.0, 0.0, dist, width=size)  # looks along -x at the +x face
    out = render_mesh(cube, [cam], supersample=4, smooth=False, light=Light(direction=None))[0]
    side_px = 2 * cam.focal * half / (dist - half)  # the front face fills the silhouette
    assert out.rgba[..., 3].sum() == pytest.approx(side_px**2, rel=0.01)
    inside = out.rgba[..., 3] == 1.0
    assert np.allclose(out.depth[inside], dist - half, atol=1e-4)
    assert np.allclose(out.normal[inside], [1.0, 0.0, 0.0], atol=1e-5)
    # Headlight: grey * (ambient + diffuse * cos(ray, normal)), so full grey 0.7 where the ray meets the
    # face head-on (the centre) and darker towards the corners.
    c = size // 2
    assert np.allclose(out.rgba[c - 1 : c + 1, c - 1 : c + 1, :3], 0.7, atol=2e-3)
    assert out.rgba[inside][:, :3].max() <= 0.7 + 1e-6 and out.rgba[inside][:, :3].min() < 0.69


def test_vertex_and_face_colours():
    box = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
    box.visual.face_colors = np.tile([255, 0, 0, 255], (len(box.faces), 1))
    cam = camera_from_spherical(10.0, 20.0, 2.0, width=32)
    out = render_mesh(box, [cam], supersample=1)[0]
    hit = out.rgba[..., 3] > 0
    assert np.all(out.rgba[hit][:, 1:3] == 0) and out.rgba[hit][:, 0].min() > 0.3
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    sphere.visual.vertex_colors = np.tile([0, 0, 255, 255], (len(sphere.vertices), 1))
    out = render_mesh(sphere, [cam], supersample=1)[0]
    hit = out.rgba[..., 3] > 0
    assert np.all(out.rgba[hit][:, :2] == 0) and out.rgba[hit][:, 2].min() > 0.3


def test_spot_renders_upright_with_its_texture(shared):
    mesh = normalize_mesh(load_mesh(shared / "meshes" / "spot" / "spot_triangulated.obj", up="y"))
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert np.allclose(np.max(mesh.extents), 1.0) and np.allclose(mesh.bounds.sum(axis=0), 0.0, atol=1e-9)
    # Spot stands on its legs: the z extent (height) is larger than the x extent (body width).
    assert mesh.extents[2] > mesh.extents[0]
    out = render_mesh(mesh, [camera_from_spherical(20.0, 0.0, 2.0, width=64)])[0]
    rgb = out.rgba[out.rgba[..., 3] == 1.0][:, :3]
    assert (rgb.min(axis=1) > 0.8).mean() > 0.05  # white hide: brighter than any lit grey (<= 0.7)
    assert (rgb.max(axis=1) < 0.2).mean() > 0.01  # black patches: darker than any lit grey (>= 0.7 * 0.35)
    assert (rgb[:, 0] - rgb[:, 2] > 0.1).mean() > 0.005  # the reddish nose / horns: not grey


def test_glb_scene_with_textured_and_coloured_parts_keeps_both(shared, tmp_path):
    spot = load_mesh(shared / "meshes" / "spot" / "spot_triangulated.obj", up="y")
    box = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    box.apply_translation([1.2, 0.0, 0.0])
    box.visual.face_colors = [0, 255, 0, 255]
    trimesh.Scene([spot, box]).export(tmp_path / "scene.glb")
    mesh = load_mesh(tmp_path / "scene.glb", up="z")  # flattened (written in z-up coordinates above)
    assert len(mesh.vertices) == len(spot.vertices) + len(box.vertices)
    assert np.allclose(mesh.bounds[1, 0], 1.35) and np.allclose(mesh.bounds[0], spot.bounds[0], atol=1e-6)
    out = render_mesh(mesh, [camera_from_spherical(10.0, -90.0, 5.0, width=64)], supersample=1)[0]
    rgb = out.rgba[out.rgba[..., 3] == 1.0][:, :3]
    assert ((rgb[:, 1] - rgb[:, 0]) > 0.2).sum() > 5  # the green box
    assert (rgb.min(axis=1) > 0.8).sum() > 5  # spot's white hide, sampled from its texture


def test_render_folder_round_trip(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    path = tmp_path / "ball.ply"
    sphere.export(path)
    cams = ring_cameras(3, 20.0, size=24)
    views = render_mesh_to_folder(path, tmp_path / "views", cams, normalize=1.0, supersample=1)
    back = read_views(tmp_path / "views")
    assert len(back) == 3 and back[0].is_input and not back[1].is_input
    assert np.allclose(back[1].camera.c2w, cams[1].c2w)
    assert np.abs(back[2].rgba - views[2].rgba).max() <= 1 / 255 + 1e-6
    depth = np.load(tmp_path / "views" / "r_001_depth.npy")
    assert depth.shape == (24, 24) and depth[depth > 0].min() == pytest.approx(1.5, abs=0.01)  # radius 0.5 once normalised
    assert (tmp_path / "views" / "r_002_normal.png").is_file()
    gt = load_mesh(tmp_path / "views" / "gt_mesh.ply")  # the geometry as rendered: normalised to size 1
    assert np.allclose(gt.extents, 1.0, atol=1e-6) and np.allclose(gt.bounds.sum(axis=0), 0.0, atol=1e-6)


def test_load_mesh_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_mesh(tmp_path / "nope.obj")
    bad = tmp_path / "bad.obj"
    bad.write_text("this is not a mesh\n")
    with pytest.raises(InputError):
        load_mesh(bad)
    with pytest.raises(InputError, match="up axis"):
        load_mesh(bad, up="x")
