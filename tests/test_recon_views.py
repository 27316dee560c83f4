"""Per-view confidence and learned corrections: rays through a corrected camera, colours, and recovering a
known camera error by training."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from img2mesh.data.cameras import Camera, camera_rays, project_points, ring_cameras
from img2mesh.data.views import View, Views
from img2mesh.recon.config import InitConfig, NeuSConfig, ReconConfig, ViewsConfig
from img2mesh.recon.mesh.raycast import render_mesh, render_views
from img2mesh.recon.stage import CORRECTIONS_NAME, reconstruct
from img2mesh.recon.start.prepare import prepare_start
from img2mesh.recon.train.view_corrections import ViewCorrections, rotation_matrices, view_confidence


def turned(cam: Camera, rotvec) -> Camera:
    """``cam`` turned about the origin (the object's centre) by the rotation vector ``rotvec``."""
    turn = Rotation.from_rotvec(rotvec).as_matrix()
    c2w = cam.c2w.copy()
    c2w[:3, :3], c2w[:3, 3] = turn @ c2w[:3, :3], turn @ c2w[:3, 3]
    return Camera(c2w, cam.fov_x, cam.width, cam.height)


def test_rotation_matrices_match_scipy_and_are_exact_at_zero():
    rotvec = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [1e-6, 0.0, 0.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
    ours = rotation_matrices(rotvec).numpy()
    assert np.allclose(ours, Rotation.from_rotvec(rotvec.numpy()).as_matrix(), atol=1e-9)
    assert np.array_equal(ours[0], np.eye(3))


def test_moved_rays_are_the_turned_cameras_rays_and_the_fixed_view_never_moves():
    cams = ring_cameras(2, 20.0, size=8)
    rotvec, shift = np.array([0.02, -0.03, 0.04]), np.array([0.01, 0.0, -0.02])
    corrections = ViewCorrections([True, False], pose=True, appearance=False).double()
    with torch.no_grad():
        corrections.rotation[:] = torch.tensor(rotvec)  # the fixed view's entry is set too, and must be ignored
        corrections.translation[:] = torch.tensor(shift)
    for i, cam in enumerate(cams):
        o, d = camera_rays(cam, dtype=torch.float64)
        n = o.shape[0]
        view = torch.full((n,), i)
        near, far = torch.full((n,), 1.0, dtype=torch.float64), torch.full((n,), 3.0, dtype=torch.float64)
        mo, md, mnear, mfar = corrections.move_rays(o, d, near, far, view, reach=0.9)
        if i == 0:
            assert torch.equal(mo, o) and torch.equal(md, d) and torch.equal(mnear, near)
            continue
        to, td = camera_rays(turned(cam, rotvec), dtype=torch.float64)
        assert torch.allclose(mo, to + torch.tensor(shift), atol=1e-9) and torch.allclose(md, td, atol=1e-9)
        assert (mnear < near).all() and (mfar > far).all()  # the bounds widen by what the move can reach


def test_recolor_changes_the_object_not_the_background_nor_the_input():
    corrections = ViewCorrections([True, False], pose=False, appearance=True)
    with torch.no_grad():
        corrections.log_gain[:] = np.log(1.5)
        corrections.bias[:] = 0.1
    rgb = torch.tensor([[0.4, 0.4, 0.4], [1.0, 1.0, 1.0], [0.7, 0.7, 0.7]] * 2)
    opacity = torch.tensor([1.0, 0.0, 0.5] * 2)
    view = torch.tensor([0, 0, 0, 1, 1, 1])
    out = corrections.recolor(rgb, opacity, view, background=1.0)
    assert torch.equal(out[:3], rgb[:3])  # the input view keeps its colours
    assert torch.allclose(out[3], torch.tensor([0.7] * 3))  # 0.4 * 1.5 + 0.1
    assert torch.allclose(out[4], rgb[4])  # background stays white
    assert torch.allclose(out[5], torch.tensor([0.2 * 1.5 + 0.05 + 0.5] * 3))  # half object, half background


def test_confidence_puts_the_input_first_and_falls_with_the_angle_from_it():
    cams = ring_cameras(4, 20.0, size=8)
    views = Views([View(np.zeros((8, 8, 4), np.float32), c, is_input=(i == 0)) for i, c in enumerate(cams)])
    conf = view_confidence(views, falloff=0.5, input_weight=1.0)
    assert conf[0] == 1.0 and conf[1] == pytest.approx(conf[3]) and 1.0 > conf[1] > conf[2] >= 0.5
    # the angle seen from the centre at 20 deg elevation: opposite views are 140 deg apart, not 180
    assert conf[2] == pytest.approx(1.0 - 0.5 * 140.0 / 180.0, abs=1e-6)
    unmarked = Views([View(v.rgba, v.camera) for v in views])
    assert np.array_equal(view_confidence(unmarked, falloff=0.5), np.ones(4))


def asymmetric_object() -> trimesh.Trimesh:
    """A block with a post on one end: its silhouette pins down any turn of a camera."""
    body = trimesh.creation.box((0.6, 0.3, 0.25))
    post = trimesh.creation.box((0.12, 0.12, 0.3))
    post.apply_translation((0.22, 0.0, 0.27))
    return trimesh.util.concatenate([body, post])


def exact_start(cfg: ReconConfig, mesh: trimesh.Trimesh, views: Views):
    """The start of ``views`` with its SDF replaced by the mesh's own signed distance (the true shape)."""
    import open3d as o3d

    from img2mesh.recon.mesh.io import raycasting_scene
    from img2mesh.recon.mesh.meshing import grid_points

    start = prepare_start(cfg.init, views, resolution=cfg.neus.resolution)
    points = grid_points(*start.box, cfg.neus.resolution).numpy().astype(np.float32)
    sdf = raycasting_scene(mesh.vertices, mesh.faces).compute_signed_distance(o3d.core.Tensor(points)).numpy()
    return dataclasses.replace(start, initial_sdf=torch.from_numpy(sdf).float())


def test_camera_refinement_recovers_a_known_camera_error(tmp_path):
    """One view is rendered from a camera rolled 6 deg about its view axis and shifted sideways, while the views
    keep its nominal pose. With the shape fixed at the truth (its lr 0), training the per-view corrections on
    the masks moves that view's rays back: the learned roll and shift recover most of the error, and the other
    views stay put. (A turn about the object's centre that keeps it centred changes a silhouette only by the
    parallax of a few degrees, far less than a pixel here: roll and shift are what a test can pin down.)"""
    mesh = asymmetric_object()
    cams = ring_cameras(8, 20.0, size=64)
    k = 3
    axis = -cams[k].c2w[:3, 2]  # the camera's view direction, through the object's centre
    roll, shift = np.radians(6.0) * axis, 0.05 * cams[k].c2w[:3, 0]  # and a shift along its right axis
    moved = turned(cams[k], roll)
    moved.c2w[:3, 3] += shift
    renders = render_mesh(mesh, [moved if i == k else c for i, c in enumerate(cams)], supersample=2)
    views = Views([View(r.rgba, c, name=f"v{i}", is_input=(i == 0)) for i, (r, c) in enumerate(zip(renders, cams))])
    cfg = ReconConfig(steps=200, rays_per_batch=2048, foreground_fraction=0.5, warmup_steps=0, lr_final_ratio=1.0,
                      checkpoint_every=0, init=InitConfig(hull_resolution=48, base_relax_steps=0, unseen_fill=False),
                      neus=NeuSConfig(resolution=48, coarse_resolution=0, color_resolution=16, lr=0.0,
                                      variance_init=0.6, n_samples=24, n_importance=8),
                      views=ViewsConfig(falloff=0.0, pose_lr=0.003, appearance=False))
    cfg.guard.enabled = False  # nothing but the corrections trains: no collapse to watch for
    cfg.loss.lambda_rgb = 0.0  # the masks alone pin the pose (the colour field is not trained here)
    reconstruct(cfg, views, tmp_path, start=exact_start(cfg, mesh, render_views(mesh, cams)))
    learned = json.loads((tmp_path / CORRECTIONS_NAME).read_text())
    assert learned[0]["fixed"] and learned[0]["rotation_deg"] == [0.0, 0.0, 0.0]
    # The corrected camera sees the object where the moved camera saw it: rays R (rays) + t = a camera with
    # c2w (R rotation, R position + t). Roll and shift trade a little with a turn about the object's centre
    # (all move the image alike), so the test compares where the object lands, not the parameters.
    rotation, translation = np.radians(learned[k]["rotation_deg"]), np.array(learned[k]["translation"])
    corrected = turned(cams[k], rotation)
    corrected.c2w[:3, 3] += translation
    points = np.asarray(mesh.vertices)

    def landing(cam):
        return project_points(cam, points)[0]

    before = np.linalg.norm(landing(cams[k]) - landing(moved), axis=1).mean()
    after = np.linalg.norm(landing(corrected) - landing(moved), axis=1).mean()
    assert before > 2.0 and after < 0.35 * before, (before, after)
    assert np.degrees(rotation @ axis) == pytest.approx(6.0, abs=2.0), rotation  # the roll is what it was
    for i in range(1, 8):  # the exact views stay where they were (turns the silhouettes cannot see may drift)
        if i != k:
            still = turned(cams[i], np.radians(learned[i]["rotation_deg"]))
            still.c2w[:3, 3] += learned[i]["translation"]
            assert np.linalg.norm(landing(still) - landing(cams[i]), axis=1).mean() < 0.5
