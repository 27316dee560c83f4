"""One switch for every progress bar in img2mesh (``--quiet`` turns them all off)."""
from __future__ import annotations

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


def progress(iterable=None, total: int | None = None, desc: str | None = None, **kwargs) -> tqdm:
    """tqdm that respects ``--quiet``; use ``bar.set_postfix(loss=...)`` for live numbers."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, total=total, desc=desc, disable=_quiet, **kwargs)
