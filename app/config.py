"""The one top-level config: component configs nested, loaded from configs/*.yaml with omegaconf.

`load_config("cpu", ["seed=1", "recon.steps=100"])` merges, in order: the dataclass defaults,
`configs/default.yaml`, the named preset (or any YAML path), then dotlist overrides. A resumed run starts
from its saved config instead (``base=RUN/config.yaml``), with only the preset's own keys and the overrides
on top. Unknown keys and values of the wrong type are errors that name the key and say which it is.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from img2mesh.data.config import DataConfig, check_data_config
from img2mesh.data.errors import InputError
from img2mesh.data.settings import check_fields, choice, number
from img2mesh.diffusion.config import DiffusionConfig, check_diffusion_config
from img2mesh.recon.config import RENAMED_KEYS, ReconConfig, check_recon_config
from img2mesh.recon.mesh import MeshConfig
from img2mesh.recon.mesh.asset import ORIGINS, TEXTURE_SIZES
from img2mesh.recon.mesh.asset import check_settings as check_asset_settings
from img2mesh.recon.mesh.export import FORMATS

# Export keys of earlier versions -> their key now (the recon ones are in recon/config.py's RENAMED_KEYS).
EXPORT_RENAMED_KEYS = {"export.mesh.target_faces": "export.target_faces"}


@dataclass
class ExportConfig:
    mesh: MeshConfig = field(default_factory=MeshConfig)  # marching cubes and clean-up of the trained field
    formats: list[str] = choice(list(FORMATS), FORMATS)
    # OBJ and GLB get a UV atlas (xatlas) and a base-colour texture baked from the field's colour; PLY keeps
    # vertex colours. false: vertex colours in all three.
    texture: bool = True
    texture_size: int = number(1024, low=TEXTURE_SIZES[0], high=TEXTURE_SIZES[1])  # texture side in pixels
    # quadric decimation to about this many faces before unwrapping (0 = the full mesh): the textured views match
    # the full mesh's at a fraction of the export time (experiments/README "Export within budget")
    target_faces: int = number(100000, low=0)
    # center (bounding box) | bottom (lowest point on the ground) | world (the views' frame)
    origin: str = choice("center", ORIGINS)
    # multiplies coordinates; the reconstruction's box is about 1 unit (1 m in Blender) across
    scale: float = number(1.0, above=0)
    turntable: bool = True  # turntable.mp4 of the final mesh
    turntable_frames: int = number(60, low=1)
    turntable_size: int = number(256, low=16)
    grid: bool = True  # views_grid.png of the generated views


@dataclass
class BatchConfig:
    """`img2mesh batch --ray`: the resources of one worker (an actor that loads the model once)."""

    num_gpus: Optional[float] = number(None, low=0)  # GPUs per worker; null: 1 when the cluster has GPUs, else 0
    num_cpus: float = number(1.0, above=0)  # CPUs per worker (on a cluster without GPUs: workers = its CPUs / this)
    workers: int = number(0, low=0)  # at most this many workers (0: as many as the resources allow)


@dataclass
class Config:
    seed: int = number(0, low=0)  # one seed for every sampler (diffusion noise, ray batches)
    device: str = choice("auto", ("auto", "cpu", "cuda", "mps"), pattern=r"cuda:[0-9]+",
                         words="auto, cpu, cuda, cuda:N or mps")
    # torch's CPU threads (torch.set_num_threads); 0 leaves torch's own setting (by default one per core: the
    # fastest on a machine to itself). Where other jobs share the cores, 1 is faster: OpenMP threads that wait
    # for a busy core stall every op. Fixed rather than guessed from the load: the count changes the numbers.
    threads: int = number(0, low=0)
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


@functools.lru_cache(maxsize=1)
def _structured_defaults():
    """The dataclass defaults as omegaconf's typed config, built once (merging copies it, never changes it)."""
    return OmegaConf.structured(Config)


@functools.lru_cache(maxsize=16)
def _layered(layers: tuple[tuple[Path, int], ...]):
    """The defaults with each YAML file of ``layers`` ((path, mtime) pairs: an edited file is read again)
    merged on top, in order."""
    merged = _structured_defaults()
    for path, _ in layers:
        with _config_errors(f" in {path}"):
            layer = OmegaConf.load(path)
            refuse_renamed(flatten(OmegaConf.to_container(layer)), str(path))
            merged = OmegaConf.merge(merged, layer)
    return merged


def load_config(name_or_path: str | None = "default", overrides: list[str] | tuple[str, ...] = (),
                base: str | os.PathLike | None = None) -> Config:
    """Defaults <- default.yaml <- preset <- ``key=value`` overrides; returns a plain ``Config``.

    ``base``: a saved config (a run's config.yaml) to start from instead of the defaults; a preset named as
    well then applies only the keys its own file sets (for ``default``: default.yaml's)."""
    if base is not None:
        layers = [Path(base)] + ([_preset_path(name_or_path)] if name_or_path else [])
    else:
        name_or_path = name_or_path or "default"
        layers = [_preset_path("default")] + ([_preset_path(name_or_path)] if name_or_path != "default" else [])
    merged = _layered(tuple((path, path.stat().st_mtime_ns) for path in layers))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise InputError(f"config override {bad[0]!r} must look like key=value (e.g. seed=1)")
    refuse_renamed([o.split("=", 1)[0].strip() for o in overrides], "the command line")
    with _config_errors(""):
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_object(merged)
    check_config(cfg)
    return cfg


def check_config(cfg: Config) -> None:
    """Every setting, checked when the config loads rather than where a stage uses it (hours later): one check
    per section, each refusing a bad value with one line that names the key and its allowed values."""
    check_fields(cfg, "", nested=False)  # seed, device, threads
    check_data_config(cfg.data)
    check_diffusion_config(cfg.diffusion)
    check_recon_config(cfg.recon)
    check_export_config(cfg.export)
    check_fields(cfg.batch, "batch")


def check_export_config(cfg: ExportConfig) -> None:
    check_fields(cfg, "export")
    check_asset_settings(target_faces=cfg.target_faces, texture_size=cfg.texture_size, origin=cfg.origin,
                         scale=cfg.scale)


@contextmanager
def _config_errors(where: str):
    """omegaconf's errors as one line that says whether the key or its value is wrong."""
    try:
        yield
    except OmegaConfBaseException as e:
        first = str(e).strip().splitlines()[0]
        key = getattr(e, "full_key", None)
        if isinstance(e, ConfigKeyError):
            raise InputError(f"unknown config key {key!r}{where}: {first}") from None
        if isinstance(e, ValidationError) and key:
            raise InputError(f"bad value for config key {key!r}{where}: {first}") from None
        raise InputError(f"bad config{f' key {key!r}' if key else ''}{where}: {first}") from None


def flatten(section, prefix: str = "") -> dict:
    """A config (section) as ``{"dotted.key": value}``, for saying which settings changed."""
    data = to_dict(section)
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    flat = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


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
