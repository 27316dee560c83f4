"""Evaluation: the 3D-consistency score (sanity cases, determinism, CLI), novel-view evaluation against
ground-truth meshes with a tiny random Zero-1-to-3, LPIPS from weight files in the upstream layouts."""
import csv
import json

import numpy as np
import pytest
import torch

from img2mesh.cli import main
from img2mesh.data.cameras import ring_cameras
from img2mesh.data.errors import InputError
from img2mesh.data.views import View, Views, write_views
from img2mesh.evaluation.consistency import evaluate_consistency
from img2mesh.evaluation.lpips import LPIPS, find_lpips, lpips_distance, save_weights_like_upstream
from img2mesh.recon import load_mesh, normalize_mesh, render_views
from img2mesh.recon.config import InitConfig, LossConfig, ReconConfig, VoxelConfig

# A voxel NeRF small enough for 12 views at 64 px in seconds; its colour is what predicts held-out views.
SMALL_VOXEL = ReconConfig(method="voxel", steps=100, rays_per_batch=1024, foreground_fraction=0.5, optimizer="adam",
                          warmup_steps=10, lr_final_ratio=0.1, checkpoint_every=0, init=InitConfig(hull_resolution=48),
                          voxel=VoxelConfig(resolution=48, color_resolution=48, step_size=0.01, lr=0.05,
                                            density_scale_init=5.0, geometry_lr_scale=0.2, lambda_density_laplacian=0.0),
                          loss=LossConfig(lambda_rgb=1.0))


@pytest.fixture(scope="module")
def cow_views(shared):
    mesh = normalize_mesh(load_mesh(shared / "meshes" / "cow.obj", up="y"), 1.0)
    return render_views(mesh, ring_cameras(12, 20.0, size=64))


def every_second(views: Views, edit) -> Views:
    return Views([View(edit(v.rgba.copy()) if i % 2 else v.rgba, v.camera, v.name, v.is_input)
                  for i, v in enumerate(views)])


def shifted(rgba):
    return np.roll(rgba, 4, axis=1)  # 4 px to the right: the object no longer where the camera says


def tinted(rgba):
    rgba[..., :3] *= np.array([1.0, 0.6, 0.6], np.float32)  # reddened
    return rgba


def test_ground_truth_renders_score_clearly_above_shifted_or_recoloured_ones(cow_views, tmp_path):
    gt = evaluate_consistency(cow_views, SMALL_VOXEL, tmp_path / "gt")
    shift = evaluate_consistency(every_second(cow_views, shifted), SMALL_VOXEL, tmp_path / "shift")
    tint = evaluate_consistency(every_second(cow_views, tinted), SMALL_VOXEL, tmp_path / "tint")
    # Measured: 24.8 / 18.0 / 23.0 dB held-out PSNR (SSIM 0.93 / 0.82 / 0.92).
    assert gt.score > 23.0
    assert gt.score - shift.score > 4.0 and gt.score - tint.score > 1.0
    for split in ("even -> odd", "odd -> even"):
        assert gt.splits[split]["ssim"] > shift.splits[split]["ssim"] + 0.05
    assert gt.splits["all (re-render)"]["psnr"] >= gt.score - 1.0  # fitting every view explains them all
    assert gt.splits["even -> odd"]["held_out"] == [1, 3, 5, 7, 9, 11]
    assert json.loads((tmp_path / "gt" / "consistency.json").read_text())["score"] == pytest.approx(gt.score)
    assert (tmp_path / "gt" / "even" / "renders_vs_views.png").is_file()


def test_consistency_cli_is_deterministic_and_refuses_too_few_views(cow_views, tmp_path, capsys):
    small = [f"{cow_views[i].name}" for i in range(0, 12, 2)]
    views = Views([View(v.rgba[::2, ::2].copy(), v.camera.resized(32, 32), v.name, v.is_input)
                   for v in cow_views if v.name in small])
    write_views(views, tmp_path / "views")
    overrides = ["recon.method=voxel", "recon.steps=15", "recon.rays_per_batch=256", "recon.voxel.lr=0.05",
                 "recon.optimizer=adam", "recon.init.hull_resolution=32", "recon.voxel.resolution=32",
                 "recon.voxel.color_resolution=32", "recon.voxel.step_size=0.02", "recon.checkpoint_every=0"]
    scores = []
    for run in ("a", "b"):
        code = main(["eval", "consistency", str(tmp_path / "views"), "--config", "cpu", "--out",
                     str(tmp_path / run), "--quiet", *overrides])
        out = capsys.readouterr().out
        assert code == 0 and "consistency score" in out and "odd -> even" in out
        scores.append(json.loads((tmp_path / run / "consistency.json").read_text()))
    assert scores[0] == scores[1]  # bit-for-bit the same report for the same seed
    with pytest.raises(InputError, match="at least 4 views"):
        evaluate_consistency(Views(list(views)[:3]), SMALL_VOXEL, tmp_path / "few")
    with pytest.raises(InputError, match="no colour"):
        evaluate_consistency(views, ReconConfig(method="hull"), tmp_path / "hull")


def test_lpips_from_upstream_weight_files(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = LPIPS()
    for p in model.lins.parameters():  # upstream lin weights are non-negative
        p.data.abs_()
    save_weights_like_upstream(model, tmp_path / "weights")
    monkeypatch.setenv("IMG2MESH_LPIPS_DIR", str(tmp_path / "weights"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    loaded, note = find_lpips()
    assert loaded is not None and "weights" in note
    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)
    assert lpips_distance(loaded, a, a) == pytest.approx(0.0, abs=1e-7)
    d_ab = lpips_distance(loaded, a, b)
    assert d_ab > 0 and d_ab == pytest.approx(lpips_distance(loaded, b, a), rel=1e-5)
    assert d_ab == pytest.approx(lpips_distance(model.eval(), a, b), rel=1e-5)  # loaded == saved
    monkeypatch.setenv("IMG2MESH_LPIPS_DIR", str(tmp_path / "nothing"))
    missing, note = find_lpips()
    assert missing is None and "LPIPS skipped" in note and "IMG2MESH_LPIPS_DIR" in note


def test_eval_nvs_scores_every_target_of_every_object(shared, tmp_path, capsys):
    from img2mesh.diffusion import build_random_zero123

    model_dir = build_random_zero123("tiny", seed=0).save_pretrained(tmp_path / "tiny")
    objects = tmp_path / "objects"
    (objects / "suzanne" / "meshes").mkdir(parents=True)
    (objects / "suzanne" / "meshes" / "model.obj").write_bytes((shared / "meshes" / "suzanne.obj").read_bytes())
    code = main(["eval", "nvs", "--objects", str(objects), "--layout", "ring4", "--size", "64", "--model",
                 str(model_dir), "--out", str(tmp_path / "report"), "--quiet", "--config", "cpu",
                 "diffusion.steps=2"])
    out = capsys.readouterr().out
    assert code == 0 and "suzanne" in out and "LPIPS skipped" in out
    rows = list(csv.DictReader((tmp_path / "report" / "suzanne" / "metrics.csv").open()))
    assert [int(r["view"]) for r in rows] == [1, 2, 3]  # view 0 is the input
    assert all(0 < float(r["psnr"]) < 60 and -1 <= float(r["ssim"]) <= 1 and r["lpips"] == "" for r in rows)
    summary = list(csv.DictReader((tmp_path / "report" / "summary.csv").open()))
    assert [r["object"] for r in summary] == ["suzanne", "mean"]
    assert float(summary[0]["psnr"]) == pytest.approx(np.mean([float(r["psnr"]) for r in rows]), abs=1e-5)
    assert (tmp_path / "report" / "suzanne" / "grid.png").is_file()
