"""A ground-truth-free 3D-consistency score for a set of posed views.

Views that are renders of one 3D object can be explained by one field: fit the reconstructor to half of
them and it predicts the other half. Inconsistent views (each generated on its own) cannot all be
explained, so the held-out views come out blurred or wrong. The score is the held-out PSNR, averaged over
the two splits (even-indexed views -> odd-indexed ones, and back); the all-views re-render PSNR says how well
one field fits everything at once. Higher is more consistent. Deterministic for a fixed seed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_text
from img2mesh.data.views import Views, on_white
from img2mesh.recon import views_grid
from img2mesh.recon.config import ReconConfig
from img2mesh.recon.methods import METHODS
from img2mesh.recon.field_file import load_field
from img2mesh.recon.field_outputs import render_field
from img2mesh.recon.stage import reconstruct
from img2mesh.recon.start.views import resize_views

from .image_metrics import psnr, ssim


@dataclass
class ConsistencyReport:
    splits: dict[str, dict]  # split name -> {"psnr", "ssim", "fit": [...], "held_out": [...]}
    score: float  # mean held-out PSNR over the two splits

    def to_json(self) -> str:
        return json.dumps({"score": self.score, "splits": self.splits}, indent=2)


def fit_and_score(views: Views, fit: list[int], test: list[int], cfg: ReconConfig, out_dir: Path, seed: int,
                  device: torch.device | str) -> dict:
    """Reconstruct from views ``fit``, render the cameras of ``test`` and compare with those views."""
    result = reconstruct(cfg, Views([views[i] for i in fit]), out_dir, seed=seed, device=device, resume=False)
    field = load_field(result.field_path, device=device)
    truth = [views[i] for i in test]
    renders = render_field(field, cfg, [v.camera for v in truth])
    pairs = [(on_white(r), v.rgb_on_white) for r, v in zip(renders, truth)]
    views_grid([img for pair in zip(*pairs) for img in pair], out_dir / "renders_vs_views.png", cols=len(pairs))
    return {"psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
            "ssim": float(np.mean([ssim(a, b) for a, b in pairs])), "fit": fit, "held_out": test}


def held_out_splits(views: Views, cfg: ReconConfig, out_dir: Path, *, seed: int = 0,
                    device: torch.device | str = "cpu") -> tuple[float, dict[str, dict]]:
    """The score (mean held-out PSNR) and its two splits: even-indexed views -> odd-indexed ones, and back."""
    if len(views) < 4:
        raise InputError(f"the consistency score needs at least 4 views (got {len(views)}): it fits half of them "
                         "and predicts the other half")
    if cfg.method in METHODS and not METHODS[cfg.method].trains:
        raise InputError(f"recon.method={cfg.method} has no colour to predict views with: use recon.method=neus or voxel")
    views = resize_views(views, cfg.image_size)  # compare at the resolution the field is trained at
    even, odd = list(range(0, len(views), 2)), list(range(1, len(views), 2))
    splits = {"even -> odd": fit_and_score(views, even, odd, cfg, out_dir / "even", seed, device),
              "odd -> even": fit_and_score(views, odd, even, cfg, out_dir / "odd", seed, device)}
    return float(np.mean([split["psnr"] for split in splits.values()])), splits


def evaluate_consistency(views: Views, cfg: ReconConfig, out_dir: Path, *, seed: int = 0,
                         device: torch.device | str = "cpu") -> ConsistencyReport:
    score, splits = held_out_splits(views, cfg, out_dir, seed=seed, device=device)
    everything = list(range(len(views)))
    splits["all (re-render)"] = fit_and_score(resize_views(views, cfg.image_size), everything, everything, cfg,
                                              out_dir / "all", seed, device)
    report = ConsistencyReport(splits, score)
    atomic_write_text(out_dir / "consistency.json", report.to_json())
    return report
