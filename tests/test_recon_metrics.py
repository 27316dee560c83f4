"""Chamfer / F-score / volume IoU on shapes with known answers."""
import numpy as np
import pytest
import trimesh

from img2mesh.data.errors import InputError
from img2mesh.recon.mesh.metrics import cell_centres, mesh_metrics, occupancy


def sphere(radius, centre=(0.0, 0.0, 0.0)):
    m = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    m.apply_translation(centre)
    return m


def test_identical_meshes_are_perfect():
    m = trimesh.creation.box(extents=(0.8, 0.5, 0.3))
    out = mesh_metrics(m, m.copy(), n_points=5000)
    assert out["chamfer"] == 0.0 and out["fscore"] == 1.0 and out["iou"] == 1.0


def test_concentric_spheres_match_the_analytic_values():
    gt, pred = sphere(0.5), sphere(0.55)  # the GT's longest side is 1: no rescaling
    out = mesh_metrics(pred, gt, n_points=20000, iou_resolution=64, iou_bounds=0.6)
    # Every point of one sphere is 0.05 from the other sphere.
    assert out["chamfer"] == pytest.approx(0.05, rel=0.03)
    assert out["fscore"] == 0.0  # 0.05 is far beyond the 0.01 threshold
    assert out["iou"] == pytest.approx((0.5 / 0.55) ** 3, abs=0.02)
    close = mesh_metrics(sphere(0.503), gt, n_points=20000)
    assert close["fscore"] > 0.95 and close["chamfer"] == pytest.approx(0.003, rel=0.3)


def test_metrics_are_in_the_ground_truths_normalised_frame():
    gt, pred = sphere(0.5), sphere(0.55)
    base = mesh_metrics(pred, gt, n_points=20000)
    for m in (gt, pred):  # move and scale both: the GT's normalisation undoes it
        m.apply_scale(7.0)
        m.apply_translation([3.0, -2.0, 1.0])
    moved = mesh_metrics(pred, gt, n_points=20000)
    assert moved["chamfer"] == pytest.approx(base["chamfer"], rel=1e-3)
    assert moved["iou"] == pytest.approx(base["iou"], abs=1e-3)


def test_occupancy_tolerates_holes():
    holed = sphere(0.5)
    keep = np.ones(len(holed.faces), bool)
    keep[np.argsort(holed.triangles_center[:, 2])[:40]] = False  # cut a hole at the bottom
    holed.update_faces(keep)
    assert not holed.is_watertight
    points = cell_centres(24, 0.6)
    inside = np.linalg.norm(points, axis=1) < 0.49
    outside = np.linalg.norm(points, axis=1) > 0.51
    occ = occupancy(holed, points)
    assert occ[inside].all() and not occ[outside].any()


def test_empty_mesh_is_an_input_error():
    with pytest.raises(InputError, match="no faces"):
        mesh_metrics(trimesh.Trimesh(), sphere(0.5))


def test_normalize_pred_ignores_the_predictions_scale_and_place():
    gt = sphere(0.5)
    pred = sphere(0.5)
    pred.apply_scale(1.7)
    pred.apply_translation([0.4, 0.0, -0.2])
    assert mesh_metrics(pred, gt, n_points=20000)["iou"] < 0.3
    aligned = mesh_metrics(pred, gt, n_points=20000, normalize_pred=True)
    assert aligned["iou"] > 0.97 and aligned["chamfer"] < 0.004
