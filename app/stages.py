"""The four stages as functions: (config, typed input, run dir) -> typed output, plus their on-disk form.

preprocess: InputSource -> PreparedInput   (input/)
views:      PreparedInput -> Views         (views/)
recon:      Views -> ReconResult           (recon/)
export:     ReconResult + Views -> MeshFiles (mesh.obj|glb|ply, views_grid.png, turntable.mp4)

Each ``*_stage`` computes and writes; each ``load_*`` rebuilds the output from disk for a resumed run.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from img2mesh.data.background import remove_background
from img2mesh.data.cameras import Camera, camera_from_spherical
from img2mesh.data.images import load_image
from img2mesh.data.io import atomic_write_bytes, atomic_write_text, png_bytes, sha256_file
from img2mesh.data.preprocess import PreparedInput, preprocess
from img2mesh.data.views import Views, read_views, rgba_to_uint8, write_views

from .config import Config
from .rundir import RunDir

log = logging.getLogger(__name__)


# -- inputs -------------------------------------------------------------------------------------------------
@dataclass
class InputSource:
    """Where the input image comes from and which camera took it."""

    image_path: Path
    camera: Camera | None  # None: built from the data config (an --image input)
    label: str  # scene name or image stem: names the run

    def describe(self) -> dict:
        return {"image": str(self.image_path), "label": self.label,
                "camera": None if self.camera is None else camera_to_json(self.camera)}


def camera_to_json(cam: Camera) -> dict:
    return {"transform_matrix": cam.c2w.tolist(), "camera_angle_x": cam.fov_x, "w": cam.width, "h": cam.height,
            "elevation": cam.elevation, "azimuth": cam.azimuth, "radius": cam.radius}


def camera_from_json(d: dict) -> Camera:
    return Camera(np.asarray(d["transform_matrix"]), float(d["camera_angle_x"]), int(d["w"]), int(d["h"]))


def input_camera(cfg: Config, source: InputSource, width: int, height: int) -> Camera:
    if source.camera is not None:
        return source.camera.resized(width, height)
    d = cfg.data
    return camera_from_spherical(d.elevation, d.azimuth, d.radius, math.radians(d.fov_deg), width, height)


# -- 1. preprocess ------------------------------------------------------------------------------------------
def preprocess_stage(cfg: Config, source: InputSource, rd: RunDir, loaded=None) -> tuple[PreparedInput, list[Path]]:
    """``loaded``: the source image as ``load_image`` read it (the caller's up-front check), else read here."""
    loaded = loaded if loaded is not None else load_image(source.image_path, cfg.data.max_side)
    alpha = loaded.alpha
    if alpha is None:
        log.info("removing the background with rembg (%s)", cfg.data.rembg_model)
        alpha = remove_background(loaded.rgb, cfg.data.rembg_model)
    camera = input_camera(cfg, source, loaded.rgb.shape[1], loaded.rgb.shape[0])
    prepared = preprocess(loaded.rgb, alpha, camera, cfg.data)

    d = rd.input_dir
    d.mkdir(parents=True, exist_ok=True)
    original = d / f"original{source.image_path.suffix.lower() or '.png'}"
    if source.image_path.resolve() != original.resolve():
        atomic_write_bytes(original, source.image_path.read_bytes())
    atomic_write_bytes(d / "mask.png", png_bytes(alpha))
    atomic_write_bytes(d / "preprocessed.png", png_bytes(rgba_to_uint8(prepared.rgba)))
    atomic_write_text(d / "camera.json", json.dumps({"notes": loaded.notes, **camera_to_json(prepared.camera)},
                                                    indent=2))
    return prepared, [original, d / "mask.png", d / "preprocessed.png", d / "camera.json"]


def load_prepared(rd: RunDir) -> PreparedInput:
    meta = json.loads((rd.input_dir / "camera.json").read_text())
    with Image.open(rd.input_dir / "preprocessed.png") as im:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    return PreparedInput(rgba=rgba, camera=camera_from_json(meta))


def source_key(source: InputSource) -> str:
    return json.dumps({"sha256": sha256_file(source.image_path), "camera": source.describe()["camera"]},
                      sort_keys=True)


# -- 2. views -----------------------------------------------------------------------------------------------
def views_stage(cfg: Config, prepared: PreparedInput, rd: RunDir, device: torch.device,
                model=None) -> tuple[Views, list[Path]]:
    from img2mesh.diffusion import generate_views
    from img2mesh.diffusion.generators import generator_of, generator_of_model

    # the model says which generator it is (SyncDreamer: app/syncdreamer_views.py)
    if (generator_of_model(model) if model is not None else generator_of(cfg.diffusion.model)) == "syncdreamer":
        from .syncdreamer_views import syncdreamer_views_stage

        return syncdreamer_views_stage(cfg, prepared, rd, device, model)
    views = generate_views(cfg.diffusion, prepared, model=model, seed=cfg.seed, device=device,
                           rembg_model=cfg.data.rembg_model)
    write_views_atomically(views, rd.views_dir)
    return views, [rd.views_dir]


def write_views_atomically(views: Views, directory: Path) -> None:
    from img2mesh.data.io import atomic_directory

    with atomic_directory(directory) as tmp:
        write_views(views, tmp)


def copy_views(views: Views, rd: RunDir) -> tuple[Views, list[Path]]:
    """`img2mesh recon --views DIR`: keep a copy of the given views in the run, so it is self-contained."""
    write_views_atomically(views, rd.views_dir)
    return views, [rd.views_dir]


def load_views(rd: RunDir) -> Views:
    return read_views(rd.views_dir)


# -- 3. recon -----------------------------------------------------------------------------------------------
def recon_stage(cfg: Config, views: Views, rd: RunDir, device: torch.device, key: str):
    """``key``: the stage's key. A checkpoint left by a killed run continues only under the same key: the
    trainer checks the recon settings, not the views or the seed it was trained with."""
    from img2mesh.recon import reconstruct
    from img2mesh.recon.train.trainer import CHECKPOINT_NAME

    marker = rd.recon_dir / "stage_key"
    if not marker.is_file() or marker.read_text().strip() != key:
        (rd.recon_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        atomic_write_text(marker, key)
    result = reconstruct(cfg.recon, views, rd.recon_dir, seed=cfg.seed, device=device, resume=True)
    return result, [Path(result.field_path)]


# -- 4. export ----------------------------------------------------------------------------------------------
@dataclass
class MeshFiles:
    meshes: dict[str, Path]  # format -> path
    grid: Path | None = None
    turntable: Path | None = None
    stats: dict = field(default_factory=dict)


def export_stage(cfg: Config, field_path: Path, views: Views | None, rd: RunDir,
                 device: torch.device) -> tuple[MeshFiles, list[Path]]:
    from img2mesh.recon import field_colors, field_to_mesh, load_field

    from .export_assets import export_assets

    e = cfg.export
    field_ = load_field(field_path, device=device)
    result = export_assets(e, field_to_mesh(field_, e.mesh), field_colors(field_), views, rd.root, device)
    files = MeshFiles(meshes=result.meshes, grid=result.grid, turntable=result.turntable, stats=result.stats)
    return files, result.outputs


def labelled(view) -> np.ndarray:
    """A view on white, uint8, with its camera written in the corner ("input" for the input view)."""
    from PIL import ImageDraw

    image = Image.fromarray((np.clip(view.rgb_on_white, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    cam = view.camera
    text = f"{'input ' if view.is_input else ''}az {cam.azimuth:.0f} el {cam.elevation:.0f}"
    ImageDraw.Draw(image).text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(image)


def load_mesh_files(cfg: Config, rd: RunDir) -> MeshFiles:
    meshes = {fmt: rd.root / f"mesh.{fmt}" for fmt in cfg.export.formats}
    grid, turntable = rd.root / "views_grid.png", rd.root / "turntable.mp4"
    return MeshFiles(meshes, grid if grid.exists() else None, turntable if turntable.exists() else None)
