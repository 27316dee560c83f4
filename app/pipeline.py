"""The stage bookkeeping of one run directory: each stage skipped when its outputs are intact (runner.py calls
the stages in order).

A stage's key hashes its own settings (config sections) and the output hash of the stage before it, so
changing `recon.steps` reruns recon and export but keeps the generated views. Before anything runs,
:meth:`Pipeline.plan` says which stages will run and why; a finished views or recon stage (minutes to
hours of work) is rerun only when the caller allows it (``rerun``, the CLI's ``--rerun STAGE``). The
run's config is saved only once a stage has finished with it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import InputError
from img2mesh.data.views import Views
from img2mesh.recon.config import stage_settings

from . import stages
from .config import Config, config_hash, flatten, to_yaml
from .rundir import RunDir, environment_info

log = logging.getLogger(__name__)

STAGES = ("preprocess", "views", "recon", "export")
GUARDED = ("views", "recon")  # minutes to hours of work: a finished one reruns only when allowed
RESUMABLE = ("recon",)  # a killed stage that continues from its checkpoint: its time adds up across runs


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


@dataclass
class StagePlan:
    """What a stage will do in this invocation, before anything runs."""

    name: str
    action: str  # "skip" | "run" (no finished outputs) | "rerun" (outputs out of date)
    reason: str = ""  # why it runs, in words
    changed: bool = False  # it reruns because a setting or its input changed (not to repair its files)

    @property
    def runs(self) -> bool:
        return self.action != "skip"


def apply_threads(threads: int) -> None:
    """torch's CPU thread count for this process (0 leaves torch's default)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def _changes(old: dict, new: dict, limit: int = 3) -> str:
    """``"recon.steps 1000 -> 40, seed 0 -> 1"``: the settings that differ between two flattened configs."""
    diff = [f"{k} {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    return ", ".join(diff[:limit]) + (f" and {len(diff) - limit} more" if len(diff) > limit else "")


class Pipeline:
    """One run directory, its config, and the stage bookkeeping.

    ``rerun``: stages allowed to run again although they finished before (each allows the stages after it
    too); without it a changed setting that would redo views or recon is an error that says which."""

    def __init__(self, cfg: Config, rd: RunDir, model=None, rerun=()):
        unknown = sorted(set(rerun) - set(STAGES))
        if unknown:
            raise InputError(f"unknown stage {unknown[0]!r} for --rerun: choose from {', '.join(STAGES)}")
        self.cfg, self.rd, self.model, self.rerun = cfg, rd, model, set(rerun)
        self.device = resolve_device(cfg.device)
        apply_threads(cfg.threads)
        self.result = RunResult(out=rd.root)
        self._config_saved = False
        self._resumed: set[str] = set()  # stages that continued from a checkpoint in this invocation

    # -- keys ---------------------------------------------------------------------------------------------
    def settings(self, name: str) -> dict:
        """The config a stage's outputs depend on, by name (hashed into its key, recorded to explain reruns)."""
        c = self.cfg
        return {"preprocess": {"data": c.data},
                # the generated views' masks come from rembg: its model is part of the views
                "views": {"diffusion": c.diffusion, "seed": c.seed, "data.rembg_model": c.data.rembg_model},
                "given_views": {},
                "recon": {"recon": stage_settings(c.recon), "seed": c.seed},
                "export": {"export": c.export}}[name]

    def key(self, name: str, inputs: tuple) -> str:
        return config_hash(*self.settings(name).values(), *inputs)

    def plan(self, names: list[str], inputs: tuple) -> list[StagePlan]:
        """What each of ``names`` (stages in order; "given_views" is `recon --views`'s copy) will do, the first
        one fed ``inputs``. Raises when a finished guarded stage would rerun without ``rerun`` allowing it."""
        plans, upstream, allowed = [], None, False
        for name in names:
            stage = "views" if name == "given_views" else name
            allowed = allowed or stage in self.rerun
            rec = self.rd.record(stage)
            settings = flatten(self.settings(name))
            if upstream is None:
                key = self.key(name, inputs)
            if rec is None:
                plan = StagePlan(stage, "run", "not run yet")
            elif upstream is not None:
                plan = StagePlan(stage, "rerun", f"its input changes ({upstream.name} reruns: {upstream.reason})",
                                 upstream.changed)
            elif rec.key != key:
                if rec.settings and rec.settings != settings:
                    reason = f"settings changed: {_changes(rec.settings, settings)}"
                else:  # same settings (or a record without them): what it was computed from changed
                    reason = "its input changed" if rec.settings else "its settings or input changed"
                plan = StagePlan(stage, "rerun", reason, changed=True)
            elif self.rd.intact(stage, key) is None:
                plan = StagePlan(stage, "rerun", "its files changed or are missing")
            else:
                plan = StagePlan(stage, "skip")
                inputs = (rec.output_hash,)
            if plan.changed and stage in GUARDED and not allowed:
                what = "regenerated" if stage == "views" else "rerun"
                raise InputError(f"the finished {stage} stage would be {what}, {plan.reason}: pass --rerun {stage} "
                                 "to go ahead (the stages after it rerun too), or keep the settings it was made with")
            if plan.runs and upstream is None:
                upstream = plan
            plans.append(plan)
        return plans

    # -- running ------------------------------------------------------------------------------------------
    def _save_config(self) -> None:
        """The config and environment of this invocation, saved with the first stage it finishes."""
        if self._config_saved:
            return
        from img2mesh.data.io import atomic_write_text

        self.rd.meta["config"] = to_yaml(self.cfg)
        self.rd.meta["environment"] = environment_info(self.device)
        atomic_write_text(self.rd.config_yaml, to_yaml(self.cfg))
        self._config_saved = True

    def _stage(self, name: str, key: str, settings: dict, compute, load):
        """Skip ``name`` if its record matches ``key`` and its files are intact, else compute it."""
        rec = self.rd.intact(name, key)
        if rec is not None:
            log.info("%-10s up to date, skipped", name)
            self.result.stages_skipped.append(name)
            self.result.timings[name] = rec.seconds
            return load(), rec
        log.info("%-10s running", name)
        partial = self.rd.meta.get("partial", {}).get(name)
        earlier = partial["seconds"] if partial and partial["key"] == key else 0.0
        start = time.perf_counter()
        try:
            value, outputs = compute()
        except BaseException:
            if name in RESUMABLE and self.rd.run_json.is_file():  # its checkpoint carries the work over
                self.rd.meta.setdefault("partial", {})[name] = {"key": key,
                                                                "seconds": earlier + time.perf_counter() - start}
                self.rd.save()
            raise
        seconds = time.perf_counter() - start + (earlier if name in self._resumed else 0.0)
        self.rd.meta.get("partial", {}).pop(name, None)
        self._save_config()
        rec = self.rd.finish(name, key, outputs, seconds, settings=flatten(settings))
        self.result.stages_run.append(name)
        self.result.timings[name] = rec.seconds
        log.info("%-10s done in %.1f s", name, rec.seconds)
        return value, rec

    # -- the stages, each keyed on its settings and its input ----------------------------------------------
    def preprocess(self, source: stages.InputSource, loaded=None):
        """``loaded``: the source image already read (and checked) by the caller."""
        return self._stage("preprocess", self.key("preprocess", (stages.source_key(source),)),
                           self.settings("preprocess"),
                           lambda: stages.preprocess_stage(self.cfg, source, self.rd, loaded),
                           lambda: stages.load_prepared(self.rd))

    def views(self, prepared, upstream):
        def compute():
            from img2mesh.diffusion.config import requested_dtype
            from img2mesh.diffusion.precision import precision_record

            out = stages.views_stage(self.cfg, prepared, self.rd, self.device, self.model)
            self.rd.meta["views"] = precision_record(requested_dtype(self.cfg.diffusion), self.device,
                                                     self.model)  # run.json
            return out

        return self._stage("views", self.key("views", (upstream.output_hash,)), self.settings("views"), compute,
                           lambda: stages.load_views(self.rd))

    @staticmethod
    def given_views_inputs(views_dir: Path) -> tuple:
        """What `recon --views DIR`'s copy is keyed on: the folder's files and which transforms file it has."""
        from img2mesh.data.io import sha256_file
        from img2mesh.data.views import find_transforms

        return (sorted((p.name, sha256_file(p)) for p in Path(views_dir).iterdir() if p.is_file()),
                find_transforms(Path(views_dir)).name)

    def given_views(self, views_dir: Path, views: Views, inputs: tuple | None = None):
        """`recon --views DIR`: the views stage is a copy of DIR (already read and validated as ``views``)."""
        inputs = inputs if inputs is not None else self.given_views_inputs(views_dir)
        return self._stage("views", self.key("given_views", inputs), {},
                           lambda: stages.copy_views(views, self.rd), lambda: stages.load_views(self.rd))

    def recon(self, views: Views, upstream):
        key = self.key("recon", (upstream.output_hash,))

        def compute():
            result, outputs = stages.recon_stage(self.cfg, views, self.rd, self.device, key)
            if result.stats.get("resumed_from"):
                self._resumed.add("recon")
            # How training ended, to tell a healthy run from one that barely held (run.json "recon").
            self.rd.meta["recon"] = {"method": result.method, "steps": result.steps, "final_psnr": result.psnr,
                                     **{k: result.stats[k] for k in ("inv_s", "rollbacks", "softened_masks", "up")
                                        if k in result.stats}}
            return result.field_path, outputs

        def load():  # the field file is the recon record's one output
            return self.rd.root / next(iter(self.rd.record("recon").outputs))

        return self._stage("recon", key, self.settings("recon"), compute, load)

    def export(self, field_path: Path, views: Views | None, upstream):
        files, rec = self._stage("export", self.key("export", (upstream.output_hash,)), self.settings("export"),
                                 lambda: stages.export_stage(self.cfg, Path(field_path), views, self.rd, self.device),
                                 lambda: stages.load_mesh_files(self.cfg, self.rd))
        self.result.meshes, self.result.grid, self.result.turntable = files.meshes, files.grid, files.turntable
        return files, rec

    def finish(self) -> RunResult:
        if self.result.stages_run:  # a resume that skipped everything leaves the run's files as they were
            self.rd.meta["timings"] = self.rd.timings()
            self.rd.save()
        if self.rd.views_dir.is_dir():
            self.result.views_dir = self.rd.views_dir
        return self.result
