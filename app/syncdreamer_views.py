"""The views stage with a SyncDreamer model: its 16 views from the input as the data stage read it, and, for
``diffusion.syncdreamer.sample_num`` > 1, the most 3D-consistent instance.

SyncDreamer prepares its input from the image itself (the original file in the run's input/ and its mask:
the image's own alpha or rembg's), not from Zero-1-to-3's recentred 256 px input. Instances are scored by
`img2mesh eval consistency`'s measure, the held-out re-render PSNR of the two half splits with the run's
recon settings (2 reconstructions per instance); it lives here, in app, because it reconstructs.

    views/             the kept instance: 16 views at elevation 30, azimuth = the input's + 22.5 k, radius 1.5
    views_samples/K/   every instance K (only with diffusion.syncdreamer.keep_samples=true)
    run.json           "syncdreamer": the sampling settings, each instance's score and which one was kept
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2mesh.data.images import load_image
from img2mesh.data.preprocess import PreparedInput
from img2mesh.data.views import Views

from .config import Config
from .rundir import RunDir

log = logging.getLogger(__name__)

SAMPLES_DIR = "views_samples"


def source_rgba(cfg: Config, rd: RunDir) -> tuple[np.ndarray, np.ndarray]:
    """The input image as the data stage read it (uint8 RGB [H, W, 3]) and its mask (uint8 [H, W])."""
    original = next(p for p in sorted(rd.input_dir.glob("original.*")))
    rgb = load_image(original, cfg.data.max_side).rgb
    with Image.open(rd.input_dir / "mask.png") as im:
        alpha = np.asarray(im.convert("L"))
    assert alpha.shape == rgb.shape[:2], f"mask {alpha.shape} does not match the input image {rgb.shape[:2]}"
    return rgb, alpha


def score_instances(instances: list[Views], cfg: Config, rd: RunDir, device: torch.device) -> list[dict]:
    """Each instance's consistency score (held-out PSNR, higher is better) and its two splits' PSNR."""
    from .evaluation.consistency import held_out_splits

    scores = []
    with tempfile.TemporaryDirectory(dir=rd.root, prefix=".scoring-") as work:
        for k, views in enumerate(instances):
            score, splits = held_out_splits(views, cfg.recon, Path(work) / str(k), seed=cfg.seed, device=device)
            scores.append({"instance": k, "score": round(score, 4),
                           "splits": {name: round(split["psnr"], 4) for name, split in splits.items()}})
            log.info("instance %d: consistency %.2f dB (held-out PSNR)", k, score)
    return scores


def syncdreamer_views_stage(cfg: Config, prepared: PreparedInput, rd: RunDir, device: torch.device,
                            model=None) -> tuple[Views, list[Path]]:
    from img2mesh.diffusion.syncdreamer.generate import generate_syncdreamer_views

    from .stages import write_views_atomically

    rgb, alpha = source_rgba(cfg, rd)
    result = generate_syncdreamer_views(cfg.diffusion, rgb, alpha, prepared.camera, model=model, seed=cfg.seed,
                                        device=device, rembg_model=cfg.data.rembg_model)
    instances = result.instances
    scores = score_instances(instances, cfg, rd, device) if len(instances) > 1 else []
    kept = int(np.argmax([s["score"] for s in scores])) if scores else 0

    write_views_atomically(instances[kept], rd.views_dir)
    outputs = [rd.views_dir]
    samples = rd.root / SAMPLES_DIR
    shutil.rmtree(samples, ignore_errors=True)  # an earlier run's instances are not this run's
    if cfg.diffusion.syncdreamer.keep_samples:
        for k, views in enumerate(instances):
            write_views_atomically(views, samples / str(k))
        outputs.append(samples)
    rd.meta["syncdreamer"] = {**result.settings, "sample_num": len(instances), "kept": kept,
                              "scores": scores, "score": "held-out re-render PSNR (img2mesh eval consistency)"}
    return instances[kept], outputs
