"""One switch for every progress bar in img2mesh (``--quiet`` turns them all off), and one hook that hears them.

``listen(callback)`` reports every bar opened in the same thread (or task) as ``callback(desc, n, total)``:
once when it opens and after each item, quiet or not. The web app shows a run's live progress with it; a
callback that raises stops the work at the next item (cancelling a request).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

from tqdm.auto import tqdm

Listener = Callable[[str, int, "int | None"], None]

_quiet = False
_listener: ContextVar[Listener | None] = ContextVar("img2mesh_progress_listener", default=None)


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    return _quiet


@contextmanager
def listen(callback: Listener) -> Iterator[None]:
    """Report the progress bars of the code run inside this block to ``callback(desc, n, total)``."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


class _ReportingBar(tqdm):
    """tqdm that also counts for a listener: a disabled tqdm keeps no count of its own."""

    def __init__(self, *args, listener: Listener, **kwargs):
        super().__init__(*args, **kwargs)
        self._listener, self._label = listener, kwargs.get("desc") or ""
        self._count = self._set_n = kwargs.get("initial", 0)
        if self.total is None and hasattr(self.iterable, "__len__"):
            self.total = len(self.iterable)
        listener(self._label, self._count, self.total)

    def __iter__(self):
        for item in super().__iter__():
            yield item
            self._count += 1
            self._listener(self._label, self._count, self.total)

    def update(self, n=1):
        shown = super().update(n)
        if self.disable:  # a disabled tqdm counts nothing itself
            self.n += n
        self._set_n = self.n
        self._listener(self._label, self.n, self.total)
        return shown

    def refresh(self, *args, **kwargs):
        if self.disable:
            if self.n != getattr(self, "_set_n", self.n):  # `bar.n = step; bar.refresh()`: a rollback
                self._set_n = self.n
                self._listener(self._label, self.n, self.total)
            return None
        return super().refresh(*args, **kwargs)


def progress(iterable=None, total: int | None = None, desc: str | None = None, **kwargs) -> tqdm:
    """tqdm that respects ``--quiet``; use ``bar.set_postfix(loss=...)`` for live numbers."""
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    listener = _listener.get()
    if listener is not None:
        return _ReportingBar(iterable, total=total, desc=desc, disable=_quiet, listener=listener, **kwargs)
    return tqdm(iterable, total=total, desc=desc, disable=_quiet, **kwargs)


def close_bars() -> None:
    """Close every open progress bar (an interrupt leaves them open): each clears its line, so what is printed
    next starts at the beginning of one."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
