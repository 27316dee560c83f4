"""Runs the stages in order over one run directory, skipping those whose outputs are intact.

A stage's key hashes its own config section and the output hash of the stage before it, so changing
`recon.steps` reruns recon and export but keeps the generated views.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from img2mesh.data.devices import resolve_device
from img2mesh.data.views import Views

from . import stages
from img2mesh.recon.config import stage_settings

from .config import Config, config_hash, to_dict, to_yaml
from .rundir import RunDir, environment_info

log = logging.getLogger(__name__)

STAGES = ("preprocess", "views", "recon", "export")


@dataclass
class RunResult:
    """What a run produced; paths are inside ``out``."""

    out: Path
    stages_run: list[str] = field(default_factory=list)
    stages_skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    views_dir: Path | None = None
    meshes: dict[str, Path] = field(default_factory=dict)
    grid: Path | None = None
    turntable: Path | None = None

    @property
    def mesh(self) -> Path | None:
        return self.meshes.get("glb") or next(iter(self.meshes.values()), None)


class Pipeline:
    """One run directory, its config, and the stage bookkeeping."""

    def __init__(self, cfg: Config, rd: RunDir, model=None):
        self.cfg, self.rd, self.model = cfg, rd, model
        self.device = resolve_device(cfg.device)
        self.result = RunResult(out=rd.root)
        rd.meta["config"] = to_yaml(cfg)
        rd.meta["environment"] = environment_info(self.device)
        from img2mesh.data.io import atomic_write_text

        atomic_write_text(rd.config_yaml, to_yaml(cfg))
        rd.save()

    def _stage(self, name: str, key: str, compute, load):
        """Skip ``name`` if its record matches ``key`` and its files are intact, else compute it."""
        rec = self.rd.intact(name, key)
        if rec is not None:
            log.info("%-10s up to date, skipped", name)
            self.result.stages_skipped.append(name)
            self.result.timings[name] = rec.seconds
            return load(), rec
        log.info("%-10s running", name)
        start = time.perf_counter()
        value, outputs = compute()
        rec = self.rd.finish(name, key, outputs, time.perf_counter() - start)
        self.result.stages_run.append(name)
        self.result.timings[name] = rec.seconds
        log.info("%-10s done in %.1f s", name, rec.seconds)
        return value, rec

    # -- the stages, each keyed on its config and its input ----------------------------------------------
    def preprocess(self, source: stages.InputSource):
        key = config_hash(self.cfg.data, stages.source_key(source))
        return self._stage("preprocess", key, lambda: stages.preprocess_stage(self.cfg, source, self.rd),
                           lambda: stages.load_prepared(self.rd))

    def views(self, prepared, upstream):
        key = config_hash(self.cfg.diffusion, self.cfg.seed, upstream.output_hash)
        return self._stage("views", key, lambda: stages.views_stage(self.cfg, prepared, self.rd, self.device,
                                                                     self.model),
                           lambda: stages.load_views(self.rd))

    def given_views(self, views_dir: Path, views: Views):
        """`recon --views DIR`: the views stage is a copy of DIR (already read and validated as ``views``)."""
        from img2mesh.data.io import sha256_file
        from img2mesh.data.views import find_transforms

        key = config_hash(sorted((p.name, sha256_file(p)) for p in Path(views_dir).iterdir() if p.is_file()),
                          find_transforms(Path(views_dir)).name)
        return self._stage("views", key, lambda: stages.copy_views(views, self.rd),
                           lambda: stages.load_views(self.rd))

    def recon(self, views: Views, upstream):
        key = config_hash(stage_settings(self.cfg.recon), self.cfg.seed, upstream.output_hash)

        def compute():
            result, outputs = stages.recon_stage(self.cfg, views, self.rd, self.device)
            # How training ended, to tell a healthy run from one that barely held (run.json "recon").
            self.rd.meta["recon"] = {"method": result.method, "steps": result.steps, "final_psnr": result.psnr,
                                     **{k: result.stats[k] for k in ("inv_s", "rollbacks", "softened_masks", "up")
                                        if k in result.stats}}
            return result.field_path, outputs

        def load():  # the field file is the recon record's one output
            return self.rd.root / next(iter(self.rd.record("recon").outputs))

        return self._stage("recon", key, compute, load)

    def export(self, field_path: Path, views: Views | None, upstream):
        key = config_hash(self.cfg.export, upstream.output_hash)
        files, _ = self._stage("export", key,
                               lambda: stages.export_stage(self.cfg, Path(field_path), views, self.rd, self.device),
                               lambda: stages.load_mesh_files(self.cfg, self.rd))
        self.result.meshes, self.result.grid, self.result.turntable = files.meshes, files.grid, files.turntable
        return files

    def finish(self) -> RunResult:
        self.rd.meta["timings"] = self.rd.timings()
        self.rd.save()
        if self.rd.views_dir.is_dir():
            self.result.views_dir = self.rd.views_dir
        return self.result
