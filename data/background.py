"""Background removal with rembg (imported lazily: its first import in an installation compiles numba code
for about a minute; later imports take seconds).

Where the model lives is rembg's rule, followed here so messages name the folder rembg really reads:
``<home>/models/<model>/<model>.onnx``, where ``<home>`` is ``$U2NET_HOME`` when set, else ``$REMBG_HOME``,
else ``$XDG_DATA_HOME/rembg``, else ``~/.rembg``; rembg downloads missing models there. Copies of older
rembg versions, ``<model>.onnx`` directly in ``$U2NET_HOME`` (else ``$XDG_DATA_HOME/.u2net`` or ``~/.u2net``),
are read too.
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
# Where rembg downloads every local model from: reachable or not, checked before a run starts.
DOWNLOADS = "https://github.com/danielgatis/rembg/releases"


def rembg_home() -> Path:
    """rembg's own folder (module docstring)."""
    if os.environ.get("U2NET_HOME"):
        return Path(os.environ["U2NET_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(os.environ.get("REMBG_HOME") or (Path(xdg) / "rembg" if xdg else Path.home() / ".rembg")).expanduser()


def legacy_home() -> Path:
    """The flat folder older rembg versions used, still read."""
    if os.environ.get("U2NET_HOME"):
        return Path(os.environ["U2NET_HOME"]).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home()).expanduser() / ".u2net"


def model_home() -> Path:
    """The folder rembg reads ``model_name`` from (it is U2NET_HOME itself when that is set)."""
    return rembg_home()


def model_file(model_name: str) -> Path:
    """Where rembg downloads ``model_name``, and where to put it by hand: the one place messages name."""
    return rembg_home() / "models" / model_name / f"{model_name}.onnx"


def model_files(model_name: str) -> list[Path]:
    """Every file rembg would take ``model_name`` from, in its order."""
    return [model_file(model_name), legacy_home() / f"{model_name}.onnx"]


def how_to_get(model_name: str) -> str:
    return (f"put {model_name}.onnx (from {DOWNLOADS}) at {model_file(model_name)}, or set U2NET_HOME to a "
            f"folder holding {model_name}.onnx")


def download_blocked(timeout: float = 10.0) -> str | None:
    """Why rembg could not download a model now (offline mode, or its download site unreachable: one request,
    no retries), or None when it could."""
    import urllib.error
    import urllib.request

    from .scenes import offline

    if offline():
        return "downloads are off (offline mode)"
    try:
        urllib.request.urlopen(urllib.request.Request(DOWNLOADS, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the site answered: reachable
    except (OSError, ValueError) as e:  # DNS, refused, timeout
        reason = getattr(e, "reason", e)
        return f"{DOWNLOADS} cannot be reached ({type(reason).__name__}: {str(reason)[:80]})"
    return None


def check_model(model_name: str) -> None:
    """Raise at once when the model file is missing and cannot be downloaded now (offline, or rembg's download
    site unreachable), without importing rembg."""
    if any(f.is_file() for f in model_files(model_name)):
        return
    why = download_blocked()
    if why is not None:
        raise ResourceError(f"background-removal model {model_name!r} is not on disk and {why}: "
                            f"{how_to_get(model_name)}")


def _compiled_before() -> bool:
    """Whether rembg's numba code (in pymatting) was compiled in this installation already: its cache files."""
    import importlib.util

    spec = importlib.util.find_spec("pymatting")
    if spec is None or not spec.submodule_search_locations:
        return True  # nothing to compile (rembg's import will say what is missing)
    roots = [Path(p) for p in spec.submodule_search_locations]
    if os.environ.get("NUMBA_CACHE_DIR"):
        roots.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    return any(next(root.rglob("*.nbi"), None) is not None for root in roots)


@lru_cache(maxsize=4)
def _session(model_name: str, home: Path):
    """A rembg session per (model, U2NET_HOME): rembg reads the model from ``home``."""
    import sys

    check_model(model_name)  # offline or unreachable with no file: say so now, before rembg's import and retries
    if "rembg" not in sys.modules and not _compiled_before():
        log.info("setting up rembg (once per installation: its first import compiles code for about a minute)")
    try:
        import rembg
    except ImportError:
        raise ResourceError("background removal needs rembg: pip install rembg onnxruntime") from None
    if not any(f.is_file() for f in model_files(model_name)):
        log.info("downloading the background-removal model %s into %s", model_name, model_file(model_name).parent)
    try:
        return rembg.new_session(model_name, providers=["CPUExecutionProvider"])
    except ValueError as e:  # rembg's answer to an unknown model name
        raise InputError(f"unknown background-removal model {model_name!r} ({e})") from None
    except Exception as e:  # network or file errors from rembg's downloader or onnxruntime
        raise ResourceError(f"background-removal model {model_name!r} is not available ({type(e).__name__}): "
                            f"{how_to_get(model_name)}") from None


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
