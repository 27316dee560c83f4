"""Small file helpers: atomic writes and content hashes.

A killed process must never leave a half-written file under a final name, so everything is written
to a temporary sibling and moved into place with ``os.replace`` (atomic on POSIX and Windows). The
temporary files are private (``mkstemp``: 0600, ``mkdtemp``: 0700); what is moved into place gets the
permissions a plain ``open`` or ``mkdir`` would give under the process's umask.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (no window for other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str | os.PathLike, path: Path, mode: int) -> None:
    """Give ``tmp`` the usual permissions (``mode`` less the umask) and move it to ``path``."""
    os.chmod(tmp, mode & ~_umask())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publish(tmp, path, 0o666)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a fresh temporary directory; on success it replaces ``path`` (old contents removed after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    _publish(tmp, path, 0o777)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W], [H, W, 3] or [H, W, 4] -> PNG file bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
