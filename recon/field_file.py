"""The field file (``field.pt``): a trained field as its method rebuilds it, with only that method's
settings, so renaming any other recon key leaves saved fields readable."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import torch

from img2mesh.data.errors import InputError
from img2mesh.data.io import atomic_write_bytes

from .config import config_from_dict
from .methods import METHODS

FIELD_NAME = "field.pt"
FIELD_FORMAT = "img2mesh-field/3"


def save_field(path: Path, method_name: str, settings, field_, meta: dict) -> Path:
    """The field as its method rebuilds it: the method's name, its settings (the constructor's; None for a
    method without settings), its meta (box, grid resolutions) and the state dict."""
    buf = io.BytesIO()
    torch.save({"format": FIELD_FORMAT, "method": method_name,
                "settings": None if settings is None else dataclasses.asdict(settings), "meta": meta,
                "state": {k: v.detach().cpu() for k, v in field_.state_dict().items()}}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_field(path, device="cpu"):
    """Rebuild a saved field from ``field.pt``; its method is ``field.method``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"field file {path} does not exist: run the recon stage first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        name, meta = blob["method"], blob["meta"]
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"{path} is not an img2mesh field file ({type(e).__name__}: {e}); re-run recon") from None
    if blob.get("format") != FIELD_FORMAT:
        raise InputError(f"{path} was written by an older img2mesh ({blob.get('format')}): delete it and give the "
                         f"command that made its run again with --resume {path.parent.parent} instead of --out: the "
                         "missing field is trained again")
    if name not in METHODS:
        raise InputError(f"{path} holds an unknown method {name!r}")
    method = METHODS[name]
    settings = None if method.config is None else config_from_dict(blob["settings"] or {}, method.config)
    field_ = method.load(settings, meta, blob["state"], device)
    field_.method = name
    return field_.eval()
