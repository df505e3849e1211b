"""Atomic file writes for small outputs (exports, caches, pins): write a temp file beside the target, then
rename over it, so readers never see half a file and a killed writer leaves only a ``.tmp`` behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ImageIOError


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); raises ImageIOError naming the file."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ImageIOError(f"cannot write: {exc}", file=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        raise ImageIOError(f"cannot write: {exc}", file=str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
