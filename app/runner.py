"""The one pipeline runner: the CLI, the Python API (api.py), batch (batch.py, through ``api.run``) and the web
jobs (web_jobs.py) all run their stages through :func:`run_pipeline`.

    cfg, rd = load_run_config(config, overrides, out=out, resume=resume)  # a bad setting stops here
    rd = rd or new_run(out, label)                                        # checked, nothing written yet
    result = run_pipeline(cfg, rd, start, stop_after="export", model=None, rerun=(), on_stage=None)

``start`` says where the run begins: an :class:`~img2mesh.stages.InputSource` (an image or a scene: preprocess,
views, recon, export, or up to ``stop_after``), :class:`GivenViews` (`recon --views DIR`: a copy of DIR is the
views stage, then recon and export) or None (`export RUN`: the export stage alone, from the run's field).
The runner plans the stages (refusing, without ``rerun``, a finished views or recon stage that changed settings
would redo), checks before any work what can fail early (the image, the weights, the background-removal model),
makes the run folder, runs the stages in order and calls ``on_stage(StageEvent)`` as each starts and ends
(progress bars within a stage: :func:`img2mesh.data.progress.listen`). On any failure a new run that finished
no stage is removed; otherwise the exception carries ``run_dir``, the folder that keeps the finished stages.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from img2mesh.data.errors import InputError
from img2mesh.data.views import Views, read_views

from .config import Config, load_config
from .pipeline import STAGES, Pipeline, RunResult
from .rundir import RunDir, new_run_folder
from .stages import InputSource, source_key

log = logging.getLogger(__name__)

RUNS = Path("runs")  # where a run without --out goes: runs/<label>/<date-time>


@dataclass
class GivenViews:
    """`img2mesh recon --views DIR`: a folder of posed views (already read and checked) as the views stage."""

    folder: Path
    views: Views


@dataclass
class StageEvent:
    """A stage starting (``finished`` False) or ending; ``output`` is what it made: PreparedInput (preprocess),
    Views (views), the field file's Path (recon), MeshFiles (export)."""

    stage: str
    finished: bool = False
    output: Any = None
    seconds: float = 0.0  # its compute time (for a stage that was up to date: the time recorded then)
    skipped: bool = False  # up to date: nothing ran


# -- the run folder and its config -----------------------------------------------------------------------
def load_run_config(config: str | None = None, overrides=(), out=None, resume=None) -> tuple[Config, RunDir | None]:
    """The config a run uses, loaded (and every setting checked) before anything else. For ``resume``: the
    run's saved config with the preset's own keys and the overrides on top, and the run, opened; otherwise
    the preset with the overrides, and None (:func:`new_run` names the folder once the input is known)."""
    if resume is None:
        return load_config(config or "default", overrides), None
    if out is not None and Path(out).resolve() != Path(resume).resolve():
        raise InputError("give either --out (new run) or --resume (existing run), not two different folders")
    rd = RunDir.open(Path(resume))
    if not rd.config_yaml.is_file():
        raise InputError(f"{rd.config_yaml} is missing: that run cannot be resumed; start a new run with --out")
    return load_config(config, overrides, base=rd.config_yaml), rd


def new_run(out, label: str) -> RunDir:
    """A new run in ``out`` (checked: it must not hold files), or in runs/<label>/<date-time>; nothing is
    written until the runner makes it."""
    return RunDir.new(Path(out) if out is not None else new_run_folder(RUNS, label))


# -- the runner ----------------------------------------------------------------------------------------------
def run_pipeline(cfg: Config, rd: RunDir, start: InputSource | GivenViews | None, *, stop_after: str = "export",
                 model=None, rerun=(), on_stage: Callable[[StageEvent], None] | None = None) -> RunResult:
    """Run the stages from ``start`` up to ``stop_after`` in ``rd`` (module docstring) and return what was
    written. ``model``: a loaded Zero-1-to-3 bundle to use instead of loading ``cfg.diffusion.model``;
    ``rerun``: stages allowed to run again although finished (CLI ``--rerun``)."""
    if stop_after not in STAGES:
        raise InputError(f"unknown stage {stop_after!r} to stop after: choose from {', '.join(STAGES)}")
    pipe = Pipeline(cfg, rd, model=model, rerun=rerun)

    def stage(name: str, compute):
        if on_stage is not None:
            on_stage(StageEvent(name))
        value, rec = compute()
        if on_stage is not None:
            on_stage(StageEvent(name, True, value, pipe.result.timings.get(name, 0.0),
                                name in pipe.result.stages_skipped))
        return value, rec

    with _kept_or_removed(rd):
        # 1. plan: which stages run, from what
        source = start if isinstance(start, InputSource) else None
        if source is not None:
            names, inputs = list(STAGES[:STAGES.index(stop_after) + 1]), (source_key(source),)
        elif isinstance(start, GivenViews):
            names, inputs = ["given_views", "recon", "export"], pipe.given_views_inputs(start.folder)
        else:
            trained = rd.record("recon")
            if trained is None:
                raise InputError(f"{rd.root} has no finished recon stage to export; run "
                                 f"`img2mesh run --resume {rd.root}`")
            names, inputs = ["export"], (trained.output_hash,)
        plans = pipe.plan(names, inputs)
        # 2. what can fail before any work
        loaded = _check_before_work(pipe, plans, source, model)
        # 3. the stages
        rd.make()
        if source is not None:
            rd.meta["source"] = source.describe()
            prepared, rec = stage("preprocess", lambda: pipe.preprocess(source, loaded))
            if stop_after == "preprocess":
                return pipe.finish()
            views, rec = stage("views", lambda: pipe.views(prepared, rec))
        elif isinstance(start, GivenViews):
            rd.meta["source"] = {"views": str(start.folder.resolve())}
            views, rec = stage("views", lambda: pipe.given_views(start.folder, start.views, inputs))
        if start is not None:
            if stop_after == "views":
                return pipe.finish()
            field_path, rec = stage("recon", lambda: pipe.recon(views, rec))
        else:
            views = read_views(rd.views_dir) if rd.views_dir.is_dir() else None
            field_path, rec = rd.root / next(iter(trained.outputs)), trained
        stage("export", lambda: pipe.export(field_path, views, rec))
        return pipe.finish()


@contextmanager
def _kept_or_removed(rd: RunDir):
    """On any failure a new run with no finished stage is removed (a failed start leaves no folder behind);
    otherwise the exception says which folder holds the finished stages (``run_dir``)."""
    try:
        yield
    except BaseException as e:
        if not rd.remove_if_unfinished():
            e.run_dir = rd.root
        raise


# -- checks before any work ----------------------------------------------------------------------------------
# Seconds per new view and DDIM step of the full-size Zero-1-to-3 on one core of a 2-core CPU, UNet rows plus
# CLIP and VAE, by the precision the UNet runs in (experiments/README.md, "Views on a CPU"); other precisions on
# a CPU (fp16 is emulated there) count as fp32.
CPU_SECONDS_PER_VIEW_STEP = {"fp32": 15.0, "bf16": 7.0}
CPU_WARN_SECONDS = 3 * 3600


def _cpu_precision(diffusion, device) -> str:
    """The precision the views will run in on this CPU (what ``diffusion.dtype`` resolves to), as a name."""
    import torch

    from img2mesh.diffusion.config import requested_dtype
    from img2mesh.diffusion.devices import chosen_dtype
    from img2mesh.diffusion.precision import DTYPE_NAMES

    dtype, _ = chosen_dtype(requested_dtype(diffusion), torch.device(device))
    return DTYPE_NAMES.get(dtype, "fp32")


def _warn_if_slow_on_cpu(cfg: Config, device) -> None:
    """The GPU preset on a CPU takes hours: say so before starting, with the way out."""
    import torch

    if torch.device(device).type != "cpu":
        return
    from img2mesh.diffusion.config import with_generator_defaults

    d = with_generator_defaults(cfg.diffusion, "zero123")
    precision = _cpu_precision(d, device)
    per_step = CPU_SECONDS_PER_VIEW_STEP.get(precision, CPU_SECONDS_PER_VIEW_STEP["fp32"])
    views = d.num_views * max(1, len(d.elevations)) - 1
    seconds = views * d.steps * per_step
    if seconds < CPU_WARN_SECONDS:
        return
    cpu = load_config("cpu").diffusion
    quick = (cpu.num_views - 1) * cpu.steps * per_step
    log.warning("running on the CPU: %d new views (a ring of %d with the input) x %d denoising steps of "
                "Zero-1-to-3 XL take about %.0f hours here in %s (~%.0f s per view and step on one core); `-c cpu` "
                "makes %d new views (a ring of %d) x %d steps (about %.1f hours), a GPU takes minutes", views,
                views + 1, d.steps, seconds / 3600, precision, per_step, cpu.num_views - 1, cpu.num_views,
                cpu.steps, quick / 3600)


def _hint_if_cpu_busy() -> None:
    import torch

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if torch.get_num_threads() > 1 and load >= cores:
        log.info("the CPU is already busy (load %.1f on %d cores): torch's %d threads wait for each other there; "
                 "--threads 1 is usually several times faster", load, cores, torch.get_num_threads())


def _check_before_work(pipe: Pipeline, plans, source: InputSource | None, model):
    """Everything that can fail before any work, checked before any work: the image, the weights, the
    background-removal model. Returns the image as read (for the preprocess stage), or None."""
    from img2mesh.data.background import check_model as check_rembg
    from img2mesh.data.images import load_image
    from img2mesh.diffusion.generators import check_model, check_settings, generator_of_model
    from img2mesh.diffusion.openvino_unet import check_backend

    runs = {p.name for p in plans if p.runs}
    loaded = None
    if "preprocess" in runs and source is not None:
        loaded = load_image(source.image_path, pipe.cfg.data.max_side)
        if loaded.alpha is None:
            check_rembg(pipe.cfg.data.rembg_model)
    if "views" in runs and source is not None:
        diffusion = pipe.cfg.diffusion
        generator = (check_model(diffusion.model, diffusion.syncdreamer.clip) if model is None
                     else generator_of_model(model))
        for note in check_settings(diffusion, generator):
            log.info("%s", note)
        check_rembg(pipe.cfg.data.rembg_model)
        if generator == "zero123":  # (its estimate is Zero-1-to-3 XL's; the OpenVINO UNet is Zero-1-to-3's)
            check_backend(diffusion.backend, pipe.device)
            _warn_if_slow_on_cpu(pipe.cfg, pipe.device)
    if runs & {"views", "recon"} and pipe.device.type == "cpu" and pipe.cfg.threads == 0:
        _hint_if_cpu_busy()
    for plan in plans:
        if plan.action == "rerun":
            log.info("%-10s reruns: %s", plan.name, plan.reason)
    return loaded
