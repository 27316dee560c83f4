"""The REST API's jobs: unguessable ids over the web service's run folders, kept across server restarts.

A job is a normal run folder under ``out`` (the page's kind: same queue, same folders) plus a record
``out/.jobs/ID.json`` and the config it started with, ``out/.jobs/ID.yaml`` (both written atomically). A
server started again on the same ``out`` finds the records: a job that was queued or running when the last
server stopped is ``interrupted``, and :meth:`JobStore.resume` continues it from its last finished stage.
Files are reached only through a job's id and a fixed list of names, never through a path.
"""
from __future__ import annotations

import json
import logging
import math
import secrets
import statistics
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_text

from .config import load_config, to_yaml
from .pipeline import STAGES
from .web_jobs import Job, Request, WebService, obj_zip

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
# what a finished job offers: the name a client asks for -> the run folder's file (None: built on request)
FILES = {"mesh.glb": "mesh.glb", "mesh.obj.zip": None, "mesh.ply": "mesh.ply", "turntable.mp4": "turntable.mp4",
         "views_grid.png": "views_grid.png"}
ID_BYTES = 16  # 128 random bits, URL-safe base64: 22 characters


class QueueFull(Exception):
    """More jobs are waiting than ``--max-queue`` allows; ``retry_after``: seconds worth waiting."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(Exception):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


@dataclass
class JobRecord:
    id: str
    run: str  # the run folder, relative to the service's out
    label: str
    image: str  # the uploaded file's name, as the client sent it
    created: float
    status: str = "queued"
    error: str | None = None
    ended: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None  # from submission (or resume) to the end


class JobStore:
    """The REST API's jobs on top of a :class:`WebService` (its queue, its model, its run folders)."""

    def __init__(self, service: WebService, max_queue: int = 8):
        if max_queue < 0:
            raise InputError(f"--max-queue must be 0 or more, got {max_queue}")
        self.service, self.max_queue = service, max_queue
        self.out = Path(service.out)
        self.root = self.out / ".jobs"
        self.records: dict[str, JobRecord] = {}
        self.live: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.durations: deque[float] = deque(maxlen=20)  # recent jobs' seconds, for the retry hint
        self.closing = False
        self._load()

    # -- records on disk --------------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self.root.glob("*.json")):
            try:
                rec = JobRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as e:
                log.warning("skipping the damaged job record %s (%s)", path, e)
                continue
            if rec.status in ACTIVE:  # the server that ran it stopped
                rec.status, rec.error = ("done", None) if self._finished_on_disk(rec) else ("interrupted", None)
                self._save(rec)
            self.records[rec.id] = rec

    def _finished_on_disk(self, rec: JobRecord) -> bool:
        try:
            stages = json.loads((self.out / rec.run / "run.json").read_text()).get("stages", {})
        except (OSError, ValueError):
            return False
        return all(name in stages for name in STAGES)

    def _save(self, rec: JobRecord) -> None:
        atomic_write_text(self.root / f"{rec.id}.json", json.dumps(asdict(rec), indent=1))

    # -- the queue ----------------------------------------------------------------------------------------
    def _check_room(self) -> None:
        """Refuse a job the queue has no room for (the page's jobs count too: they share it)."""
        with self.service.jobs_lock:
            unfinished = len(self.service.jobs)
        waiting = max(0, unfinished - self.service.concurrency)
        if unfinished >= self.service.concurrency + self.max_queue:
            typical = statistics.median(self.durations) if self.durations else 30.0
            retry = min(3600, max(1, math.ceil(typical * (waiting + 1) / self.service.concurrency)))
            raise QueueFull(f"the queue is full ({waiting} jobs waiting, --max-queue {self.max_queue}): "
                            f"try again in {retry} s", retry)

    def submit(self, request: Request, image_name: str) -> JobRecord:
        """Check the request, start its run (queued behind the others) and record it."""
        with self.lock:
            self._check_room()
            job = self.service.start(request)  # InputError for anything the client can fix
            rec = JobRecord(id=secrets.token_urlsafe(ID_BYTES), run=str(job.rd.root.relative_to(self.out)),
                            label=job.source.label, image=image_name, created=time.time())
            atomic_write_text(self.root / f"{rec.id}.yaml", to_yaml(job.cfg))  # what a resume starts from
            self._save(rec)
            self.records[rec.id] = rec
            self._follow(rec, job)
            return rec

    def resume(self, job_id: str) -> JobRecord:
        """Continue an interrupted (or cancelled, or failed) job from its last finished stage."""
        with self.lock:
            rec = self.get(job_id)
            if job_id in self.live or rec.status == "done":
                raise Conflict(f"job {job_id} is {self.describe(rec)['status']}: only an interrupted, cancelled or "
                               "failed job can be resumed")
            if not (self.out / rec.run).is_dir():
                raise Conflict(f"job {job_id} left no run folder (it failed before its first stage): submit the "
                               "image again")
            self._check_room()
            cfg = load_config(None, (), base=self.root / f"{rec.id}.yaml")
            job = self.service.resume(self.out / rec.run, cfg, rec.label)
            rec.status, rec.error, rec.ended, rec.seconds = "queued", None, None, None
            self._save(rec)
            self._follow(rec, job)
            return rec

    def _follow(self, rec: JobRecord, job: Job) -> None:
        """Keep the record up to date until the job ends (a thread that sleeps between the job's changes)."""
        self.live[rec.id] = job

        def follow():
            state = None
            for state in job.updates(interval=0.5):
                pass
            with self.lock:
                if self.closing:
                    return  # close() recorded it as interrupted
                rec.status = ("done" if not state.error else "cancelled" if state.error == "cancelled"
                              else "failed")
                rec.error = state.error if rec.status == "failed" else None
                rec.timings, rec.seconds, rec.ended = dict(state.done), round(state.seconds, 3), time.time()
                if rec.status == "done":
                    self.durations.append(state.seconds)
                self._save(rec)
                self.live.pop(rec.id, None)

        threading.Thread(target=follow, name=f"img2mesh-job {rec.id[:6]}", daemon=True).start()

    def cancel(self, job_id: str) -> JobRecord:
        with self.lock:
            rec = self.get(job_id)
            job = self.live.get(job_id)
            if job is None:
                raise Conflict(f"job {job_id} is {rec.status}: only a queued or running job can be cancelled")
            job.cancel()  # it stops at its next progress step; finished stages are kept
            return rec

    def close(self) -> None:
        """The server stops: unfinished jobs are recorded as interrupted (resumable after a restart)."""
        with self.lock:
            self.closing = True
            for job_id, job in list(self.live.items()):
                job.cancel()
                rec = self.records[job_id]
                rec.status, rec.error = "interrupted", None
                self._save(rec)
            self.live.clear()

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        rec = self.records.get(job_id)
        if rec is None:
            raise KeyError(job_id)
        return rec

    def describe(self, rec: JobRecord) -> dict:
        """The job as the API shows it: status, the stage running, progress per stage, timings, error."""
        job = self.live.get(rec.id)
        status, stage, bar, done, error, seconds = rec.status, None, None, dict(rec.timings), rec.error, rec.seconds
        if job is not None:
            s = job.snapshot()
            status = "running" if s.running else "queued"
            stage, bar, done, seconds = s.stage, s.bar, dict(s.done), round(s.seconds, 3)
        elif status != "done":  # what the run folder finished (an interrupted job's finished stages)
            done = self._finished_stages(rec) or done
        progress = {}
        for name in STAGES:
            if name in done:
                progress[name] = {"state": "done", "fraction": 1.0}
            elif name == stage:
                entry = {"state": "running", "fraction": 0.0}
                if bar is not None:
                    label, n, total = bar
                    entry.update(step=n, total=total, label=label, fraction=round(n / total, 4) if total else None)
                progress[name] = entry
            else:
                progress[name] = {"state": "pending", "fraction": 0.0}
        return {"id": rec.id, "status": status, "stage": stage, "progress": progress,
                "timings": {k: round(v, 3) for k, v in done.items()}, "seconds": seconds, "error": error,
                "image": rec.image, "created": rec.created, "ended": rec.ended,
                "files": [name for name in FILES if status == "done" and self.file(rec, name, build=False)]}

    def _finished_stages(self, rec: JobRecord) -> dict[str, float]:
        try:
            stages = json.loads((self.out / rec.run / "run.json").read_text()).get("stages", {})
        except (OSError, ValueError):
            return {}
        return {name: stages[name].get("seconds", 0.0) for name in STAGES if name in stages}

    def listing(self) -> list[dict]:
        with self.lock:
            records = sorted(self.records.values(), key=lambda r: r.created, reverse=True)
        return [self.describe(r) for r in records]

    def file(self, rec: JobRecord, name: str, build: bool = True) -> Path | None:
        """A finished job's file by its API name (None where the run has none); the OBJ zip is made once."""
        if name not in FILES:
            return None
        run = self.out / rec.run
        if FILES[name] is not None:
            path = run / FILES[name]
            return path if path.is_file() else None
        target = self.root / f"{rec.id}.obj.zip"
        if not target.is_file():
            if not (run / "mesh.obj").is_file():
                return None
            if build:
                obj_zip(run / "mesh.obj", target)  # written whole, then renamed: never served half-written
            else:
                return target
        return target
