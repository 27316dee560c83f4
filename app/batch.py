"""`img2mesh batch INPUTS --out DIR`: one run folder per image, in this process or on a Ray cluster.

INPUTS is a folder (its images, by name), a glob (``"photos/*.jpg"``), or a list file (``.txt`` / ``.csv``):
one image per line, optionally followed by its camera elevation in degrees (``mug.jpg,10``); a header row
naming the columns ``image`` and ``elevation`` is allowed. Relative paths in a list are relative to the list.

Each image runs in ``DIR/<stem>/``, an ordinary run folder (``img2mesh export DIR/<stem>`` works on it);
names are made unique in input order (``cat``, ``cat-2``), and an image keeps the folder a run of it already
has. ``DIR/summary.csv`` is rewritten after every image: status (ok, failed, pending), the error, the seconds
of each stage, the mesh paths (relative to DIR). A failing image is recorded and the batch goes on.
Running the same command again resumes every folder: up-to-date stages are skipped, so finished images cost
nothing, unfinished ones continue where they stopped, and failed ones are tried again.

Locally the images run one after another and the Zero-1-to-3 model is loaded once, when the first image needs
new views. With ``ray`` (an address, ``auto`` for the cluster ``ray start`` made on this machine, or ``local``
for a private instance) each image is one task on a pool of actors, one per ``batch.num_gpus`` GPUs (per
``batch.num_cpus`` CPUs on a cluster without GPUs), each loading the model once; DIR must be a path every node
sees (a shared filesystem), and the driver gathers the rows into the summary.
"""
from __future__ import annotations

import csv
import gc
import glob
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from img2mesh.data.errors import Img2MeshError, InputError, UnavailableError
from img2mesh.data.io import atomic_write_text
from img2mesh.data.progress import is_quiet, progress

from img2mesh.recon.mesh.export import FORMATS

from .config import load_config
from .pipeline import STAGES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
LIST_SUFFIXES = (".txt", ".csv")
FIELDS = ["image", "run", "status", "error", "stages_run", "seconds",
          *(f"seconds_{s}" for s in STAGES), *(f"mesh_{f}" for f in FORMATS)]
SUMMARY = "summary.csv"
MARKER = "batch.json"  # says DIR is a batch folder, so a re-run may resume the run folders in it


@dataclass
class BatchItem:
    image: Path  # absolute
    run: str  # run folder name under the batch folder
    elevation: float | None = None  # degrees; None: the config's data.elevation


@dataclass
class BatchResult:
    out: Path
    rows: list[dict]
    seconds: float

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when every image succeeded, else the exit code of the first failure's error (2: a bad image)."""
        return int(self.failed[0]["exit_code"]) if self.failed else 0

    @property
    def summary(self) -> Path:
        return self.out / SUMMARY


# -- inputs ---------------------------------------------------------------------------------------------------
def read_inputs(inputs: str) -> list[tuple[Path, float | None]]:
    """(absolute image path, elevation or None) for a folder, a glob or a list file (module docstring)."""
    text = str(inputs)
    path = Path(text).expanduser()
    if path.is_dir():
        found = [(p.resolve(), None) for p in sorted(path.iterdir())
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        if not found:
            raise InputError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return found
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path)
    if path.is_file():
        return [(path.resolve(), None)]
    if any(c in text for c in "*?["):
        found = [(Path(p).resolve(), None) for p in sorted(glob.glob(str(path), recursive=True))
                 if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise InputError(f"no images match {text!r}")
        return found
    raise InputError(f"{text} does not exist: give a folder of images, a glob (quoted) or a .txt / .csv list")


def _read_list(path: Path) -> list[tuple[Path, float | None]]:
    lines = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    rows = [(i, [c.strip() for c in next(csv.reader([line]))]) for i, line in lines]
    image_col, elevation_col = 0, 1
    if rows and rows[0][1][0].lower() == "image":  # a header names the columns
        header = [c.lower() for c in rows[0][1]]
        image_col = header.index("image")
        elevation_col = header.index("elevation") if "elevation" in header else None
        rows = rows[1:]
    out = []
    for i, cells in rows:
        image = Path(cells[image_col]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        elevation = cells[elevation_col] if elevation_col is not None and len(cells) > elevation_col else ""
        try:
            out.append((image.resolve(), float(elevation) if elevation else None))
        except ValueError:
            raise InputError(f"{path} line {i}: elevation {elevation!r} is not a number of degrees") from None
    if not out:
        raise InputError(f"{path} lists no images")
    return out


def plan(images: list[tuple[Path, float | None]], out: Path) -> list[BatchItem]:
    """One run folder name per image: the folder an earlier run of that image used, else its stem, made unique
    in input order."""
    existing = {}  # image path -> folder of an earlier run of it
    if out.is_dir():
        for run_json in sorted(out.glob("*/run.json")):
            try:
                image = json.loads(run_json.read_text()).get("source", {}).get("image")
            except (json.JSONDecodeError, AttributeError):
                continue
            if image:
                existing.setdefault(image, run_json.parent.name)
    taken = set(existing.values()) | ({p.name for p in out.iterdir()} if out.is_dir() else set())
    items = []
    for image, elevation in images:
        name = existing.pop(str(image), None)
        if name is None:
            stem = image.stem or "image"
            name, k = stem, 2
            while name in taken or name in (SUMMARY, MARKER):
                name, k = f"{stem}-{k}", k + 1
            taken.add(name)
        items.append(BatchItem(image, name, elevation))
    return items


# -- one image ------------------------------------------------------------------------------------------------
class LazyModel:
    """The Zero-1-to-3 bundle a worker shares across its images, loaded the first time one of them needs new
    views (a re-run whose views are all up to date loads nothing). Other attributes are the bundle's."""

    def __init__(self, source: str, device: str, dtype: str):
        self._source, self._device, self._dtype, self._model = source, device, dtype, None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self):
        if self._model is None:
            from .api import load_model

            self._model = load_model(self._source, device=self._device, dtype=self._dtype)
        return self._model

    def __getattr__(self, name):  # called only for names this object does not have: the bundle's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


class Worker:
    """Runs images of one batch (locally, or as a Ray actor): the config and the model are set up once."""

    def __init__(self, out: str, config: str, overrides: list[str], quiet: bool = True, rerun=()):
        from img2mesh.data.devices import resolve_device

        self.out, self.config, self.overrides, self.quiet, self.rerun = Path(out), config, list(overrides), quiet, rerun
        cfg = load_config(config, self.overrides)
        self.model = LazyModel(cfg.diffusion.model, str(resolve_device(cfg.device)), cfg.diffusion.dtype)

    def process(self, item: BatchItem) -> dict:
        """Run (or resume) one image; its summary row, never an exception (the batch goes on)."""
        from . import api

        run_dir = self.out / item.run
        overrides = [*self.overrides, *([f"data.elevation={item.elevation}"] if item.elevation is not None else [])]
        resume = run_dir if (run_dir / "run.json").is_file() else None
        t0 = time.perf_counter()
        row = {"image": str(item.image), "run": item.run}
        try:
            result = api.run(item.image, config=self.config, overrides=overrides, out=None if resume else run_dir,
                             resume=resume, model=self.model, quiet=self.quiet, kind="image", rerun=self.rerun)
            row.update(status="ok", error="", exit_code=0, stages_run=" ".join(result.stages_run),
                       **{f"mesh_{f}": str(p.relative_to(self.out)) for f, p in result.meshes.items()})
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - any failure of one image is recorded, the batch goes on
            row.update(status="failed", error=one_line(e), exit_code=getattr(e, "exit_code", 1), stages_run="")
            if not isinstance(e, Img2MeshError):
                log.warning("%s failed with an unexpected error", item.image, exc_info=True)
            _free_memory()
        times = stage_seconds(run_dir)
        row.update(times)
        # an ok run's total is its stages' recorded times, like the columns beside it (a rerun that skipped them
        # took almost nothing but made nothing either); a failed one has the seconds it spent failing
        row["seconds"] = round(sum(times.values()) if row["status"] == "ok" else time.perf_counter() - t0, 3)
        return row


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(e, Img2MeshError) else f"{type(e).__name__}: {message}".rstrip(": ")


def stage_seconds(run_dir: Path) -> dict:
    """seconds_<stage> of the run's recorded stages (the time each took when it was computed)."""
    try:
        stages = json.loads((run_dir / "run.json").read_text()).get("stages", {})
    except (OSError, json.JSONDecodeError):
        stages = {}
    return {f"seconds_{s}": stages[s]["seconds"] for s in STAGES if s in stages}


def _free_memory() -> None:
    """After a failed image (out of memory, most often): give its memory back before the next one."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the batch ------------------------------------------------------------------------------------------------
def write_summary(path: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def read_summary(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Progress:
    """The batch's rows in input order (pending until done), written to summary.csv and shown as they come."""

    def __init__(self, out: Path, items: list[BatchItem]):
        self.out = out
        self.rows = [{"image": str(i.image), "run": i.run, "status": "pending"} for i in items]
        self.index = {i.run: k for k, i in enumerate(items)}
        self.bar = progress(total=len(items), desc="batch", leave=True)
        write_summary(out / SUMMARY, self.rows)

    def record(self, row: dict) -> None:
        self.rows[self.index[row["run"]]] = row
        write_summary(self.out / SUMMARY, self.rows)
        self.bar.update(1)
        done = sum(r["status"] != "pending" for r in self.rows)
        if row["status"] == "ok":
            log.info("[%d/%d] %s: ok in %.1f s%s", done, len(self.rows), row["run"], row["seconds"],
                     "" if row["stages_run"] else " (up to date)")
        else:
            log.warning("[%d/%d] %s: failed: %s", done, len(self.rows), row["run"], row["error"])


def run_batch(inputs, out, config: str | None = None, overrides=(), ray: str | None = None,
              quiet: bool = False, rerun=()) -> BatchResult:
    """Run every image of ``inputs`` into ``out`` (module docstring); ``ray``: None (here, one after another),
    ``auto``, ``local`` or a cluster address; ``rerun``: stages a finished run may redo when changed settings
    make them out of date (as `img2mesh run --rerun`). Returns the rows also written to ``out/summary.csv``."""
    from img2mesh.data.progress import set_quiet

    set_quiet(quiet)
    if out is None:
        raise InputError("give the batch folder with --out DIR")
    config = config or "default"
    load_config(config, overrides)  # a bad config fails here, before anything is written
    images = read_inputs(inputs)
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise InputError(f"{out} already exists and is not a batch folder: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, json.dumps({"inputs": str(inputs), "config": config,
                                                "overrides": list(overrides)}, indent=2))
    items = plan(images, out)
    state = _Progress(out, items)
    t0 = time.perf_counter()
    try:
        if ray is None:
            worker = Worker(str(out), config, list(overrides), True, tuple(rerun))
            for item in items:
                state.record(worker.process(item))
        else:
            _run_on_ray(items, str(out), config, list(overrides), tuple(rerun), ray, state)
    finally:
        state.bar.close()
    return BatchResult(out, state.rows, round(time.perf_counter() - t0, 3))


def _run_on_ray(items: list[BatchItem], out: str, config: str, overrides: list[str], rerun: tuple, address: str,
                state: _Progress) -> None:
    try:
        import ray
    except ImportError:
        raise UnavailableError("--ray needs Ray: pip install 'img2mesh[ray]'") from None
    started = not ray.is_initialized()
    if started:  # a caller that has already connected (a notebook, a test) keeps its connection
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=not is_quiet())
        except ConnectionError as e:
            raise UnavailableError(f"cannot reach a Ray cluster at {address!r} ({one_line(e)}); start one with "
                                   "`ray start --head`, or pass --ray local") from None
    cfg = load_config(config, overrides).batch
    resources = ray.cluster_resources()
    num_gpus = cfg.num_gpus if cfg.num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
    slots = resources.get("GPU", 0) / num_gpus if num_gpus else resources.get("CPU", 1) / max(cfg.num_cpus, 1e-3)
    n_actors = max(1, min(len(items), int(math.floor(slots + 1e-9)), cfg.workers or len(items)))
    actor_class = ray.remote(Worker).options(num_cpus=cfg.num_cpus, num_gpus=num_gpus)
    log.info("Ray: %d workers of %g CPU / %g GPU each", n_actors, cfg.num_cpus, num_gpus)
    new_actor = lambda: actor_class.remote(out, config, overrides, True, rerun)  # noqa: E731
    actors = [new_actor() for _ in range(n_actors)]
    queue, pending = list(items), {}
    try:
        for actor in actors:
            if queue:
                item = queue.pop(0)
                pending[actor.process.remote(item)] = (actor, item)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor, item = pending.pop(ref)
            try:
                row = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the worker process died (host out of memory, a crash)
                row = {"image": str(item.image), "run": item.run, "status": "failed", "exit_code": 1,
                       "error": f"the Ray worker died: {one_line(e)}", "stages_run": ""}
                ray.kill(actor)
                actors[actors.index(actor)] = actor = new_actor()
            state.record(row)
            if queue:
                item = queue.pop(0)
                pending[actor.process.remote(item)] = (actor, item)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
