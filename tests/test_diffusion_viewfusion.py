"""ViewFusion's plan (order, window, weights) against hand-computed reference values."""
import math

import numpy as np
import pytest

from img2mesh.data.cameras import camera_from_spherical, ring_cameras
from img2mesh.diffusion.viewfusion import (RelativePose, fusion_weights, generation_order, plan_independent,
                                           plan_viewfusion, pose_distance, relative_poses, signed_offset)


def ring(n, elevation=0.0):
    """The reference ring's targets: 360/n * j from the input (j = 1 .. n-1), as signed offsets."""
    return [RelativePose(signed_offset(360.0 / n * j, 0.0), elevation, 2.0) for j in range(1, n)]


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def test_signed_offsets_of_a_ring_start_at_the_input():
    cams = ring_cameras(36, 20.0, start_azimuth=90.0)
    poses = relative_poses(cams, cams[0])
    assert [round(p.azimuth) for p in poses[:3]] == [0, 10, 20]
    assert round(poses[18].azimuth) == 180 and round(poses[19].azimuth) == -170
    assert all(abs(p.elevation - 20.0) < 1e-9 and abs(p.radius - 2.0) < 1e-9 for p in poses)


def test_generation_order_is_the_reference_order():
    targets = ring(36)
    order = [round(targets[i].azimuth) for i in generation_order(targets, RelativePose(0.0, 0.0, 2.0))]
    expected = []
    for view_id in range(35):  # the reference: odd ids go negative, even ids positive, 10 deg apart
        step = 10 * (view_id // 2 + 1)
        expected.append(-step if view_id & 1 else step)
    assert order == expected
    assert order[:4] == [10, -10, 20, -20] and order[-1] == 180


def test_weights_hand_computed_for_k_0_1_5_35():
    n, t_inf, t_auto = 36, 0.5, 0.5
    # k = 0: the input alone
    w_in, w_gen = fusion_weights(0, n, [10.0], [], t_inf, t_auto)
    assert w_in.tolist() == [1.0] and len(w_gen) == 0
    # k = 1 (target -10): input at 10 deg, the +10 view at 20 deg
    w_in, w_gen = fusion_weights(1, n, [10.0], [20.0], t_inf, t_auto)
    w0 = math.exp(-2 / 36 / 0.5)
    assert w_in[0] == pytest.approx(w0, abs=1e-15) and w_gen[0] == pytest.approx(1 - w0, abs=1e-15)
    # k = 5 (target -30): generated so far +10, -10, +20, -20, +30 -> distances 40, 20, 50, 10, 60
    d = np.array([40.0, 20.0, 50.0, 10.0, 60.0])
    w_in, w_gen = fusion_weights(5, n, [30.0], d, t_inf, t_auto)
    w0 = math.exp(-6 / 36 / 0.5)
    expected = (1 - w0) * softmax(-d / 60.0 / 0.5)
    assert w_in[0] == pytest.approx(w0, abs=1e-15)
    np.testing.assert_allclose(w_gen, expected, rtol=1e-12)
    assert w_in.sum() + w_gen.sum() == pytest.approx(1.0, abs=1e-12)
    # by hand: exp(-1/3) = 0.716531..., and the largest generated weight goes to the nearest (-20, 10 deg)
    assert w0 == pytest.approx(0.7165313105737893, abs=1e-12) and int(np.argmax(w_gen)) == 3
    # k = 34 is the reference ring's last view (+180): w0 = exp(-35 / 36 / 0.5)
    w_in, _ = fusion_weights(34, n, [180.0], [10.0, 10.0], t_inf, t_auto)
    assert w_in[0] == pytest.approx(math.exp(-35 / 36 / 0.5), abs=1e-15)
    w_in, w_gen = fusion_weights(35, n, [180.0], [10.0, 10.0, 20.0], t_inf, t_auto)
    assert w_in[0] == pytest.approx(math.exp(-1.0 / 0.5), abs=1e-15) == pytest.approx(0.1353352832366127)
    np.testing.assert_allclose(w_gen, (1 - math.exp(-2.0)) * softmax(-np.array([10.0, 10.0, 20.0]) / 20.0 / 0.5))


def test_plan_window_excludes_anchors_at_or_beyond_the_window():
    targets = ring(36)
    plan = plan_viewfusion([RelativePose(0.0, 0.0, 2.0)], targets, window_deg=125.0)
    for step in plan:
        assert step.anchors[0] == 0, "the input is always an anchor"
        for a in step.anchors[1:]:
            assert pose_distance(targets[a - 1], targets[step.target]) < 125.0
        assert step.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(step.weights > 0)
    last = plan[-1]  # +180: generated views within 125 deg are those at |offset| >= 60
    assert round(targets[last.target].azimuth) == 180
    assert sorted(round(targets[a - 1].azimuth) for a in last.anchors[1:]) == sorted(
        [s * a for a in range(60, 180, 10) for s in (1, -1)])
    # exactly 125 deg away is outside the window, just under it is inside
    pair = [RelativePose(10.0, 0.0, 2.0), RelativePose(135.0, 0.0, 2.0)]
    assert plan_viewfusion([RelativePose(0.0, 0.0, 2.0)], pair, window_deg=125.0)[1].anchors == [0]
    assert plan_viewfusion([RelativePose(0.0, 0.0, 2.0)], pair, window_deg=125.001)[1].anchors == [0, 1]


def test_no_generated_anchor_in_window_falls_back_to_the_input_alone():
    # N = 4: +90, -90, +180; the -90 view's only generated candidate (+90) is 180 deg away (the reference crashes)
    plan = plan_viewfusion([RelativePose(0.0, 0.0, 2.0)], ring(4))
    assert [len(s.anchors) for s in plan] == [1, 1, 3]
    assert plan[1].weights.tolist() == [1.0]


def test_several_inputs_split_their_weight_by_softmax_over_distance():
    inputs = [RelativePose(0.0, 0.0, 2.0), RelativePose(90.0, 0.0, 2.0), RelativePose(0.0, 30.0, 2.0)]
    w_in, w_gen = fusion_weights(0, 10, [40.0, 50.0, 70.0], [], 0.5, 0.5, input_temp=1.0)
    np.testing.assert_allclose(w_in, softmax(-np.array([40.0, 50.0, 70.0]) / 70.0))
    targets = [RelativePose(40.0, 0.0, 2.0), RelativePose(-40.0, 0.0, 2.0)]
    plan = plan_viewfusion(inputs, targets)
    assert plan[0].anchors == [0, 1, 2]  # the first target: inputs only
    assert plan[1].anchors == [0, 1, 2, 3]  # the second also sees the first generated view (80 deg away)
    assert plan[1].weights.sum() == pytest.approx(1.0)
    assert pose_distance(inputs[2], targets[0]) == pytest.approx(70.0)  # azimuth + elevation distance


def test_independent_plan_conditions_on_inputs_only():
    plan = plan_independent([RelativePose(0.0, 0.0, 2.0)], ring(8))
    assert [s.target for s in plan] == list(range(7))
    assert all(s.anchors == [0] and s.weights.tolist() == [1.0] for s in plan)


def test_relative_poses_of_cameras_at_other_elevations():
    first = camera_from_spherical(15.0, 350.0)
    cams = [camera_from_spherical(30.0, 10.0, 1.5), camera_from_spherical(-5.0, 170.0)]
    poses = relative_poses(cams, first)
    assert poses[0].azimuth == pytest.approx(20.0) and poses[0].elevation == pytest.approx(30.0)
    assert poses[0].radius == pytest.approx(1.5)
    assert poses[1].azimuth == pytest.approx(180.0)  # exactly opposite counts as +180
