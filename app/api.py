"""The Python API, mirroring the CLI: ``img2mesh.run(image_or_scene, config=..., out=...) -> RunResult``.

    import img2mesh
    result = img2mesh.run("photo.png", config="cpu", overrides=["seed=1"], out="runs/photo")
    result.meshes["glb"]

For batches, load the Zero-1-to-3 model once and pass it to every call:
    model = img2mesh.load_model("kxic/zero123-xl", device="cuda")
    for path in paths: img2mesh.run(path, model=model, out=f"runs/{path.stem}")
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes, png_bytes
from img2mesh.data.progress import set_quiet
from img2mesh.data.scenes import find_scene, is_scene_dir, read_scene
from img2mesh.data.views import TRANSFORMS_NAMES, read_views

from .config import load_config
from .pipeline import RunResult, apply_threads
from .rundir import RunDir, check_new_folder, new_run_folder
from .runner import RUNS, GivenViews, load_run_config, new_run, run_pipeline
from .stages import InputSource, camera_from_json

log = logging.getLogger(__name__)

ImageLike = str | os.PathLike | Image.Image | np.ndarray


def resolve_source(image_or_scene: ImageLike, scene_root=None, kind: str | None = None) -> InputSource:
    """An image file, a scene folder, or a scene name (searched as `img2mesh scenes` lists).

    ``kind`` ("image" or "scene") says what the user asked for; None guesses from what exists.
    """
    if isinstance(image_or_scene, (Image.Image, np.ndarray)):
        raise TypeError("in-memory images are written into the run first; use run(), not resolve_source()")
    path = Path(image_or_scene)
    if kind == "scene" and not (path.is_dir() and is_scene_dir(path)):
        scene = find_scene(str(image_or_scene), scene_root)
        return InputSource(scene.image_path, scene.camera, scene.name)
    if kind == "image" and not path.is_file():
        raise InputError(f"image {path} does not exist" if not path.exists() else f"{path} is not an image file")
    if path.is_file():
        return InputSource(path, None, path.stem)
    if path.is_dir():
        if is_scene_dir(path):
            scene = read_scene(path)
            return InputSource(scene.image_path, scene.camera, scene.name)
        if any((path / n).is_file() for n in TRANSFORMS_NAMES):
            raise InputError(f"{path} is a views folder: reconstruct it with `img2mesh recon --views {path}`")
        raise InputError(f"{path} is a folder but not a scene (needs train/r_0.png and transforms_train.json)")
    if os.sep in str(image_or_scene) or path.suffix:
        raise InputError(f"input {path} does not exist")
    scene = find_scene(str(image_or_scene), scene_root)
    return InputSource(scene.image_path, scene.camera, scene.name)


def _in_memory_source(image, folder: Path) -> InputSource:
    """An in-memory image as a PNG in ``folder`` (the preprocess stage copies it into the run)."""
    arr = np.asarray(image.convert("RGBA") if isinstance(image, Image.Image) and image.mode not in ("RGB", "RGBA")
                     else image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    path = Path(folder) / "image.png"
    atomic_write_bytes(path, png_bytes(arr))
    return InputSource(path, None, "image")


def _saved_source(rd: RunDir) -> InputSource:
    src = rd.meta.get("source")
    if not src:
        raise InputError(f"{rd.root} has no recorded input; give the image or scene again")
    originals = sorted(rd.input_dir.glob("original.*"))
    path = originals[0] if originals else Path(src["image"])
    if not path.is_file():
        raise InputError(f"the input of {rd.root} is gone ({path}); give the image or scene again")
    return InputSource(path, camera_from_json(src["camera"]) if src["camera"] else None, src["label"])


def run(
    image_or_scene: ImageLike | None = None,
    config: str | None = None,
    overrides=(),
    out=None,
    resume=None,
    model=None,
    scene_root=None,
    stop_after: str = "export",
    quiet: bool = False,
    kind: str | None = None,
    rerun=(),
    on_stage=None,
) -> RunResult:
    """Run preprocess -> views -> recon -> export (or up to ``stop_after``) and return what was written.

    ``image_or_scene``: an image path, a PIL image or array, a scene folder or a scene name; may be omitted
    with ``resume`` (the run's saved input is used). ``config``: preset name or YAML path (default
    "default"; with ``resume`` the run's saved config, with the preset's own keys on top if one is given).
    ``overrides``: ``["key=value", ...]``. ``model``: a loaded Zero-1-to-3 bundle (reused across calls) or a
    hub id / path (sets diffusion.model). ``kind``: "image" or "scene" to say what ``image_or_scene`` is
    instead of guessing. ``rerun``: stages ("views", "recon") allowed to run again although finished, when
    a changed setting makes them out of date; without it that is an error saying which stage and why.
    ``on_stage``: called with a :class:`~img2mesh.runner.StageEvent` as each stage starts and ends (progress
    within a stage: :func:`img2mesh.data.progress.listen`).
    """
    set_quiet(quiet)
    if isinstance(model, (str, os.PathLike)):
        overrides = [*overrides, f"diffusion.model={model}"]
        model = None
    cfg, rd = load_run_config(config, overrides, out, resume)
    in_memory = isinstance(image_or_scene, (Image.Image, np.ndarray))
    source = None if image_or_scene is None or in_memory else resolve_source(image_or_scene, scene_root, kind)
    if source is None and not in_memory:
        if rd is None:
            raise InputError("give an image or a scene (or --resume a run)")
        source = _saved_source(rd)
    rd = rd or new_run(out, source.label if source else "image")
    with tempfile.TemporaryDirectory(prefix="img2mesh-") as scratch:
        if in_memory:  # a file like any other input: checked, hashed and copied the same way
            source = _in_memory_source(image_or_scene, Path(scratch))
        return run_pipeline(cfg, rd, source, stop_after=stop_after, model=model, rerun=rerun, on_stage=on_stage)


def reconstruct_views(views_dir, config: str | None = None, overrides=(), out=None, resume=None,
                      quiet: bool = False, rerun=()) -> RunResult:
    """`img2mesh recon --views DIR`: reconstruct and export from any NeRF-format folder of posed views."""
    set_quiet(quiet)
    views_dir = Path(views_dir)
    cfg, rd = load_run_config(config, overrides, out, resume)
    given = GivenViews(views_dir, read_views(views_dir))  # checked before the run folder is made
    rd = rd or new_run(out, views_dir.resolve().name or "views")
    return run_pipeline(cfg, rd, given, rerun=rerun)


def export_run(run_dir, config: str | None = None, overrides=(), quiet: bool = False) -> RunResult:
    """`img2mesh export RUN`: (re)mesh a run's trained field, e.g. with other `export.mesh.*` settings."""
    set_quiet(quiet)
    cfg, rd = load_run_config(config, overrides, resume=run_dir)
    return run_pipeline(cfg, rd, None)


def load_model(source: str = "kxic/zero123-xl", device: str | None = None, dtype: str | None = None, clip=None):
    """Load a model once to reuse across runs: Zero-1-to-3 (hub id, diffusers folder or LDM .ckpt) or SyncDreamer
    (converted folder, original .ckpt with its ``clip`` archive, or hub repository); the model says which."""
    from img2mesh.diffusion.generators import load_model as load_generator

    return load_generator(source, device=device, dtype=dtype, clip=clip)


def describe(result: RunResult) -> str:
    """The run as JSON (the CLI's ``--json``)."""
    return json.dumps({"out": str(result.out), "run": result.stages_run, "skipped": result.stages_skipped,
                       "timings": result.timings, "meshes": {k: str(v) for k, v in result.meshes.items()}}, indent=2)


def summary(result: RunResult) -> str:
    """The run in a few lines for people: where the mesh is, what ran and how long it took."""
    lines = []
    if result.mesh is not None:
        others = [p.name for p in result.meshes.values() if p != result.mesh]
        lines.append(f"mesh: {result.mesh}" + (f" (also {', '.join(others)})" if others else ""))
    if result.turntable is not None:
        lines.append(f"turntable: {result.turntable}")
    if result.grid is not None:
        lines.append(f"views grid: {result.grid}")
    elif result.views_dir is not None:
        lines.append(f"views: {result.views_dir}")
    ran = ", ".join(f"{name} {_duration(result.timings[name])}" for name in result.stages_run) or "nothing"
    skipped = f"; up to date: {', '.join(result.stages_skipped)}" if result.stages_skipped else ""
    lines.append(f"run folder: {result.out} (ran {ran}{skipped})")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _report_dir(out, label: str) -> Path:
    out = Path(out) if out is not None else new_run_folder(RUNS, label)
    check_new_folder(out, "choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def eval_nvs(objects_dir, config: str | None = None, overrides=(), out=None, *, layout: str = "syncdreamer16",
             elevation: float = 30.0, input_index: int = 0, up: str = "y", objects=(), model=None,
             size: int = 256, quiet: bool = False) -> str:
    """`img2mesh eval nvs`: novel-view PSNR/SSIM/LPIPS on ground-truth meshes; returns the summary table."""
    from .evaluation.nvs import METRICS, NVSConfig, evaluate_nvs
    from .evaluation.report import table

    set_quiet(quiet)
    cfg = load_config(config or "default", overrides)
    apply_threads(cfg.threads)
    nvs = NVSConfig(layout=layout, elevation=elevation, input_index=input_index, up=up, objects=list(objects),
                    size=size)
    out = _report_dir(out, "eval-nvs")
    results, note = evaluate_nvs(Path(objects_dir), nvs, cfg.diffusion, out, model=model, seed=cfg.seed,
                                 device=resolve_device(cfg.device))
    rows = [[r.name, *(r.mean(m) for m in METRICS)] for r in results]
    return table(["object", "PSNR", "SSIM", "LPIPS"], rows, mean_row=True) + f"\n{note}\nreport: {out}"


def eval_consistency(views_dir, config: str | None = None, overrides=(), out=None, quiet: bool = False) -> str:
    """`img2mesh eval consistency VIEWS_DIR`: held-out re-render scores of a views folder; returns the table."""
    from .evaluation.consistency import evaluate_consistency
    from .evaluation.report import table

    set_quiet(quiet)
    cfg = load_config(config or "default", overrides)
    views = read_views(views_dir)
    apply_threads(cfg.threads)
    out = _report_dir(out, "eval-consistency")
    report = evaluate_consistency(views, cfg.recon, out, seed=cfg.seed, device=resolve_device(cfg.device))
    rows = [[k, v["psnr"], v["ssim"]] for k, v in report.splits.items()]
    return table(["split", "PSNR", "SSIM"], rows) + f"\nconsistency score (held-out PSNR): {report.score:.3f}\nreport: {out}"
