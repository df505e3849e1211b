"""An on-disk cache of per-frame analysis results.

Layout: ``<root>/<key>/meta.json`` (what the key stands for) and ``frames/<frame>.json`` (a FrameFaces record
plus the identity of the input frame it came from). The key hashes the analysis parameters and the source
(pattern or movie); each entry also stores its input frame's identity (file size and mtime, or a content hash
for in-memory frames), so a changed frame invalidates just that entry and different frame ranges share work.
Writes are atomic; a killed run resumes at the first frame without an entry. Reads are exact: the same records
come back, so a re-render is deterministic.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .fsutil import atomic_write
from .types import FrameFaces


def stable_hash(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def file_identity(path: str | os.PathLike) -> list:
    st = os.stat(path)
    return [os.fspath(path), st.st_size, st.st_mtime_ns]


class FrameCache:
    def __init__(self, root: str | Path, key_material: dict) -> None:
        self.key = stable_hash(key_material)
        self.dir = Path(root) / self.key
        self.material = key_material

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
        meta = self.dir / "meta.json"
        if not meta.exists():
            atomic_write(meta, json.dumps(self.material, indent=1, sort_keys=True, default=str))
        atomic_write(self._path(frame), json.dumps({"identity": identity, "faces": faces.to_dict()}, default=str))
