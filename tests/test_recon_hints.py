"""Every setting an error message suggests gets past that error on the case that raised it."""
import dataclasses
import re

import numpy as np
import pytest
import trimesh

from img2mesh.data.cameras import ring_cameras
from img2mesh.data.errors import DivergedError, InputError, UnavailableError
from img2mesh.data.views import View, Views
from img2mesh.recon.start.carving import robust_carving
from img2mesh.recon.sections import GuardConfig, InitConfig
from img2mesh.recon.mesh.meshing import extract_mesh
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh
from img2mesh.recon.mesh.raycast import render_views
from img2mesh.recon.methods import METHODS
from img2mesh.recon.methods.neus import GridNeuS, use_tcnn
from img2mesh.recon.stage import reconstruct
from img2mesh.recon.train.view_corrections import view_confidence


def suggested(message: str, key: str) -> str:
    found = re.search(rf"{re.escape(key)}=([0-9.e+-]+)", message)
    assert found, f"no {key}=... in: {message}"
    return found.group(1)


def disagreeing_views(shift_px: int) -> Views:
    """A sphere's renders whose generated views' masks are moved sideways by up to ``shift_px``, each its own
    way (as a generator's views disagree): far enough, and no point is inside every mask."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    views = render_views(sphere, ring_cameras(8, 20.0, size=32))
    out = [views[0]]
    for i, view in enumerate(views[1:], start=1):
        rgba = np.roll(view.rgba, shift_px * (1 if i % 2 else -1) * (1 + i % 3) // 3, axis=1)
        out.append(View(rgba, view.camera, view.name))
    return Views(out)


@pytest.mark.parametrize("shift_px", [8, 12])
def test_the_silhouettes_hint_keeps_a_hull(shift_px):
    views = disagreeing_views(shift_px)
    confidence = view_confidence(views, falloff=0.5)
    cfg = InitConfig(hull_resolution=32)
    with pytest.raises(InputError, match="silhouettes do not overlap") as refused:
        robust_carving(cfg, views, confidence)
    share = suggested(str(refused.value), "recon.init.hull_tolerance")
    hull, info = robust_carving(dataclasses.replace(cfg, hull_tolerance=float(share)), views, confidence)
    assert hull.occupancy.any() and len(hull.mesh.faces) > 0 and info["hull_tolerance"] == float(share)


def test_views_that_share_no_point_get_no_tolerance_hint():
    views = disagreeing_views(8)
    empty = Views([View(np.zeros_like(v.rgba), v.camera, v.name) for v in views])  # nothing inside any mask
    with pytest.raises(InputError, match="no tolerance helps") as refused:
        robust_carving(InitConfig(hull_resolution=32), empty, np.ones(len(views)))
    assert "hull_tolerance=" not in str(refused.value)


def test_the_empty_field_hint_makes_a_surface():
    def sphere_sdf(points):
        return points.norm(dim=-1) - 0.5

    with pytest.raises(InputError, match="field is empty at level 50") as refused:
        extract_mesh(sphere_sdf, -1, 1, 16, 50.0)
    level = float(suggested(str(refused.value), "export.mesh.threshold"))
    assert len(extract_mesh(sphere_sdf, -1, 1, 16, level).faces) > 0

    def density(points):  # a voxel-like density: 0 in most of the box, 30 in a ball
        return 30.0 * (points.norm(dim=-1) < 0.3).float()

    with pytest.raises(InputError, match="field is empty at level 40") as refused:
        extract_mesh(density, -1, 1, 16, 40.0, inside="above")
    level = float(suggested(str(refused.value), "export.mesh.threshold"))
    assert len(extract_mesh(density, -1, 1, 16, level, inside="above").faces) > 0


def test_the_tcnn_hint_is_accepted_where_on_is_not():
    with pytest.raises(UnavailableError) as refused:
        use_tcnn("on", "hashgrid", "cpu")
    mode = re.search(r"recon\.neus_mlp\.tcnn=(\w+)$", str(refused.value)).group(1)
    assert use_tcnn(mode, "hashgrid", "cpu") is False  # a pure-torch hash grid instead, no error


def test_the_consistency_hint_names_methods_that_predict_views(tmp_path):
    from img2mesh.evaluation.consistency import evaluate_consistency
    from img2mesh.recon.config import ReconConfig

    views = disagreeing_views(0)
    with pytest.raises(InputError, match="has no colour to predict views with") as refused:
        evaluate_consistency(views, ReconConfig(method="hull"), tmp_path)
    named = re.search(r"use recon\.method=(\w+) or (\w+)$", str(refused.value)).groups()
    assert named == ("neus", "voxel") and all(METHODS[m].trains for m in named)  # what the check asks for


class Sharpening(GridNeuS):
    """NeuS with a loss that always rewards a sharper surface, as edges sharper than a pixel do: inv_s runs away."""

    def extra_losses(self, cfg, field, out, weight):
        return {**super().extra_losses(cfg, field, out, weight), "sharpen": -10.0 * field.variance.variance}


@pytest.fixture(scope="module")
def suzanne_views(shared):
    mesh = normalize_mesh(load_mesh(shared / "meshes" / "suzanne.obj", up="y"), 1.0)
    return render_views(mesh, ring_cameras(8, 20.0, size=32))


def test_the_divergence_hint_trains_through(suzanne_views, tmp_path, monkeypatch):
    from img2mesh.recon.config import LossConfig, NeuSConfig, ReconConfig

    monkeypatch.setitem(METHODS, "sharpening", Sharpening())
    neus = NeuSConfig(resolution=32, coarse_resolution=0, color_resolution=16, feature_dim=4, color_hidden=16,
                      color_layers=1, n_samples=16, n_importance=8, lambda_curvature=0.0, lambda_area=0.0)
    cfg = ReconConfig(method="sharpening", steps=200, rays_per_batch=256, warmup_steps=0, checkpoint_every=0,
                      init=InitConfig(hull_resolution=32), neus=neus, loss=LossConfig(lambda_rgb=1.0),
                      guard=GuardConfig(every=5, max_rollbacks=2))
    with pytest.raises(DivergedError, match="after 2 restarts") as refused:
        reconstruct(cfg, suzanne_views, tmp_path / "diverged")
    lr = float(suggested(str(refused.value), "recon.neus.lr"))
    assert lr < neus.lr * cfg.guard.lr_factor ** 2  # below every rate the roll-backs tried
    result = reconstruct(dataclasses.replace(cfg, neus=dataclasses.replace(neus, lr=lr)), suzanne_views,
                         tmp_path / "lower")
    assert result.stats["rollbacks"] <= cfg.guard.max_rollbacks and (tmp_path / "lower" / "field.pt").is_file()


def test_the_old_field_hint_retrains_it(shared, tmp_path, capsys):
    import torch

    from img2mesh.cli import main

    views, run = tmp_path / "views", tmp_path / "run"
    assert main(["render", str(shared / "meshes" / "suzanne.obj"), "--up", "y", "--normalize", "1", "--layout",
                 "ring8", "--size", "32", "--out", str(views), "-q"]) == 0
    small = ["recon.steps=10", "recon.rays_per_batch=256", "recon.checkpoint_every=0", "recon.init.hull_resolution=32",
             "recon.neus.resolution=32", "recon.neus.coarse_resolution=16", "recon.neus.color_resolution=16",
             "export.mesh.resolution=32", "export.turntable_frames=4", "export.texture=false"]
    assert main(["recon", "--views", str(views), "--out", str(run), "-q", *small]) == 0
    field = run / "recon" / "field.pt"
    blob = torch.load(field, weights_only=True)
    torch.save({**blob, "format": "img2mesh-field/1"}, field)  # as an older version wrote it
    capsys.readouterr()
    assert main(["export", str(run), "-q", "export.mesh.resolution=24"]) == 2  # re-meshing loads the field
    err = capsys.readouterr().err
    assert "written by an older img2mesh" in err and f"delete it and give the command that made its run again " \
        f"with --resume {run} instead of --out" in err
    field.unlink()
    assert main(["recon", "--views", str(views), "--resume", str(run), "-q", *small]) == 0  # the hint, followed
    assert torch.load(field, weights_only=True)["format"] != "img2mesh-field/1"
    assert main(["export", str(run), "-q", "export.mesh.resolution=24"]) == 0


def test_the_silhouettes_hint_on_a_random_models_views(shared, tmp_path, capsys):
    """The case users hit: a tiny random Zero-1-to-3's views of pikachu, masked by rembg, agree on nothing."""
    from img2mesh.cli import main
    from img2mesh.data.config import DataConfig
    from img2mesh.data.images import load_image
    from img2mesh.data.preprocess import preprocess
    from img2mesh.data.scenes import read_scene
    from img2mesh.data.views import write_views
    from img2mesh.diffusion import DiffusionConfig, build_random_zero123, generate_views

    scene = read_scene(shared / "scenes" / "nerf_wild" / "pikachu")
    image = load_image(scene.image_path)
    prepared = preprocess(image.rgb, image.alpha, scene.camera, DataConfig())
    views = generate_views(DiffusionConfig(num_views=6, steps=2), prepared, model=build_random_zero123("tiny"),
                           seed=0)
    write_views(views, tmp_path / "views")
    small = ["recon.steps=10", "recon.image_size=64", "recon.rays_per_batch=256", "recon.checkpoint_every=0",
             "recon.init.hull_resolution=32", "recon.neus.resolution=32", "recon.neus.coarse_resolution=16",
             "recon.neus.color_resolution=16", "export.mesh.resolution=32", "export.turntable_frames=4",
             "export.texture=false"]
    command = ["recon", "--views", str(tmp_path / "views"), "-q", *small]
    assert main([*command, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "silhouettes do not overlap" in err
    share = suggested(err, "recon.init.hull_tolerance")
    assert main([*command, "--out", str(tmp_path / "run"), f"recon.init.hull_tolerance={share}"]) == 0
    assert (tmp_path / "run" / "mesh.ply").is_file()
