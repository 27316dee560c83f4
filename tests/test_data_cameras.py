"""The camera module: conventions, the scene camera, rays and projection agree."""
import json
import math

import numpy as np
import pytest
import torch

from img2mesh.data.cameras import (Camera, camera_from_spherical, camera_layout, camera_rays, look_at,
                                   project_points, read_cameras_json, ring_cameras)
from img2mesh.data.errors import InputError


def test_spherical_round_trip():
    cam = camera_from_spherical(20.0, 90.0, 2.0)
    assert cam.elevation == pytest.approx(20.0) and cam.azimuth == pytest.approx(90.0)
    assert cam.radius == pytest.approx(2.0)


def test_matches_zero123_scene_frame0(shared):
    meta = json.loads((shared / "scenes/nerf_wild/pikachu/transforms_train.json").read_text())
    expected = np.array(meta["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(camera_from_spherical(20.0, 90.0, 2.0).c2w, expected, atol=1e-12)


def test_look_at_is_orthonormal_and_looks_at_target():
    c2w = look_at([1.0, 2.0, 0.5])
    r = c2w[:3, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    forward = -r[:, 2]
    np.testing.assert_allclose(forward, -np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5]), atol=1e-12)
    assert r[2, 1] > 0  # camera up has a positive world-z component


def test_look_at_straight_down_is_defined():
    c2w = look_at([0.0, 0.0, 3.0])
    assert np.isfinite(c2w).all()
    np.testing.assert_allclose(-c2w[:3, 2], [0, 0, -1], atol=1e-12)


def test_intrinsics_from_fov():
    cam = camera_from_spherical(0, 0, 2.0, fov_x=math.radians(90), width=200)
    assert cam.focal == pytest.approx(100.0)
    np.testing.assert_allclose(cam.intrinsics, [[100, 0, 100], [0, 100, 100], [0, 0, 1]])


def test_centre_ray_hits_origin_and_projection_inverts_rays():
    cam = camera_from_spherical(30.0, 45.0, 2.5, width=64, height=48)
    origins, dirs = camera_rays(cam, dtype=torch.float64)
    assert origins.shape == dirs.shape == (64 * 48, 3)
    np.testing.assert_allclose(dirs.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    points = (origins + 1.7 * dirs).numpy()
    uv, depth = project_points(cam, points)
    v, u = np.meshgrid(np.arange(48) + 0.5, np.arange(64) + 0.5, indexing="ij")
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], -1), atol=1e-9)
    assert (depth > 0).all()
    uv0, _ = project_points(cam, np.zeros((1, 3)))
    np.testing.assert_allclose(uv0[0], [32, 24], atol=1e-9)  # the object centre is the image centre


def test_image_up_is_world_up():
    cam = camera_from_spherical(0.0, 0.0, 2.0, width=64)
    uv, _ = project_points(cam, np.array([[0.0, 0.0, 0.3]]))
    assert uv[0, 1] < 32  # a point above the origin appears in the upper half


def test_layouts():
    ring = camera_layout("ring36", elevation=20)
    assert len(ring) == 36 and ring[1].azimuth == pytest.approx(10.0)
    sd = camera_layout("syncdreamer16")
    assert len(sd) == 16 and sd[1].azimuth == pytest.approx(22.5)
    assert sd[0].elevation == pytest.approx(30.0) and sd[0].radius == pytest.approx(1.5)
    assert sd[0].resized(256).focal == pytest.approx(280.0)
    with pytest.raises(InputError, match="unknown camera layout"):
        camera_layout("spiral")


def test_cameras_json(tmp_path):
    cams = ring_cameras(3, 10.0, size=32)
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({"camera_angle_x": cams[0].fov_x, "w": 32, "h": 32,
                                "frames": [{"transform_matrix": c.c2w.tolist()} for c in cams]}))
    back = read_cameras_json(path)
    assert len(back) == 3 and back[2].azimuth == pytest.approx(240.0)
    path.write_text("{}")
    with pytest.raises(InputError, match="not a cameras file"):
        read_cameras_json(path)




def test_camera_shape_checked():
    with pytest.raises(AssertionError, match="c2w must be"):
        Camera(np.eye(3), 1.0, 8, 8)
