"""An on-disk cache of per-frame analysis results.

Layout: ``<root>/<key>/meta.json`` (what the key stands for) and ``frames/<frame>.json`` (a FrameFaces record
plus the identity of the input frame it came from). The key hashes the analysis parameters and the source
(pattern or movie); each entry also stores its input frame's identity: a hash of the file's *content*
(:func:`file_identity`), never its size and mtime alone (a frame edited in place keeps both), so a changed
frame invalidates just that entry and different frame ranges share work. Writes are atomic; a killed run
resumes at the first frame without an entry; a cache that cannot be written (disk full, read-only) is
switched off with one warning and the analysis goes on. Reads are exact: the same records come back, so a
re-render is deterministic.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import FacegraphError
from .fsutil import atomic_write
from .types import FrameFaces

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def stable_hash(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def file_identity(path: str | os.PathLike) -> list:
    """[path, size, blake2b-128 of the bytes]: the identity of a file's content (about 1 GB/s; a compressed
    EXR frame is read in a few ms, and the page cache then serves the decode)."""
    h = hashlib.blake2b(digest_size=16)
    size = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            size += len(block)
            h.update(block)
    return [os.fspath(path), size, h.hexdigest()]


class FrameCache:
    def __init__(self, root: str | Path, key_material: dict) -> None:
        self.key = stable_hash(key_material)
        self.dir = Path(root) / self.key
        self.material = key_material
        self.enabled = True

    def _path(self, frame: int) -> Path:
        return self.dir / "frames" / f"{frame}.json"

    def get(self, frame: int, identity: Any) -> FrameFaces | None:
        p = self._path(frame)
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed
        if doc.get("identity") != json.loads(json.dumps(identity, default=str)):
            return None
        return FrameFaces.from_dict(doc["faces"])

    def put(self, frame: int, identity: Any, faces: FrameFaces) -> None:
        if not self.enabled:
            return
        try:
            meta = self.dir / "meta.json"
            if not meta.exists():
                atomic_write(meta, json.dumps(self.material, indent=1, sort_keys=True, default=str))
            atomic_write(self._path(frame), json.dumps({"identity": identity, "faces": faces.to_dict()},
                                                       default=str))
        except (OSError, FacegraphError) as exc:
            self.enabled = False
            log.warning("the analysis cache %s cannot be written (%s): continuing without it", self.dir, exc)
