"""Schedules: pure functions of the training step (no state, so a resumed run sees the same values)."""
from __future__ import annotations

import math


def learning_rate_factor(step: int, total: int, warmup: int, final_ratio: float) -> float:
    """Multiplier of the base lr: linear warm-up over ``warmup`` steps, then cosine decay to ``final_ratio``.

    NeuS's schedule: at step ``total`` the factor is exactly ``final_ratio``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ramp(step: int, total: int, start: float, full: float) -> float:
    """0 before ``start``, 1 from ``full`` on, linear in between (both fractions of ``total`` steps)."""
    t = step / max(1, total)
    if t < start:
        return 0.0
    if full <= start or t >= full:
        return 1.0
    return (t - start) / (full - start)


def loss_weight(lam: float, schedule: list[float] | None, step: int, total: int) -> float:
    """``lam`` scaled by the loss's [start, full] ramp (always on when it has none)."""
    if lam == 0.0:
        return 0.0
    if not schedule:
        return lam
    assert len(schedule) == 2, f"a loss schedule is [start, full] fractions, got {schedule}"
    return lam * ramp(step, total, float(schedule[0]), float(schedule[1]))


def cos_anneal_ratio(step: int, anneal_steps: int) -> float:
    """NeuS's cos anneal: 0 -> 1 over ``anneal_steps`` (1 = the true SDF slope is used for alpha)."""
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, step / anneal_steps)
