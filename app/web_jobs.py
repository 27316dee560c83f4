"""The web app's work, without gradio: checked requests, one run folder per request, a worker thread per run.

``WebService`` holds what every request shares (the loaded Zero-1-to-3 model, the server's preset and
overrides, the output folder) and turns a :class:`Request` into a normal run directory under ``out``:
``img2mesh run --resume RUN`` or ``img2mesh export RUN`` continue it like any CLI run. Everything a user can
get wrong raises ``InputError`` with one line. The public job interface (the page and any other front end
sit on it):

- submit: ``job = service.start(Request(...))`` checks the request, makes its run folder (``job.rd.root``)
  and queues the run (one at a time, or ``concurrency``); the run is :func:`img2mesh.runner.run_pipeline`,
  the same runner as the CLI's, so a failed run that finished no stage leaves no folder behind.
- status: ``job.updates(interval)`` yields :class:`Snapshot` objects (stage, progress bar, finished stages
  with their seconds, cut-out, views, downloadable files, error) as the job changes, the last one
  ``finished``.
- cancel: ``job.cancel()`` stops the run at its next progress step; finished stages are kept.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from img2mesh.data.cameras import camera_from_spherical
from img2mesh.data.devices import resolve_device
from img2mesh.data.errors import Img2MeshError, InputError
from img2mesh.data.images import SUPPORTED, load_image
from img2mesh.data.io import atomic_path, atomic_write_bytes, png_bytes
from img2mesh.data.preprocess import recentre
from img2mesh.data.progress import listen
from img2mesh.data.scenes import check_scene_name, find_scene, list_scenes
from img2mesh.data.views import rgba_to_uint8

from img2mesh.recon.mesh.asset import obj_companions

from .config import Config, load_config, preset_names
from .rundir import RunDir, new_run_folder
from .runner import StageEvent, run_pipeline
from .stages import InputSource

log = logging.getLogger(__name__)

# What the page lets a request ask for; the same bounds are checked here, since API clients skip the sliders.
LIMITS = {
    "elevation": (-90.0, 90.0),
    "num_views": (2, 72),
    "steps": (1, 200),
    "seed": (0, 2**31 - 1),
    "target_faces": (0, 5_000_000),  # 0: no decimation
}
MIN_SIDE = 64  # px: below this the object is a few dozen pixels, upscaled 4x and more to Zero-1-to-3's 256 px
MAX_PIXELS = 50_000_000  # decoding is ~4 bytes per pixel before the downscale to data.max_side
MAX_UPLOAD_MB = 25
_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_label(name: str) -> str:
    """A run-folder name from an upload's file name: no separators, no dots in front, not empty."""
    label = _LABEL.sub("-", name).strip("-.")[:40]
    return label or "image"


def _bounded(key: str, value, kind=float):
    lo, hi = LIMITS[key]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{key.replace('_', ' ')} must be a number, got {value!r}") from None
    if isinstance(value, float) and kind is int and not float(value).is_integer():
        raise InputError(f"{key.replace('_', ' ')} must be a whole number, got {value}")
    if not (lo <= number <= hi) or (kind is float and not math.isfinite(number)):
        raise InputError(f"{key.replace('_', ' ')} must be between {lo} and {hi}, got {value}")
    return number


@dataclass
class Request:
    """What the page sends; None leaves the preset's value."""

    image: str | None = None  # an uploaded file (inside gradio's upload folder)
    scene: str | None = None  # one of WebService.scenes()
    keep_alpha: bool = True  # False: remove the background even where the image has an alpha channel
    elevation: float | None = None
    preset: str | None = None
    num_views: int | None = None
    steps: int | None = None
    seed: int | None = None
    texture: bool | None = None
    target_faces: int | None = None


def check_upload(path: str | Path, max_mb: float = MAX_UPLOAD_MB) -> tuple[int, int]:
    """Refuse what is not a usable image before anything is written; returns (width, height)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError("the upload is gone (the page was open too long?): upload the image again")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name} is an empty file (0 bytes)")
    if size > max_mb * 1e6:
        raise InputError(f"{name} is {size / 1e6:.1f} MB: the limit is {max_mb:g} MB")
    try:
        with Image.open(path) as im:  # reads the header only
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(f"{name} is not an image img2mesh can read (supported: {SUPPORTED})") from None
    if width * height > MAX_PIXELS:
        raise InputError(f"{name} is {width}x{height} px: the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{name} is {width}x{height} px, too small: give at least {MIN_SIDE} px on each side")
    return width, height


def _user_message(error: Img2MeshError, path: Path | None) -> str:
    """The error's line with the server's upload path replaced by the file's own name."""
    text = str(error)
    return text.replace(str(path), path.name) if path is not None else text


@dataclass
class Snapshot:
    """What the page shows of a job at one moment."""

    run_dir: Path
    stage: str | None = None  # the stage running now
    bar: tuple[str, int, int | None] | None = None  # the progress bar of that stage: (label, n, total)
    done: dict[str, float] = field(default_factory=dict)  # finished stages -> seconds
    cutout: np.ndarray | None = None  # the preprocessed input, RGBA uint8
    views: list[np.ndarray] | None = None  # the views on white, RGB uint8, input first
    files: dict[str, Path] = field(default_factory=dict)  # glb, obj (a zip), ply, turntable -> staged file
    error: str | None = None
    finished: bool = False
    seconds: float = 0.0
    running: bool = False  # it holds a run slot (False: queued behind --concurrency others)


class Cancelled(Exception):
    """The page went away: the run stops at its next progress step (finished stages are kept)."""


class Job:
    """One request's run, in its own thread; ``updates()`` yields snapshots until it ends."""

    def __init__(self, service: "WebService", cfg: Config, rd: RunDir, source: InputSource, staging: Path):
        self.service, self.cfg, self.rd, self.source, self.staging = service, cfg, rd, source, staging
        self._state = Snapshot(run_dir=rd.root)
        self._changed = threading.Condition()
        self._version = 0
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"img2mesh-web {rd.root.name}", daemon=True)
        self._start = time.perf_counter()
        with service.jobs_lock:
            service.jobs.add(self)
        self._thread.start()

    # -- the worker ------------------------------------------------------------------------------------
    def _update(self, **changes) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(self._state, key, value)
            self._state.seconds = time.perf_counter() - self._start
            self._version += 1
            self._changed.notify_all()

    def _on_progress(self, label: str, n: int, total: int | None) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        self._update(bar=(label, n, total))

    def _on_stage(self, event: StageEvent) -> None:
        if not event.finished:
            self._update(stage=event.stage, bar=None)
            return
        shown = {}
        if event.stage == "preprocess":
            shown["cutout"] = rgba_to_uint8(event.output.rgba)
        elif event.stage == "views":
            shown["views"] = [rgba_to_uint8(v.rgb_on_white) for v in event.output]
        self._update(done={**self._state.done, event.stage: event.seconds}, **shown)

    def _work(self) -> None:
        try:
            # one GPU job at a time (or --concurrency), whatever the queue lets through; a queued job that is
            # cancelled leaves the queue at once
            while not self.service.gpu.acquire(timeout=0.1):
                if self._cancel.is_set():
                    raise Cancelled()
            try:
                if self._cancel.is_set():
                    raise Cancelled()
                self._update(running=True)
                with listen(self._on_progress):
                    self._run()
            finally:
                self.service.gpu.release()
        except Cancelled:
            self.rd.remove_if_unfinished()  # cancelled in the queue: as the runner does with a run that ends early
            log.info("%s: cancelled, finished stages are kept", self.rd.root)
            self._update(error="cancelled", finished=True)
        except Img2MeshError as e:
            log.info("%s: %s", self.rd.root, e)
            self._update(error=_user_message(e, self.source.image_path), finished=True)
        except Exception as e:  # a bug: the traceback goes to the server log, one line to the page
            log.exception("%s failed", self.rd.root)
            self._update(error=f"internal error ({type(e).__name__}); the server log has the details",
                         finished=True)
        finally:
            with self.service.jobs_lock:
                self.service.jobs.discard(self)

    def _run(self) -> None:
        result = run_pipeline(self.cfg, self.rd, self.source, model=self.service.model, on_stage=self._on_stage)
        files = stage_downloads(result, self.rd.root, self.staging, self.source.label)
        self._update(stage=None, bar=None, files=files, finished=True)

    # -- the page's side -------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def snapshot(self) -> Snapshot:
        """The job as it is now (images shared, not copied)."""
        with self._changed:
            if not self._thread.is_alive() and not self._state.finished:  # it died of something uncaught
                self._state.error, self._state.finished = "internal error; the server log has the details", True
            return dataclasses.replace(self._state, done=dict(self._state.done), files=dict(self._state.files))

    def updates(self, interval: float = 0.25):
        """Snapshots as the job changes (at most one per ``interval``), the last one ``finished``."""
        seen = -1
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._version != seen, timeout=30.0)
                if not self._thread.is_alive() and not self._state.finished:  # it died of something uncaught
                    self._state.error, self._state.finished = "internal error; the server log has the details", True
                seen, state = self._version, dataclasses.replace(self._state, done=dict(self._state.done),
                                                                 files=dict(self._state.files))
            yield state
            if state.finished:
                return
            time.sleep(interval)

def obj_zip(obj: Path, target: Path) -> Path:
    """mesh.obj with its material library and the images it names, in one zip."""
    root = obj.parent.resolve()
    with atomic_path(target) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        for path in dict.fromkeys([obj, *obj_companions(obj)]):  # (never served half-written: appears by a rename)
            path = Path(path).resolve()
            if path.is_file() and path.is_relative_to(root):  # a name in a file never reaches outside the run
                z.write(path, path.relative_to(root).as_posix())
    return Path(target)


def stage_downloads(result, run_dir: Path, staging: Path, label: str) -> dict[str, Path]:
    """The files the page offers, linked into a folder of their own: gradio serves copies of these, never the
    run folders (which would expose every request's uploads)."""
    staging.mkdir(parents=True, exist_ok=True)

    def link(path: Path, name: str) -> Path:
        target = staging / name
        try:
            target.hardlink_to(path)
        except OSError:  # another file system
            shutil.copyfile(path, target)
        return target

    files = {}
    for fmt in ("glb", "ply"):
        if fmt in result.meshes:
            files[fmt] = link(result.meshes[fmt], f"{label}.{fmt}")
    if "obj" in result.meshes:
        files["obj"] = obj_zip(result.meshes["obj"], staging / f"{label}-obj.zip")
    if result.turntable is not None:
        files["turntable"] = link(result.turntable, f"{label}-turntable.mp4")
    return files


class WebService:
    """What every request shares: the model (loaded once), the server's config, the output folder."""

    def __init__(self, out: str | Path = "runs/web", preset: str | None = None, overrides=(), model=None,
                 scene_root=None, concurrency: int = 1, max_upload_mb: float = MAX_UPLOAD_MB):
        if concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {concurrency}")
        self.out = Path(out)
        self.preset = preset or "default"
        self.overrides = list(overrides)
        self.base = load_config(self.preset, self.overrides)  # a bad preset or key fails at start-up
        self.device = resolve_device(self.base.device)
        self.scene_root = scene_root
        self.max_upload_mb = max_upload_mb
        self.concurrency = concurrency
        self.gpu = threading.BoundedSemaphore(concurrency)
        self.jobs: set[Job] = set()  # the unfinished jobs, the page's and the REST API's (their shared queue)
        self.jobs_lock = threading.Lock()
        self._names = threading.Lock()
        if model is None or isinstance(model, (str, Path)):
            from .api import load_model

            source = str(model) if model is not None else self.base.diffusion.model
            if Path(source).expanduser().exists():  # run folders record it: make it work from any folder
                source = str(Path(source).expanduser().resolve())
            log.info("loading %s on %s", source, self.device)
            self.model_source = source
            self.model = load_model(source, device=str(self.device), dtype=self.base.diffusion.dtype)
        else:  # an already loaded bundle
            self.model_source = self.base.diffusion.model
            self.model = model
        self.staging_root = Path(tempfile.mkdtemp(prefix="img2mesh-web-"))  # last: a failed load leaves nothing

    def close(self) -> None:
        shutil.rmtree(self.staging_root, ignore_errors=True)

    # -- what the page offers --------------------------------------------------------------------------
    def presets(self) -> list[str]:
        return preset_names()

    def scenes(self) -> list[str]:
        return [name for name, _, _ in list_scenes(self.scene_root)]

    def config_for(self, preset: str | None) -> Config:
        """The preset as the server runs it (its own key=value overrides applied)."""
        return load_config(self._preset(preset), self.overrides)

    def _preset(self, preset: str | None) -> str:
        preset = preset or self.preset
        if preset not in self.presets() and preset != self.preset:
            raise InputError(f"unknown preset {preset!r}: choose one of {', '.join(self.presets())}")
        return preset

    def scene(self, name: str):
        if not name or check_scene_name(name) not in self.scenes():
            raise InputError(f"unknown scene {name!r}: pick one of the list")
        return find_scene(name, self.scene_root)

    def preview(self, image: str | None, scene: str | None, keep_alpha: bool = True) -> np.ndarray:
        """The cut-out the run will start from (RGBA uint8, 256 px), as the preprocess stage makes it."""
        from img2mesh.data.background import remove_background

        path = self.scene(scene).image_path if scene else self._upload(image)
        cfg = self.base.data
        try:
            loaded = load_image(path, cfg.max_side)
            alpha = loaded.alpha if keep_alpha else None
            if alpha is None:
                alpha = remove_background(loaded.rgb, cfg.rembg_model)
            return rgba_to_uint8(recentre(loaded.rgb, alpha, cfg.size, cfg.foreground_ratio))
        except Img2MeshError as e:
            raise InputError(_user_message(e, Path(path))) from None

    def _upload(self, image: str | None) -> Path:
        if not image:
            raise InputError("upload an image (or paste or drop one) or pick a scene first")
        check_upload(image, self.max_upload_mb)
        return Path(image)

    # -- a run -----------------------------------------------------------------------------------------
    def overrides_for(self, request: Request) -> list[str]:
        """The request as key=value overrides on top of the server's; the model and device stay the server's."""
        extra = []
        if request.elevation is not None and not request.scene:
            extra.append(f"data.elevation={_bounded('elevation', request.elevation)}")
        for key, section in (("num_views", "diffusion"), ("steps", "diffusion")):
            value = getattr(request, key)
            if value is not None:
                extra.append(f"{section}.{key}={_bounded(key, value, int)}")
        if request.seed is not None:
            extra.append(f"seed={_bounded('seed', request.seed, int)}")
        if request.texture is not None:
            extra.append(f"export.texture={bool(request.texture)}")
        if request.target_faces is not None:
            extra.append(f"export.target_faces={_bounded('target_faces', request.target_faces, int)}")
        # The shared model stays on its device and in its dtype; the run folder records what was really used,
        # so the CLI resumes it with the same model.
        pinned = [f"device={self.device}", f"diffusion.model={self.model_source}",
                  f"diffusion.dtype={self.base.diffusion.dtype}"]
        return [*self.overrides, *extra, *pinned]

    def _source(self, request: Request) -> InputSource:
        if request.scene:
            scene = self.scene(request.scene)
            camera = scene.camera
            if request.elevation is not None:
                elevation = _bounded("elevation", request.elevation)
                if abs(elevation - camera.elevation) > 0.05:  # moved off the scene's own: same lens and distance
                    camera = camera_from_spherical(elevation, camera.azimuth, camera.radius, camera.fov_x,
                                                   camera.width, camera.height)
            return InputSource(scene.image_path, camera, scene.name)
        path = self._upload(request.image)
        return InputSource(path, None, safe_label(path.stem))

    def _new_run_dir(self, label: str) -> RunDir:
        with self._names:  # two requests in the same second get two folders
            rd = RunDir.new(new_run_folder(self.out, label))
            rd.make()
            return rd

    def start(self, request: Request) -> Job:
        """Check the request, create its run folder and start it; InputError for anything the user can fix."""
        source = self._source(request)
        cfg = load_config(self._preset(request.preset), self.overrides_for(request))
        rd = self._new_run_dir(source.label)
        try:
            if source.camera is None or not request.keep_alpha:
                source = self._keep_input(request, source, rd)
        except BaseException:
            rd.remove_if_unfinished()  # nothing of a refused request stays
            raise
        return Job(self, cfg, rd, source, self.staging_root / f"{source.label}-{rd.root.name}")

    def resume(self, root: Path, cfg: Config, label: str) -> Job:
        """Continue a run folder this service started (a server restarted mid-job): ``cfg`` is the config it
        started with, so every finished stage is skipped."""
        root = Path(root)
        rd = RunDir.open(root) if (root / "run.json").is_file() else RunDir(root, {"stages": {}})
        originals = sorted(rd.input_dir.glob("original.*"))
        if not originals:
            raise InputError("the job's input is gone from its run folder: submit the image again")
        staging = self.staging_root / f"{label}-{root.name}-{time.strftime('%H%M%S')}"
        return Job(self, cfg, rd, InputSource(originals[0], None, label), staging)

    def _keep_input(self, request: Request, source: InputSource, rd: RunDir) -> InputSource:
        """The input goes into the run (gradio's copy of an upload is temporary), without its alpha when asked,
        so that a resumed run starts from the same pixels."""
        rd.input_dir.mkdir(parents=True, exist_ok=True)
        suffix = source.image_path.suffix.lower() or ".png"
        if not request.keep_alpha:
            loaded = load_image(source.image_path)
            if loaded.alpha is not None:
                target = rd.input_dir / "original.png"
                atomic_write_bytes(target, png_bytes(loaded.rgb))
                return InputSource(target, source.camera, source.label)
        target = rd.input_dir / f"original{suffix}"
        atomic_write_bytes(target, source.image_path.read_bytes())
        return InputSource(target, source.camera, source.label)
