"""Reading weight files without ever running code from them.

``.safetensors`` files are read with safetensors; pickled files (``.ckpt``, ``.bin``, ``.pt``, ``.pth``) with
``torch.load(weights_only=True)``. Training checkpoints (PyTorch Lightning) may also pickle objects of
classes the weights-only unpickler does not allow (callbacks, loss modules); those are replaced by an inert
stand-in that records nothing, so the tensors load and nothing from the file is ever executed.
A truncated or corrupt file is one :class:`ResourceError` line that says to download it again.
"""
from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch

from img2mesh.data.errors import ResourceError

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
MAX_STAND_INS = 64  # distinct non-tensor classes tolerated in one checkpoint


class _StandIn:
    """Takes the place of a pickled object of a class we refuse to import; keeps no state."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def corrupt_file_error(path: Path, err: BaseException) -> ResourceError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ResourceError(f"{path} is truncated or corrupt ({first[:160]}): delete it and download it again "
                         "(or re-run `img2mesh convert` for a converted model)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a weight file, on the CPU. Lightning checkpoints are unwrapped (their ``state_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise ResourceError(f"weight file {path} does not exist")
    if path.suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError for bad headers/short files
            raise corrupt_file_error(path, e) from None
    obj = torch_load_weights_only(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ResourceError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors; "
                            "give a model checkpoint (.ckpt/.bin/.safetensors)")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def torch_load_weights_only(path: Path):
    """``torch.load(weights_only=True)``, with inert stand-ins for classes the weights-only unpickler refuses."""
    stand_ins: list[tuple[type, str]] = []
    mmap = zipfile.is_zipfile(path)  # memory-map the modern format: a retry does not re-read gigabytes
    for _ in range(MAX_STAND_INS):
        try:
            with torch.serialization.safe_globals(stand_ins):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as e:
            match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            if match is None:
                raise corrupt_file_error(path, e) from None
            name = match.group(1) if "." in match.group(1) else "builtins." + match.group(1)  # builtins print bare
            if any(n == name for _, n in stand_ins):
                raise corrupt_file_error(path, e) from None
            log.info("%s: replacing pickled %s by an inert stand-in (weights only)", path.name, name)
            stand_ins.append((type(f"StandIn_{name.replace('.', '_')}", (_StandIn,), {}), name))
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise corrupt_file_error(path, e) from None
    raise ResourceError(f"{path} pickles more than {MAX_STAND_INS} kinds of non-tensor objects; "
                        "convert it to .safetensors first")
