"""Hard mask edges softened, and the guard that keeps a run from silently diverging."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from img2mesh.data.cameras import ring_cameras
from img2mesh.data.errors import DivergedError
from img2mesh.data.views import View, Views
from img2mesh.recon.config import GuardConfig, InitConfig, LossConfig, NeuSConfig, ReconConfig
from img2mesh.recon.train.guard import Guard
from img2mesh.recon.start.masks import is_binary_mask, soften_binary_masks, soften_edges
from img2mesh.recon.mesh.io import load_mesh, normalize_mesh
from img2mesh.recon.mesh.raycast import render_views
from img2mesh.recon.methods import METHODS
from img2mesh.recon.methods.neus import GridNeuS
from img2mesh.recon.stage import reconstruct


def disc(size=32, radius=9.3, soft=True) -> np.ndarray:
    """RGBA of a red disc: antialiased (4x4 supersampled coverage) or thresholded."""
    s = 4
    y, x = np.mgrid[0:size * s, 0:size * s] / s + 0.5 / s - size / 2
    cover = (np.hypot(x, y) < radius).reshape(size, s, size, s).mean(axis=(1, 3))
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[..., 0] = 1.0
    rgba[..., 3] = cover if soft else (cover >= 0.5)
    return rgba


def test_binary_masks_are_told_from_soft_ones_and_softened_about_a_pixel():
    soft, hard = disc(soft=True), disc(soft=False)
    assert not is_binary_mask(soft[..., 3]) and is_binary_mask(hard[..., 3])
    softened = soften_edges(hard)
    assert not is_binary_mask(softened[..., 3])
    assert np.array_equal(softened[..., 3] >= 0.5, hard[..., 3] >= 0.5)  # the 0.5 level (carving) stays
    assert ((softened[..., 3] - soft[..., 3]) ** 2).mean() < ((hard[..., 3] - soft[..., 3]) ** 2).mean()  # nearer
    gained = (hard[..., 3] < 0.5) & (softened[..., 3] > 0.01)
    assert gained.any() and np.allclose(softened[gained, :3], [1.0, 0.0, 0.0])  # the object's colour, not black

    cam = ring_cameras(1, 20.0, size=32)[0]
    views = Views([View(soft, cam, "soft"), View(hard, cam, "hard")])
    out, n = soften_binary_masks(views, "auto")
    assert n == 1 and out[0] is views[0] and not np.array_equal(out[1].rgba, views[1].rgba)
    assert soften_binary_masks(views, "keep")[1] == 0 and soften_binary_masks(views, "soften")[1] == 2


def test_the_guard_sees_a_collapse_and_a_runaway_sharpness():
    g = Guard(GuardConfig(psnr_drop=3.0, min_surface_px=0.02), pixel=0.01)
    assert g.problem(20.0, 0.001) == ""
    g.best_psnr = 25.0
    assert "fell from 25.0 to 20.0 dB" in g.problem(20.0, 0.001)
    assert "of a pixel" in g.problem(24.0, 1e-5)  # a thousandth of a pixel
    assert "not a number" in g.problem(math.nan, None)
    with pytest.raises(DivergedError, match="diverged at step 7: x. Likely causes"):
        g.give_up_or_roll_back(7, "x")  # nothing healthy to go back to


@pytest.fixture(scope="module")
def suzanne_views(shared):
    mesh = normalize_mesh(load_mesh(shared / "meshes" / "suzanne.obj", up="y"), 1.0)
    return render_views(mesh, ring_cameras(8, 20.0, size=32))


def _small(steps, **neus):
    n = NeuSConfig(resolution=32, coarse_resolution=0, color_resolution=16, feature_dim=4, color_hidden=16,
                   color_layers=1, n_samples=16, n_importance=8, lambda_curvature=0.0, lambda_area=0.0, **neus)
    return ReconConfig(steps=steps, rays_per_batch=256, warmup_steps=0, checkpoint_every=0,
                       init=InitConfig(hull_resolution=32), neus=n, loss=LossConfig(lambda_rgb=1.0),
                       guard=GuardConfig(every=5, max_rollbacks=2))


class Sharpening(GridNeuS):
    """NeuS with a loss that always rewards a sharper surface, as edges sharper than a pixel do: inv_s runs away."""

    def extra_losses(self, cfg, field, out, weight):
        return {**super().extra_losses(cfg, field, out, weight), "sharpen": -10.0 * field.variance.variance}


def test_a_runaway_rolls_back_at_lower_rates_then_stops_naming_the_cause(suzanne_views, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "sharpening", Sharpening())
    cfg = dataclasses.replace(_small(200), method="sharpening")
    with pytest.raises(DivergedError, match=r"surface sharpened to .* after 2 restarts at lower learning rates"):
        reconstruct(cfg, suzanne_views, tmp_path)
    assert not (tmp_path / "field.pt").exists()  # a collapsed field is never saved as a result
    cfg = dataclasses.replace(cfg, guard=GuardConfig(every=5, max_rollbacks=0))
    with pytest.raises(DivergedError, match="Likely causes: too large a learning rate .* mask edges"):
        reconstruct(cfg, suzanne_views, tmp_path / "no-restarts")


def test_a_healthy_run_is_not_touched_and_records_its_sharpness(suzanne_views, tmp_path):
    result = reconstruct(_small(20), suzanne_views, tmp_path)
    assert result.stats["rollbacks"] == 0 and 10 < result.stats["inv_s"] < 1e4 and result.psnr > 10
    off = dataclasses.replace(_small(20), guard=GuardConfig(enabled=False))
    b = reconstruct(off, suzanne_views, tmp_path / "off")
    a = torch.load(result.field_path, weights_only=True)["state"]
    assert all(torch.equal(a[k], v) for k, v in torch.load(b.field_path, weights_only=True)["state"].items())
