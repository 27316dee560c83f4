"""The one top-level config: component configs nested, loaded from configs/*.yaml with omegaconf.

`load_config("cpu", ["seed=1", "recon.steps=100"])` merges, in order: the dataclass defaults,
`configs/default.yaml`, the named preset (or any YAML path), then dotlist overrides. Unknown keys and
wrong types are errors that name the key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from img2mesh.data.config import DataConfig
from img2mesh.data.errors import InputError
from img2mesh.diffusion.config import DiffusionConfig
from img2mesh.recon.config import RENAMED_KEYS, ReconConfig
from img2mesh.recon.mesh import MeshConfig
from img2mesh.recon.mesh.asset import check_settings as check_asset_settings

# Export keys of earlier versions -> their key now (the recon ones are in recon/config.py's RENAMED_KEYS).
EXPORT_RENAMED_KEYS = {"export.mesh.target_faces": "export.target_faces"}


@dataclass
class ExportConfig:
    mesh: MeshConfig = field(default_factory=MeshConfig)  # marching cubes and clean-up of the trained field
    formats: list[str] = field(default_factory=lambda: ["obj", "glb", "ply"])
    # OBJ and GLB get a UV atlas (xatlas) and a base-colour texture baked from the field's colour; PLY keeps
    # vertex colours. false: vertex colours in all three.
    texture: bool = True
    texture_size: int = 1024  # texture side in pixels
    target_faces: int = 0  # quadric decimation to about this many faces, before unwrapping (0 = the full mesh)
    origin: str = "center"  # center (bounding box) | bottom (lowest point on the ground) | world (the views' frame)
    scale: float = 1.0  # multiplies coordinates; the reconstruction's box is about 1 unit (1 m in Blender) across
    turntable: bool = True  # turntable.mp4 of the final mesh
    turntable_frames: int = 60
    turntable_size: int = 256
    grid: bool = True  # views_grid.png of the generated views


@dataclass
class BatchConfig:
    """`img2mesh batch --ray`: the resources of one worker (an actor that loads the model once)."""

    num_gpus: Optional[float] = None  # GPUs per worker; null: 1 when the cluster has GPUs, else 0
    num_cpus: float = 1.0  # CPUs per worker (on a cluster without GPUs: workers = its CPUs / this)
    workers: int = 0  # at most this many workers (0: as many as the resources allow)


@dataclass
class Config:
    seed: int = 0  # one seed for every sampler (diffusion noise, ray batches)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("img2mesh.configs").iterdir() if p.name.endswith(".yaml"))


def _preset_path(name_or_path: str) -> Path | None:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not path.is_file():
            raise InputError(f"config file {path} does not exist")
        return path
    if name_or_path not in preset_names():
        raise InputError(f"unknown config preset {name_or_path!r}: choose one of {', '.join(preset_names())} "
                         "or give a YAML file path")
    return Path(str(resources.files("img2mesh.configs") / f"{name_or_path}.yaml"))


def load_config(name_or_path: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- default.yaml <- preset <- ``key=value`` overrides; returns a plain ``Config``."""
    try:
        merged = OmegaConf.structured(Config)
        layers = [_preset_path("default")]
        if name_or_path != "default":
            layers.append(_preset_path(name_or_path))
        for path in layers:
            layer = OmegaConf.load(path)
            refuse_renamed(flat_keys(OmegaConf.to_container(layer)), str(path))
            merged = OmegaConf.merge(merged, layer)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise InputError(f"config override {bad[0]!r} must look like key=value (e.g. seed=1)")
        refuse_renamed([o.split("=", 1)[0].strip() for o in overrides], "the command line")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        key = getattr(e, "full_key", None)
        raise InputError(f"bad config{f' key {key!r}' if key else ''}: {first}") from None
    # Export settings are checked now, not after hours of views and training.
    check_asset_settings(target_faces=cfg.export.target_faces, texture_size=cfg.export.texture_size,
                         origin=cfg.export.origin, scale=cfg.export.scale)
    return cfg


def flat_keys(tree, prefix: str = "") -> list[str]:
    """Dotted keys of a nested dict's leaves (and of its empty sections)."""
    if isinstance(tree, dict) and tree:
        return [k for key, value in tree.items() for k in flat_keys(value, f"{prefix}.{key}" if prefix else str(key))]
    return [prefix] if prefix else []


def refuse_renamed(keys, source: str) -> None:
    """Keys of earlier versions are refused with the key that replaced them, never silently ignored."""
    for key in keys:
        for old, new in {**RENAMED_KEYS, **EXPORT_RENAMED_KEYS}.items():
            if key == old or key.startswith(old + "."):
                raise InputError(f"config key {key!r} (in {source}) has moved: use {new}{key[len(old):]}")


def to_dict(cfg) -> dict:
    """A dataclass config (or section) as plain JSON-able data."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def config_hash(*parts) -> str:
    """Stable hash of config sections and upstream hashes (order matters)."""
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
