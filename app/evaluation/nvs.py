"""Novel-view evaluation on ground-truth meshes (SyncDreamer's GSO protocol, docs/reference.md section 7).

For every object: normalise the mesh (bbox centred, longest side 1, file's up axis turned to +z), render
the camera layout (SyncDreamer's 16 views at 30 deg / distance 1.5, or a ring), give view ``input_index``
to the generator as the input (already a 256 px render on white, so no recentring), and score every other
view: PSNR on [0, 1] with a white background, SSIM, and LPIPS (VGG) when its weights are on disk.
Writes ``<out>/<object>/metrics.csv`` and ``grid.png`` (top: ground truth, bottom: generated), and
``<out>/summary.csv``; returns the per-object means.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from img2mesh.data.cameras import Camera, camera_layout
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_text
from img2mesh.data.preprocess import PreparedInput
from img2mesh.diffusion import DiffusionConfig, generate_views

from .image_metrics import psnr, ssim
from .lpips import find_lpips, lpips_distance
from .objects import find_objects

log = logging.getLogger(__name__)
METRICS = ("psnr", "ssim", "lpips")


@dataclass
class NVSConfig:
    layout: str = "syncdreamer16"  # syncdreamer16 | ringN | a cameras .json
    elevation: float = 30.0  # for ringN layouts
    radius: float = 1.5  # for ringN layouts (syncdreamer16 fixes its own)
    size: int = 256
    input_index: int = 0
    up: str = "y"  # up axis of the mesh files (GSO OBJs and most downloaded meshes are y-up)
    objects: list[str] = field(default_factory=list)  # empty: every object in the folder


@dataclass
class ObjectScores:
    name: str
    rows: list[dict]  # one per target view: view, azimuth, elevation, psnr, ssim, lpips (None if unavailable)

    def mean(self, metric: str) -> float | None:
        values = [r[metric] for r in self.rows if r[metric] is not None]
        return float(np.mean(values)) if values else None


def nvs_cameras(cfg: NVSConfig) -> list[Camera]:
    from img2mesh.data.cameras import DEFAULT_FOV_X

    cams = camera_layout(cfg.layout, elevation=cfg.elevation, radius=cfg.radius, fov_x=DEFAULT_FOV_X, size=cfg.size)
    if not 0 <= cfg.input_index < len(cams):
        raise InputError(f"input_index {cfg.input_index} is outside the layout's {len(cams)} views")
    return cams


def score_views(generated: list[np.ndarray], truth: list[np.ndarray], lpips_model=None, device="cpu") -> list[dict]:
    """[H, W, 3] images on white in [0, 1], paired in order -> one dict of metrics per pair."""
    rows = []
    for g, t in zip(generated, truth):
        rows.append({"psnr": psnr(g, t), "ssim": ssim(g, t),
                     "lpips": lpips_distance(lpips_model, g, t, device) if lpips_model is not None else None})
    return rows


def evaluate_object(name: str, mesh_path: Path, cfg: NVSConfig, diffusion: DiffusionConfig, model, seed: int,
                    out_dir: Path, lpips_model=None, device: torch.device | str = "cpu") -> ObjectScores:
    from img2mesh.recon import load_mesh, normalize_mesh, render_views

    cams = nvs_cameras(cfg)
    gt = render_views(normalize_mesh(load_mesh(mesh_path, up=cfg.up), 1.0), cams)
    source = gt[cfg.input_index]
    prepared = PreparedInput(rgba=np.concatenate([source.rgb_on_white, source.mask[..., None]], -1), camera=source.camera)
    targets = [i for i in range(len(cams)) if i != cfg.input_index]
    views = generate_views(diffusion, prepared, model=model, cameras=[cams[i] for i in targets], seed=seed,
                           device=device, remove_background=False)
    generated = [v for v in views if not v.is_input]
    matched = [_nearest(v.camera, [cams[i] for i in targets]) for v in generated]
    by_target = {targets[m]: v.rgb_on_white for m, v in zip(matched, generated)}
    truth = [gt[i].rgb_on_white for i in targets]
    images = [by_target[i] for i in targets]
    rows = score_views(images, truth, lpips_model, device)
    for i, row in zip(targets, rows):
        row.update(view=i, azimuth=round(cams[i].azimuth, 3), elevation=round(cams[i].elevation, 3))
    scores = ObjectScores(name, rows)
    obj_dir = out_dir / name
    obj_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(obj_dir / "metrics.csv", _csv(rows, ["view", "azimuth", "elevation", *METRICS]))
    from img2mesh.recon import views_grid

    views_grid([*truth, *images], obj_dir / "grid.png", cols=len(targets))
    return scores


def _nearest(camera: Camera, candidates: list[Camera]) -> int:
    d = [np.linalg.norm(camera.position - c.position) for c in candidates]
    j = int(np.argmin(d))
    if d[j] > 1e-4 * max(1.0, camera.radius):
        raise RuntimeError(f"generated view at {camera.position} matches no target camera")
    return j


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _fmt(row[k])) for k in columns})
    return buf.getvalue()


def _fmt(v):
    return f"{v:.6f}" if isinstance(v, float) and math.isfinite(v) else v


def evaluate_nvs(objects_dir: Path, cfg: NVSConfig, diffusion: DiffusionConfig, out_dir: Path, *, model=None,
                 seed: int = 0, device: torch.device | str = "cpu") -> tuple[list[ObjectScores], str]:
    """Every object in ``objects_dir``; returns the scores and a note on LPIPS availability."""
    from img2mesh.data.progress import progress

    objects = find_objects(objects_dir, cfg.objects or None)
    if model is None:
        from img2mesh.diffusion import load_zero123

        model = load_zero123(diffusion.model, device=device, dtype=diffusion.dtype)
    lpips_model, note = find_lpips()
    log.info(note)
    results = [evaluate_object(name, path, cfg, diffusion, model, seed, out_dir, lpips_model, device)
               for name, path in progress(list(objects.items()), desc="objects")]
    summary = [{"object": r.name, **{m: r.mean(m) for m in METRICS}} for r in results]
    summary.append({"object": "mean", **{m: _mean([s[m] for s in summary]) for m in METRICS}})
    atomic_write_text(out_dir / "summary.csv", _csv(summary, ["object", *METRICS]))
    return results, note


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
