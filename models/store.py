"""Where model files live: resolve -> verify -> (fetch) -> cache.

Resolution order for each file of a spec (the first copy found wins; a copy that fails its hash is an error,
never skipped over silently):

1. an explicit path given by the caller (a file for single-file models, or a directory laid out like the
   mirror, or holding the files flat);
2. the host's model folders (ComfyUI: ``models/facegraph``, installed by plugin/comfyui);
3. the user cache (``$FACEGRAPH_CACHE`` or ``~/.cache/facegraph``, subfolder ``models``);
4. mirror directories (``$FACEGRAPH_MODEL_MIRROR``, ``os.pathsep``-separated), e.g. ``../shared/models``;
5. the official URL, downloaded into the user cache, unless ``FACEGRAPH_OFFLINE=1`` (or ``offline=True``).

Every file's sha256 is checked against the registry before first use (results are memoised per process by
path, size and mtime). A mismatch raises :class:`IntegrityError` naming both hashes; a downloaded file that
fails is deleted. Files with no published hash must be pinned by the user (``facegraph models pin``), which
records the hash in ``pins.json`` in the user cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from ..core import progress
from ..core.errors import IntegrityError, ModelError, ModelNotFoundError
from ..core.fsutil import atomic_write
from .registry import ModelFile, ModelSpec, registry

log = logging.getLogger(__name__)

ENV_MIRROR = "FACEGRAPH_MODEL_MIRROR"
ENV_CACHE = "FACEGRAPH_CACHE"
ENV_SHOT_CACHE = "FACEGRAPH_SHOT_CACHE"
ENV_OFFLINE = "FACEGRAPH_OFFLINE"
_CHUNK = 1 << 20


def sha256_of(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def shot_cache_dir(folder: str | os.PathLike | None = None) -> Path:
    """Where Analyse Shot keeps its per-frame results: ``folder`` when given (a node's ``cache_folder``, the
    command line's ``--cache DIR``), else ``$FACEGRAPH_SHOT_CACHE``, else ``<facegraph cache>/shots``. The chunks
    of a shot on a farm share one folder on shared storage; models stay in their own cache."""
    chosen = os.fspath(folder) if folder else os.environ.get(ENV_SHOT_CACHE, "")
    if chosen:
        return Path(chosen).expanduser().absolute()
    return default_cache_dir() / "shots"


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "facegraph"


@dataclasses.dataclass(frozen=True)
class Location:
    kind: str   # explicit | host | cache | mirror | download
    path: Path


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """A spec whose every file has been found and verified. ``paths`` maps ModelFile.path -> local Path."""

    spec: ModelSpec
    paths: dict[str, Path]
    locations: dict[str, str]

    def path(self, suffix: str = "") -> Path:
        """The local path of the (only) file ending in ``suffix``."""
        return self.paths[self.spec.file(suffix).path] if suffix else self.paths[self.spec.files[0].path]


class ModelStore:
    def __init__(self, *, cache_dir: Path | str | None = None, mirrors: Iterable[Path | str] | None = None,
                 offline: bool | None = None,
                 host_dirs: Callable[[], Iterable[Path | str]] | None = None) -> None:
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._mirrors = None if mirrors is None else [Path(m) for m in mirrors]
        self._offline = offline
        self.host_dirs = host_dirs  # installed by a host adapter
        self._verified: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- roots
    @property
    def cache_dir(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else default_cache_dir()

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def offline(self) -> bool:
        if self._offline is not None:
            return self._offline
        return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")

    def mirrors(self) -> list[Path]:
        if self._mirrors is not None:
            return list(self._mirrors)
        env = os.environ.get(ENV_MIRROR, "")
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]

    def roots(self) -> list[Location]:
        out = []
        if self.host_dirs is not None:
            try:
                out += [Location("host", Path(p)) for p in self.host_dirs()]
            except Exception as exc:  # a host bridge must never break resolution
                log.warning("host model folders unavailable: %s", exc)
        out.append(Location("cache", self.models_dir))
        out += [Location("mirror", p) for p in self.mirrors()]
        return out

    # ------------------------------------------------------------------------------------------- pins
    @property
    def pins_file(self) -> Path:
        return self.cache_dir / "pins.json"

    def pins(self) -> dict[str, str]:
        try:
            return json.loads(self.pins_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read pinned hashes: {exc}", file=str(self.pins_file)) from None

    def pin(self, file: ModelFile, sha256: str) -> None:
        """Record the user's trusted hash for a file that has no published one."""
        if file.sha256 is not None:
            raise ModelError(f"{file.path} already has a published sha256; pins apply only to unpinned files")
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelError(f"not a sha256: {sha256!r}")
        pins = self.pins()
        pins[file.path] = sha256
        atomic_write(self.pins_file, json.dumps(pins, indent=2, sort_keys=True))

    def expected_sha256(self, file: ModelFile) -> str | None:
        return file.sha256 or self.pins().get(file.path)

    # --------------------------------------------------------------------------------------- locating
    def candidates(self, file: ModelFile, explicit: Path | str | None = None) -> list[Location]:
        """Every place a copy of ``file`` would be looked for, in order."""
        out: list[Location] = []
        if explicit is not None:
            e = Path(explicit).expanduser()
            if e.is_file():
                out.append(Location("explicit", e))
            else:
                out += [Location("explicit", e / file.path), Location("explicit", e / file.name)]
        for root in self.roots():
            out.append(Location(root.kind, root.path / file.path))
            if root.kind == "host":
                out.append(Location("host", root.path / file.name))  # users drop files flat
        return out

    def locate(self, file: ModelFile, explicit: Path | str | None = None) -> Location | None:
        for loc in self.candidates(file, explicit):
            if loc.path.is_file():
                return loc
        return None

    # -------------------------------------------------------------------------------------- verifying
    def verify(self, file: ModelFile, path: Path) -> str:
        """Check ``path`` against the file's pinned sha256; returns the hash. Memoised per (path, size, mtime)."""
        expected = self.expected_sha256(file)
        if expected is None:
            raise ModelError(
                f"{file.path} has no published sha256, so it cannot be verified", file=str(path),
                hint=f"if you trust this copy, run `facegraph models pin --file {path}` (or pass --sha256)")
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            actual = self._verified.get(key)
        if actual is None:
            actual = sha256_of(path)
            with self._lock:
                self._verified[key] = actual
        if actual != expected:
            raise IntegrityError(
                f"sha256 mismatch for {file.path}: expected {expected}, got {actual}", file=str(path),
                hint="the file is corrupt or not the registered release; it was not loaded. Delete it or "
                     "replace it with the official file")
        return actual

    # --------------------------------------------------------------------------------------- fetching
    def fetch(self, file: ModelFile) -> Path:
        """Download ``file`` from its official URL into the user cache, verifying as it streams."""
        if file.url is None:
            raise ModelNotFoundError(f"{file.path} has no download URL")
        if self.offline:
            raise ModelNotFoundError(f"{file.path} is not available locally and {ENV_OFFLINE}=1 forbids download",
                                     hint=self._where_hint(file))
        dest = self.models_dir / file.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        expected = self.expected_sha256(file)
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    resp = urllib.request.urlopen(file.url, timeout=60)
                except (urllib.error.URLError, OSError) as exc:
                    raise ModelNotFoundError(f"cannot download {file.url}: {exc}",
                                             hint=self._where_hint(file)) from None
                with resp:
                    total = int(resp.headers.get("Content-Length") or file.size or 0)
                    with progress.task(total, f"download {file.name}") as bar:
                        for block in iter(lambda: resp.read(_CHUNK), b""):
                            out.write(block)
                            h.update(block)
                            bar.advance(len(block))
            actual = h.hexdigest()
            if expected is not None and actual != expected:
                raise IntegrityError(f"downloaded {file.path} has sha256 {actual}, expected {expected}",
                                     file=file.url, hint="the corrupt download was deleted")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if expected is None:
            log.warning("downloaded %s (sha256 %s) but no hash is published for it; pin it to use it",
                        file.path, actual)
        return dest

    def _where_hint(self, file: ModelFile) -> str:
        places = ", ".join(str(loc.path) for loc in self.candidates(file))
        return f"looked in: {places}. Place the file there or set {ENV_MIRROR}"

    # -------------------------------------------------------------------------------------- resolving
    def resolve(self, spec: ModelSpec | str, *, explicit: Path | str | None = None,
                fetch: bool = True) -> ResolvedModel:
        """Find (or fetch) and verify every file of ``spec``. Raises ModelNotFoundError / IntegrityError."""
        if isinstance(spec, str):
            spec = registry().get(spec)
        paths: dict[str, Path] = {}
        kinds: dict[str, str] = {}
        if explicit is not None and not Path(explicit).expanduser().exists():
            raise ModelNotFoundError(f"model {spec.id!r}: explicit path does not exist", file=str(explicit))
        for i, f in enumerate(spec.files):
            # an explicit *file* stands for the spec's primary (first) file; a directory serves them all
            own = explicit if explicit is None or Path(explicit).is_dir() or i == 0 else None
            loc = self.locate(f, own)
            if loc is None:
                if not fetch:
                    raise ModelNotFoundError(f"model {spec.id!r}: {f.path} not found", model=spec.id,
                                             hint=self._where_hint(f))
                try:
                    loc = Location("download", self.fetch(f))
                except ModelError as exc:
                    raise exc.with_context(model=spec.id)
            try:
                self.verify(f, loc.path)
            except ModelError as exc:
                raise exc.with_context(model=spec.id)
            paths[f.path] = loc.path
            kinds[f.path] = loc.kind
        return ResolvedModel(spec=spec, paths=paths, locations=kinds)

    def status(self, spec: ModelSpec) -> tuple[bool, str]:
        """(resolved?, where) without fetching or hashing: for listings."""
        where = []
        for f in spec.files:
            loc = self.locate(f)
            if loc is None:
                return False, "missing " + f.path
            where.append(loc.kind)
        return True, ",".join(sorted(set(where)))


_default_store: ModelStore | None = None


def default_store() -> ModelStore:
    """The process-wide store (configured from the environment; host adapters set ``host_dirs``)."""
    global _default_store
    if _default_store is None:
        _default_store = ModelStore()
    return _default_store
