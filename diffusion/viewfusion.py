"""ViewFusion's interpolated-denoising plan as pure functions: which view is generated when, conditioned on
which anchors, with which weights (docs/reference.md section 4, ViewFusion's `generate_360_view_autoregressive`).

Poses are relative to the first input view: azimuth as a SIGNED offset in degrees (+10, -10, ..., +180 as the
reference walks the ring), elevation in degrees, radius. The distance between two poses is the wrapped
azimuth distance plus the absolute elevation difference (the reference's multi-input variant adds the
elevation difference this way; on one ring it is the reference's wrapped azimuth distance exactly).

For the k-th generated view (k = 0, 1, ...) over N views in all (inputs + targets):
- anchors: every input, plus every view generated so far whose distance to the target is < window;
- weights: k = 0 or no generated anchor in the window -> the inputs carry everything; else the inputs carry
  w0 = exp(-(k + 1) / N / inference_temp) and the generated anchors share 1 - w0 by
  softmax(-d / max d / auto_temp) over the generated anchors in the window;
- several inputs split their share by softmax(-d / max d / input_temp) over the inputs' distances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from img2mesh.data.cameras import Camera


@dataclass(frozen=True)
class RelativePose:
    azimuth: float  # degrees, signed offset from the first input in (-180, 180]
    elevation: float  # degrees above the equator (absolute)
    radius: float


@dataclass
class FusionStep:
    """How one target view is generated."""

    target: int  # index into the target list
    anchors: list[int]  # views conditioning it: i < n_inputs is input i, else target i - n_inputs
    weights: np.ndarray  # [len(anchors)] float64, sums to 1


def signed_offset(azimuth: float, reference: float) -> float:
    """azimuth - reference wrapped to (-180, 180] degrees (the far side counts as +180, as in the reference)."""
    d = (azimuth - reference) % 360.0
    return d - 360.0 if d > 180.0 else d


def relative_poses(cameras: list[Camera], first_input: Camera) -> list[RelativePose]:
    return [RelativePose(signed_offset(c.azimuth, first_input.azimuth), c.elevation, c.radius) for c in cameras]


def pose_distance(a: RelativePose, b: RelativePose) -> float:
    """Wrapped azimuth distance + |elevation difference|, degrees."""
    d = abs(a.azimuth - b.azimuth) % 360.0
    return min(d, 360.0 - d) + abs(a.elevation - b.elevation)


def generation_order(targets: list[RelativePose], first_input: RelativePose) -> list[int]:
    """Closest to the first input first; at equal distance the positive-azimuth side first
    (+10, -10, +20, -20, ..., +180 on the reference ring)."""
    def key(i: int):
        t = targets[i]
        return (round(pose_distance(t, first_input), 6), t.azimuth < 0, round(abs(t.azimuth), 6), t.elevation)

    return sorted(range(len(targets)), key=key)


def softmax_split(distances: np.ndarray, total: float, temp: float) -> np.ndarray:
    """total * softmax(-d / max d / temp); equal shares when every distance is 0."""
    d = np.asarray(distances, dtype=np.float64)
    if len(d) == 0:
        return d
    scale = d.max()
    logits = -d / scale / temp if scale > 0 else np.zeros_like(d)
    e = np.exp(logits - logits.max())
    return total * e / e.sum()


def input_weight(k: int, num_views: int, inference_temp: float) -> float:
    """The inputs' total weight for the k-th generated view (k = 0: 1)."""
    return 1.0 if k == 0 else math.exp(-(k + 1) / num_views / inference_temp)


def fusion_weights(k: int, num_views: int, input_distances, generated_distances, inference_temp: float,
                   auto_temp: float, input_temp: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(input weights [n_in], generated-anchor weights [n_gen]) for the k-th generated view; they sum to 1.

    generated_distances are those of the generated anchors INSIDE the window (their max is taken there).
    """
    generated_distances = np.asarray(generated_distances, dtype=np.float64)
    w0 = 1.0 if len(generated_distances) == 0 else input_weight(k, num_views, inference_temp)
    w_inputs = softmax_split(input_distances, w0, input_temp)
    w_generated = softmax_split(generated_distances, 1.0 - w0, auto_temp)
    return w_inputs, w_generated


def plan_viewfusion(inputs: list[RelativePose], targets: list[RelativePose], window_deg: float = 125.0,
                    inference_temp: float = 0.5, auto_temp: float = 0.5, input_temp: float = 1.0) -> list[FusionStep]:
    """The whole ViewFusion schedule: one :class:`FusionStep` per target, in generation order."""
    assert inputs, "at least one input view"
    n_in, num_views = len(inputs), len(inputs) + len(targets)
    steps, done = [], []
    for k, target in enumerate(generation_order(targets, inputs[0])):
        pose = targets[target]
        window = [j for j in done if pose_distance(targets[j], pose) < window_deg]
        w_in, w_gen = fusion_weights(k, num_views, [pose_distance(p, pose) for p in inputs],
                                     [pose_distance(targets[j], pose) for j in window],
                                     inference_temp, auto_temp, input_temp)
        steps.append(FusionStep(target, list(range(n_in)) + [n_in + j for j in window],
                                np.concatenate([w_in, w_gen])))
        done.append(target)
    return steps


def plan_independent(inputs: list[RelativePose], targets: list[RelativePose], input_temp: float = 1.0) -> list[FusionStep]:
    """Plain Zero-1-to-3 (the baseline): every target conditioned on the inputs only."""
    n_in = len(inputs)
    return [FusionStep(t, list(range(n_in)),
                       softmax_split([pose_distance(p, targets[t]) for p in inputs], 1.0, input_temp))
            for t in range(len(targets))]
