"""A run directory and the bookkeeping that makes runs resumable.

    RUN/
      config.yaml        resolved config of the run
      run.json           config, versions, device, per-stage records and timings
      input/             original image, its mask, the preprocessed 256 px input, the input camera
      views/             posed views in NeRF format (transforms.json + r_XXX.png)
      recon/             the trained field (field.pt), checkpoints, training log
      mesh.obj|glb|ply, views_grid.png, turntable.mp4

Each stage's record holds a key (hash of its config section and of its inputs' hashes) and the sha256 of
every file it wrote. A stage is skipped on ``--resume`` only when the key matches and every file is intact.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_text, sha256_bytes, sha256_file


@dataclass
class StageRecord:
    key: str
    outputs: dict[str, str]  # path relative to the run dir -> sha256
    seconds: float  # the stage's compute time; a recon continued from its checkpoint counts every part
    finished: str
    settings: dict = field(default_factory=dict)  # the flattened config it was keyed on, to say what changed

    @property
    def output_hash(self) -> str:
        """What downstream stages hash as their input."""
        return sha256_bytes(json.dumps(sorted(self.outputs.items())).encode())[:16]


@dataclass
class RunDir:
    root: Path
    meta: dict = field(default_factory=dict)
    made: list[Path] | None = None  # folders this process created for a new run (None: an existing run)

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def views_dir(self) -> Path:
        return self.root / "views"

    @property
    def recon_dir(self) -> Path:
        return self.root / "recon"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    # -- creation ---------------------------------------------------------------------------------------
    @staticmethod
    def check_new(root: Path) -> None:
        """Refuse, before any work, a folder that holds files (earlier results are never overwritten) or that
        cannot be created."""
        is_run = (Path(root) / "run.json").is_file()
        check_new_folder(root, f"pass --resume {root} to continue that run, or choose another --out" if is_run
                         else "choose another --out")

    @classmethod
    def new(cls, root: Path) -> "RunDir":
        """A new run, checked but not yet on disk (:meth:`make`); refuses a folder that already holds files so
        earlier results are never overwritten."""
        cls.check_new(root)
        return cls(Path(root), {"stages": {}, "created": _now()}, made=[])

    def make(self) -> None:
        """Create a new run's folder (and any missing parents, remembered for :meth:`remove_if_unfinished`)."""
        if self.made is None or self.made:
            return
        self.made = [p for p in [self.root, *self.root.parents] if not p.exists()]
        self.root.mkdir(parents=True, exist_ok=True)

    def remove_if_unfinished(self) -> bool:
        """A new run that failed before any stage finished: remove what it wrote (and the folders it made)."""
        if self.meta["stages"] or self.made is None:
            return False
        if not self.root.exists():
            return True
        for path in list(self.root.iterdir()) if self.root.is_dir() else []:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for folder in self.made:  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        return True

    @classmethod
    def open(cls, root: Path) -> "RunDir":
        """An existing run, for --resume."""
        root = Path(root)
        path = root / "run.json"
        if not path.is_file():
            raise InputError(f"{root} is not an img2mesh run directory (no run.json); start a new run with --out")
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise InputError(f"{path} is corrupt; start a new run with --out") from None
        meta.setdefault("stages", {})
        return cls(root, meta)

    # -- records ----------------------------------------------------------------------------------------
    def record(self, stage: str) -> StageRecord | None:
        raw = self.meta["stages"].get(stage)
        return StageRecord(**raw) if raw else None

    def intact(self, stage: str, key: str) -> StageRecord | None:
        """The stage's record if its key matches and every output file still has its recorded hash."""
        rec = self.record(stage)
        if rec is None or rec.key != key:
            return None
        for rel, digest in rec.outputs.items():
            path = self.root / rel
            if not path.is_file() or sha256_file(path) != digest:
                return None
        return rec

    def finish(self, stage: str, key: str, outputs: list[Path], seconds: float,
               settings: dict | None = None) -> StageRecord:
        files: list[Path] = []
        for out in outputs:
            out = Path(out)
            files.extend(sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")) if out.is_dir()
                         else [out])
        rec = StageRecord(
            key=key,
            outputs={str(p.relative_to(self.root)): sha256_file(p) for p in files},
            seconds=round(seconds, 3),
            finished=_now(),
            settings=settings or {},
        )
        self.meta["stages"][stage] = rec.__dict__
        self.save()
        return rec

    def forget(self, stage: str) -> None:
        """Drop a stage's record (its inputs changed): later stages then rerun too."""
        if self.meta["stages"].pop(stage, None) is not None:
            self.save()

    def save(self) -> None:
        self.meta["updated"] = _now()
        atomic_write_text(self.run_json, json.dumps(self.meta, indent=2, default=str))

    def timings(self) -> dict[str, float]:
        return {name: rec["seconds"] for name, rec in self.meta["stages"].items()}


def new_run_folder(parent: Path, label: str) -> Path:
    """The folder a new run gets when none is given: ``parent/label/<date>-<time>``, with ``-1``, ``-2``, ...
    when that exists (two runs started in the same second)."""
    base = Path(parent) / label / time.strftime("%Y%m%d-%H%M%S")
    root, i = base, 1
    while root.exists():
        root, i = base.with_name(f"{base.name}-{i}"), i + 1
    return root


def check_new_folder(root: Path, hint: str) -> None:
    """Refuse a folder that holds files (earlier results are never overwritten) or that cannot be created;
    ``hint`` says what to do instead."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file, not a folder: choose another --out")
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} already exists and is not empty: {hint}")
    existing = next(p for p in [root, *root.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"cannot create {root}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {root}: {existing} is not writable; choose another --out")


def environment_info(device: torch.device) -> dict:
    import numpy

    info = {
        "img2mesh": __import__("img2mesh").__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for name in ("diffusers", "transformers", "trimesh", "nerfacc"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # an optional or broken package must not stop a run from being recorded
            info[name] = None
    return info


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
