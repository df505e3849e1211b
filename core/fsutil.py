"""Safe file writes, shared by every writer in the pack.

- :func:`temp_beside` makes the temp file a writer fills before renaming it over its target. Its mode follows
  the process umask, as a plain ``open()`` would (``mkstemp`` alone gives 0600, so other artists and farm
  users could not read the results). Temp names are ``.<name>.<random>.tmp<ext>``: hidden, recognisable
  (SequenceWriter removes those a killed writer left), never matched by a frame pattern.
- :func:`atomic_write` writes small outputs (exports, caches, pins): temp file + rename, so readers never see
  half a file and a killed writer leaves only a temp file behind.
- The *input guard*: inside a job (:func:`job`: a CLI command, a headless graph run), every reader in the
  pack calls :func:`note_input` for the files it reads, and every writer calls :func:`refuse_input` before it
  replaces a file. A file the job has read as an input is never written over, whatever overwrite / resume
  says (compared by device + inode and by resolved real path, so links and ``..`` make no difference).
  :func:`check_disjoint` does the same up front for the planned outputs of a command against its planned
  inputs (sequences included), before any work. Jobs are scoped with a context variable, so a long-running
  host (ComfyUI) does not accumulate them; there the save nodes check the loaders of their own prompt.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .errors import ImageIOError

_lock = threading.Lock()
_MAX_NOTED = 1_000_000  # bounded memory: a job never records more input files than this


class _Inputs:
    def __init__(self) -> None:
        self.by_inode: dict[tuple[int, int], str] = {}
        self.by_path: set[str] = set()


_JOB: contextvars.ContextVar[_Inputs | None] = contextvars.ContextVar("facegraph_job", default=None)


@contextlib.contextmanager
def job() -> Iterator[None]:
    """Scope of the input guard: files read inside are never written over inside (nested jobs share the
    outer record). Threads started inside must run in a copy of the context (``contextvars.copy_context``)."""
    if _JOB.get() is not None:
        yield
        return
    token = _JOB.set(_Inputs())
    try:
        yield
    finally:
        _JOB.reset(token)
_umask: int | None = None


def _process_umask() -> int:
    global _umask
    if _umask is None:
        with _lock:
            old = os.umask(0o022)
            os.umask(old)
            _umask = old
    return _umask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0666 minus the umask."""
    return 0o666 & ~_process_umask()


def temp_beside(path: str | os.PathLike, suffix: str = "") -> str:
    """Create an empty temp file next to ``path`` (directories created) with the umask's mode; returns its
    name. Raises ImageIOError naming the target when the folder cannot be created or written."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=directory)
        os.close(fd)
        os.chmod(tmp, file_mode())
    except OSError as exc:
        raise ImageIOError(f"cannot write here: {exc.strerror or exc}", file=path,
                           hint="check that the folder exists, is writable and has free space") from None
    return tmp


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); raises ImageIOError naming the file."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    refuse_input(path)
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except OSError as exc:
        raise ImageIOError(f"cannot write: {exc.strerror or exc}", file=str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ------------------------------------------------------------------------------------------- input guard
def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def note_input(path: str | os.PathLike) -> None:
    """Record that the current job read ``path`` as an input (called by every reader; no-op outside a job)."""
    rec = _JOB.get()
    if rec is None:
        return
    real = _real(path)
    try:
        st = os.stat(real)
        key = (st.st_dev, st.st_ino)
    except OSError:
        key = None
    with _lock:
        if len(rec.by_path) < _MAX_NOTED:
            rec.by_path.add(real)
            if key is not None:
                rec.by_inode[key] = real


def is_input(path: str | os.PathLike) -> bool:
    """True when ``path`` is (by real path or by inode) a file the current job has read as an input."""
    rec = _JOB.get()
    if rec is None:
        return False
    real = _real(path)
    with _lock:
        if real in rec.by_path:
            return True
    try:
        st = os.stat(real)
    except OSError:
        return False
    with _lock:
        return (st.st_dev, st.st_ino) in rec.by_inode


def refuse_input(path: str | os.PathLike, frame: int | None = None) -> None:
    """Raise ImageIOError if writing ``path`` would replace one of this process's input files."""
    if is_input(path):
        raise ImageIOError("refusing to write over an input file", file=os.fspath(path), frame=frame,
                           hint="facegraph never replaces a file it read as input; choose another output path")


def check_disjoint(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike], *,
                   what: str = "output") -> None:
    """Raise ImageIOError when any planned output file is one of the planned input files (before any work).

    Compared by resolved real path and by inode for files that exist (hard links, symlinked folders)."""
    ins_real: dict[str, str] = {}
    ins_inode: dict[tuple[int, int], str] = {}
    for p in inputs:
        p = os.fspath(p)
        ins_real[_real(p)] = p
        try:
            st = os.stat(p)
            ins_inode[(st.st_dev, st.st_ino)] = p
        except OSError:
            pass
    for o in outputs:
        o = os.fspath(o)
        hit = ins_real.get(_real(o))
        if hit is None and ins_inode:
            try:
                st = os.stat(o)
                hit = ins_inode.get((st.st_dev, st.st_ino))
            except OSError:
                hit = None
        if hit is not None:
            raise ImageIOError(f"the {what} would write over the input file {hit}", file=o,
                               hint="facegraph never writes over its own inputs; choose another output path")


# --------------------------------------------------------------------------------------- output folders
MANIFEST = ".facegraph-manifest.json"


class OutputFolder:
    """A folder a command writes several outputs into, with a manifest of what it wrote.

    :meth:`prepare` refuses a non-empty folder unless ``overwrite``; with ``overwrite`` it removes what the
    previous run into this folder wrote (the manifest's files and its sequence patterns), never anything
    else, so a re-run never leaves a mix of old and new results. The manifest is written before any output
    (``state: running``, with the planned patterns) and completed at the end, so even a killed run is cleaned
    up by the next one.
    """

    def __init__(self, root: str | os.PathLike, planned: Iterable[str]) -> None:
        self.root = Path(root)
        self.planned = list(planned)          # relative paths or patterns (crops/crop.####.exr)
        self.files: list[str] = []

    def _manifest(self) -> Path:
        return self.root / MANIFEST

    def prepare(self, *, overwrite: bool, inputs: Iterable[str]) -> list[str]:
        """Check and clean the folder; returns the files removed. Raises ImageIOError when it is not empty
        (without overwrite) or when a planned output is one of ``inputs``."""
        import json

        from .io.sequence import SequencePattern

        inputs = list(inputs)
        planned_files = []
        for rel in self.planned:
            pat = SequencePattern.parse(str(self.root / rel))
            planned_files += [pat.head] if pat.is_still else [pat.path(f) for f in pat.scan()]
        check_disjoint(planned_files, inputs, what="output folder")  # inputs exist, so scan() lists them
        removed: list[str] = []
        try:
            entries = [e for e in os.listdir(self.root) if e != MANIFEST] if self.root.is_dir() else []
        except OSError as exc:
            raise ImageIOError(f"cannot list the output folder: {exc.strerror or exc}", file=str(self.root)) from None
        if self.root.exists() and not self.root.is_dir():
            raise ImageIOError("the output exists and is not a folder", file=str(self.root))
        if entries and not overwrite:
            raise ImageIOError(f"the output folder is not empty ({len(entries)} entries)", file=str(self.root),
                               hint="choose an empty folder, or pass --overwrite to replace what an earlier run "
                                    "wrote there (other files are kept)")
        if entries:
            try:
                old = json.loads(self._manifest().read_text())
                old_files = [str(x) for x in old.get("files", [])]
                old_patterns = [str(x) for x in old.get("patterns", [])]
            except (OSError, ValueError, AttributeError):
                old_files, old_patterns = [], []
            targets = [self.root / f for f in old_files]
            for rel in old_patterns + self.planned:
                pat = SequencePattern.parse(str(self.root / rel))
                targets += [Path(pat.head)] if pat.is_still else [Path(pat.path(f)) for f in pat.scan()]
            check_disjoint([str(t) for t in targets], inputs, what="cleaning of the output folder")
            for t in dict.fromkeys(targets):
                if t.is_file() and _inside(t, self.root):
                    try:
                        t.unlink()
                        removed.append(str(t))
                    except OSError as exc:
                        raise ImageIOError(f"cannot remove an old output: {exc.strerror or exc}", file=str(t)) from None
        self._write_manifest("running")
        return removed

    def add(self, *paths: str | os.PathLike) -> None:
        for p in paths:
            rel = os.path.relpath(os.fspath(p), self.root)
            if rel not in self.files:
                self.files.append(rel)

    def finish(self) -> None:
        self._write_manifest("complete")

    def _write_manifest(self, state: str) -> None:
        import json

        atomic_write(self._manifest(), json.dumps({"state": state, "patterns": self.planned,
                                                   "files": self.files}, indent=1))


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
        return True
    except ValueError:
        return False



# ------------------------------------------------------------------------------------------ fingerprints
_HASH_BELOW = 64 << 20  # single files smaller than this are fingerprinted by a hash of their bytes


def fingerprint(paths: Iterable[str | os.PathLike], *, extra: object = None) -> str:
    """A fingerprint of files' content identity, for a host's "has this input changed?" question.

    Per file: its real path, size, mtime, *ctime* and inode. ctime is set by the kernel on every write or
    metadata change and cannot be set back by a user (unlike mtime, which ``touch -r`` restores), so a frame
    edited in place with its size and mtime kept still changes the fingerprint; a file replaced by rename
    changes its inode. When a single file smaller than 64 MiB is asked about, its bytes are hashed as well.
    Missing files count (as missing), so a frame that appears or vanishes changes it too.
    """
    import hashlib

    paths = [os.fspath(p) for p in paths]
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(extra).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{_real(p)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}".encode())
        except OSError:
            h.update(f"{p}:missing".encode())
    if len(paths) == 1 and os.path.isfile(paths[0]) and os.path.getsize(paths[0]) < _HASH_BELOW:
        with open(paths[0], "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def pattern_files(text: str) -> list[str]:
    """The files a path or sequence pattern names on disk now (for fingerprints); [] if unparsable."""
    from .errors import FacegraphError
    from .io.sequence import SequencePattern

    try:
        pat = SequencePattern.parse(text.strip())
    except FacegraphError:
        return []
    if pat.is_still:
        p = pat.head
        if os.path.isdir(p):  # e.g. a tracking export folder
            return [os.path.join(p, n) for n in sorted(os.listdir(p)) if n.endswith(".json")]
        return [p]
    return [pat.path(f) for f in pat.scan()]
