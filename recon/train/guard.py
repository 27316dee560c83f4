"""A watch on training, so a run cannot silently diverge.

Every ``every`` steps the guard compares the recent training PSNR with the best seen so far, and the
surface's sharpness (NeuS: the soft width 1 / inv_s of the surface) with the size of a pixel on the object.
A healthy state is remembered (in memory). On a collapse, training rolls back to the last healthy state and
goes on at a lower learning rate; after ``max_rollbacks`` it stops with an error naming the likely cause.
A collapsed field is never saved as a result.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from img2mesh.data.errors import DivergedError


@dataclass
class HealthyState:
    step: int
    model: dict  # the field's and the per-view corrections' states
    optimizer: dict
    generator: torch.Tensor
    grid_resolutions: dict
    occupancy: dict | None


class Guard:
    """``cfg``: recon.guard; ``pixel``: world size of a pixel at the object (camera distance / focal);
    ``lr_key``, ``lr``: the method's learning-rate setting and its value (the error suggests a lower one)."""

    def __init__(self, cfg, pixel: float, lr_key: str = "recon.<method>.lr", lr: float | None = None):
        self.cfg, self.pixel = cfg, float(pixel)
        self.lr_key, self.lr = lr_key, lr
        self.best_psnr = -math.inf
        self.rollbacks = 0
        self.lr_scale = 1.0
        self.snapshot: HealthyState | None = None
        self.last_problem = ""

    def due(self, done: int) -> bool:
        return bool(self.cfg.enabled) and done % self.cfg.every == 0

    def problem(self, psnr: float, surface_width: float | None) -> str:
        """Why the state is unhealthy ("" if it is not)."""
        if not math.isfinite(psnr):
            return "the training loss is not a number"
        if psnr < self.best_psnr - self.cfg.psnr_drop:
            return f"the training PSNR fell from {self.best_psnr:.1f} to {psnr:.1f} dB"
        if surface_width is not None and surface_width < self.cfg.min_surface_px * self.pixel:
            return (f"the surface sharpened to {surface_width / self.pixel:.3f} of a pixel (NeuS inv_s "
                    f"{1.0 / surface_width:.0f}), past where samples still find it")
        return ""

    def remember(self, step: int, psnr: float, model, optimizer, generator, grid_resolutions, occupancy) -> None:
        self.best_psnr = max(self.best_psnr, psnr)
        self.snapshot = HealthyState(step, copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
                                 generator.get_state(), dict(grid_resolutions),
                                 None if occupancy is None else copy.deepcopy(occupancy.state_dict()))

    def give_up_or_roll_back(self, step: int, problem: str) -> HealthyState:
        """The healthy state to go back to (its learning rate lowered), or DivergedError when none is left."""
        self.last_problem = problem
        if self.snapshot is None or self.rollbacks >= self.cfg.max_rollbacks:
            raise DivergedError(
                f"the reconstruction diverged at step {step}: {problem}"
                + (f", also after {self.rollbacks} restarts at lower learning rates" if self.rollbacks else "")
                + f". Likely causes: too large a learning rate for these views (try {self.lower_lr()}), views "
                "that disagree with each other (masks or colours), or mask edges harder than a pixel")
        self.rollbacks += 1
        self.lr_scale *= self.cfg.lr_factor
        return self.snapshot

    def lower_lr(self) -> str:
        """The learning rate to start from: one step below the lowest the roll-backs tried."""
        if self.lr is None:
            return f"a lower {self.lr_key}"
        return f"{self.lr_key}={self.lr * self.lr_scale * self.cfg.lr_factor:.3g}"

    def state_dict(self) -> dict:
        return {"best_psnr": self.best_psnr, "rollbacks": self.rollbacks, "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict) -> None:
        self.best_psnr, self.rollbacks, self.lr_scale = state["best_psnr"], state["rollbacks"], state["lr_scale"]
