"""Recon losses and schedules on hand-made tensors with values worked out by hand."""
import math

import pytest
import torch

from img2mesh.recon.train import losses as L
from img2mesh.recon.train.schedules import cos_anneal_ratio, learning_rate_factor, loss_weight, ramp


def test_depth_smoothness_of_a_ramp_and_a_plane():
    # depth rises by 0.1 per column and 0.3 per row: mean |dx| = 0.1, mean |dy| = 0.3 -> (0.1 + 0.3) / 2
    y, x = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    depth = (0.1 * x + 0.3 * y)[None]
    mask = torch.ones_like(depth)
    assert L.depth_smoothness_loss(depth, mask).item() == pytest.approx(0.2, abs=1e-6)
    assert L.depth_smoothness_loss(torch.full((2, 4, 4), 1.7), torch.ones(2, 4, 4)).item() == 0.0


def test_depth_smoothness_ignores_pairs_leaving_the_mask():
    # A depth jump between object (left, depth 1) and background (right, depth 5): the mask excludes it.
    depth = torch.tensor([[[1.0, 1.0, 5.0, 5.0]] * 4])
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0]] * 4])
    assert L.depth_smoothness_loss(depth, mask).item() == 0.0
    # With the whole patch in the mask, one of three x-pairs per row jumps by 4: mean |dx| = 4 / 3, dy = 0.
    assert L.depth_smoothness_loss(depth, torch.ones_like(mask)).item() == pytest.approx(0.5 * 4.0 / 3.0)


def test_near_view_loss_is_l1_of_colour_plus_masked_depth():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    rgb_near = torch.tensor([[0.3, 0.3, 0.3], [1.0, 1.0, 1.0]])
    depth, depth_near = torch.tensor([2.0, 3.0]), torch.tensor([2.5, 9.0])
    mask = torch.tensor([1.0, 0.0])  # the second pixel is background: its depth difference does not count
    assert L.near_view_loss(rgb, rgb_near, depth, depth_near, mask).item() == pytest.approx(0.15 + 0.5)
    assert L.near_view_loss(rgb, rgb_near, depth, depth_near).item() == pytest.approx(0.15 + 3.25)


def test_rgb_mask_eikonal_and_weighting():
    pred, target = torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    assert L.rgb_loss(pred, target, kind="mse").item() == pytest.approx(0.125)
    soft = (math.sqrt(1e-3) + math.sqrt(0.25 + 1e-3)) / 2
    assert L.rgb_loss(pred, target, kind="soft_l1").item() == pytest.approx(soft, rel=1e-5)
    # The input view's weight: ray 2 counts 3x -> (0 * 1 + 0.25 * 3) / 4
    assert L.rgb_loss(pred, target, torch.tensor([1.0, 3.0]), "mse").item() == pytest.approx(0.1875)
    assert L.mask_loss(torch.tensor([1.0, 0.2]), torch.tensor([1.0, 0.0])).item() == pytest.approx(0.02)
    unit = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    assert L.eikonal_loss(unit).item() == pytest.approx(0.0, abs=1e-10)
    assert L.eikonal_loss(2 * unit).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="soft_l1 or mse"):
        L.rgb_loss(pred, target, kind="l2")


def test_emptiness_and_sparsity():
    w = torch.tensor([[0.0, 0.1, 0.0]])
    assert L.emptiness_loss(w, 10.0).item() == pytest.approx(math.log(2.0) / 3)
    opacity, alpha = torch.tensor([0.4, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.2])
    assert L.sparsity_loss(opacity, alpha).item() == pytest.approx(0.2)  # off-mask rays: 0.4 and 0.0


def test_psnr():
    assert L.psnr(torch.zeros(4, 3), torch.full((4, 3), 0.1)) == pytest.approx(20.0)


def test_schedules_are_pure_functions_of_the_step():
    assert learning_rate_factor(0, 1000, 100, 0.02) == pytest.approx(0.01)
    assert learning_rate_factor(99, 1000, 100, 0.02) == pytest.approx(1.0)
    assert learning_rate_factor(100, 1000, 100, 0.02) == pytest.approx(1.0)
    assert learning_rate_factor(550, 1000, 100, 0.02) == pytest.approx(0.51)  # half-way down the cosine
    assert learning_rate_factor(1000, 1000, 100, 0.02) == pytest.approx(0.02)
    assert ramp(10, 100, 0.5, 0.5) == 0.0 and ramp(50, 100, 0.5, 0.5) == 1.0
    assert ramp(30, 100, 0.2, 0.4) == pytest.approx(0.5)
    assert loss_weight(1e4, [0.5, 0.5], 40, 100) == 0.0 and loss_weight(1e4, [0.5, 0.5], 60, 100) == 1e4
    assert loss_weight(0.1, None, 0, 100) == 0.1
    assert cos_anneal_ratio(50, 200) == 0.25 and cos_anneal_ratio(500, 200) == 1.0 and cos_anneal_ratio(3, 0) == 1.0
