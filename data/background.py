"""Background removal with rembg (imported lazily: its first import compiles numba code for ~80 s).

The model file is ``$U2NET_HOME/<model>.onnx`` (default ``~/.u2net``; newer rembg versions also read
``~/.rembg/models/<model>/<model>.onnx``), which rembg downloads on first use; offline, put the file there
by hand.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import InputError, ResourceError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "u2netp"  # small (4.6 MB) and good enough on object photos; "u2net", "isnet-general-use" also work


def model_home() -> Path:
    return Path(os.environ.get("U2NET_HOME", Path.home() / ".u2net")).expanduser()


def model_files(model_name: str) -> list[Path]:
    """Where rembg looks for ``model_name``'s file: its own folder under rembg's home (U2NET_HOME when set,
    else REMBG_HOME, else ~/.rembg), then the older flat layout in ``model_home()``."""
    if os.environ.get("U2NET_HOME"):
        home = model_home()
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        home = Path(os.environ.get("REMBG_HOME", Path(xdg) / "rembg" if xdg else Path.home() / ".rembg")).expanduser()
    return [home / "models" / model_name / f"{model_name}.onnx", model_home() / f"{model_name}.onnx"]


def check_model(model_name: str) -> None:
    """Raise at once when the model file is missing and cannot be downloaded (offline mode)."""
    from .scenes import offline

    files = model_files(model_name)
    if offline() and not any(f.is_file() for f in files):
        raise ResourceError(f"background-removal model {model_name!r} is not on disk and downloads are off "
                            f"(offline mode): put {model_name}.onnx at {files[-1]} (or set U2NET_HOME to its folder)")


@lru_cache(maxsize=4)
def _session(model_name: str, home: Path):
    """A rembg session per (model, U2NET_HOME): rembg reads the model from ``home``."""
    import sys

    if "rembg" not in sys.modules:
        log.info("setting up rembg (a one-time set-up: its first import in an installation compiles code for "
                 "about a minute)")
    try:
        import rembg
    except ImportError:
        raise ResourceError("background removal needs rembg: pip install rembg onnxruntime") from None
    if not any(f.is_file() for f in model_files(model_name)):
        log.info("background-removal model %s not found at %s, downloading it", model_name, home)
    try:
        return rembg.new_session(model_name, providers=["CPUExecutionProvider"])
    except ValueError as e:  # rembg's answer to an unknown model name
        raise InputError(f"unknown background-removal model {model_name!r} ({e})") from None
    except Exception as e:  # network or file errors from rembg's downloader or onnxruntime
        raise ResourceError(
            f"background-removal model {model_name!r} is not available: put {model_name}.onnx in {home} "
            f"(or set U2NET_HOME to its folder) or go online once ({type(e).__name__})"
        ) from None


def load_session(model_name: str = DEFAULT_MODEL):
    """The rembg session for ``model_name``, made now (an unknown name or a missing file fails here)."""
    return _session(model_name, model_home())


def remove_background(rgb: np.ndarray, model_name: str = DEFAULT_MODEL) -> np.ndarray:
    """[H, W, 3] uint8 -> [H, W] uint8 soft mask of the foreground object."""
    from PIL import Image

    assert rgb.ndim == 3 and rgb.shape[2] == 3, f"expected [H, W, 3] uint8, got {rgb.shape}"
    session = load_session(model_name)
    import rembg  # already imported by _session; cheap here

    mask = rembg.remove(Image.fromarray(rgb), session=session, only_mask=True)
    return np.asarray(mask.convert("L"), dtype=np.uint8)
