"""Where a relative path goes: the host's input / output / temp folders.

Convention: a node's path input is resolved at the node edge by :func:`resolve`: an absolute path (or ``~``)
stays as it is; a path with ComfyUI's annotation (``plate.####.exr [input]``, ``x.png [output]``,
``y.png [temp]``, as core nodes write them) goes under that folder; any other relative path goes under the
folder of the input's role: what a node reads under the *input* folder, what it writes under the *output*
folder. The folders come from the host (plugin/comfyui installs ComfyUI's folder_paths) or, headless, from the
runner's ``--input-dir`` / ``--output-dir`` (:func:`folders`); by default both are the current directory.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import tempfile
from typing import Callable, Iterator, Literal

from .errors import InputError

PathKind = Literal["input", "output", "temp"]
PATH_KINDS: tuple[str, ...] = ("input", "output", "temp")
_ANNOTATION = re.compile(r"^(.*?)\s*\[(input|output|temp)\]\s*$")
#: the host's provider: kind -> root folder (None: the host cannot say); installed by plugin/comfyui
_host: list[Callable[[str], str | None] | None] = [None]
_scoped: contextvars.ContextVar[dict | None] = contextvars.ContextVar("facegraph_folders", default=None)

#: appended to every path widget's tooltip
INPUT_TIP = " (relative: under the input folder; absolute paths and [input] / [output] / [temp] annotations work)"
OUTPUT_TIP = " (relative: under the output folder; absolute paths and [output] / [temp] annotations work)"


def set_host_folders(provider: Callable[[str], str | None] | None) -> None:
    """Install the host's folders (``provider(kind)`` -> root), or None to go back to the defaults."""
    _host[0] = provider


@contextlib.contextmanager
def folders(input: str | os.PathLike | None = None, output: str | os.PathLike | None = None) -> Iterator[None]:
    """Headless folders for a run (the runner's --input-dir / --output-dir); None keeps the default."""
    token = _scoped.set({"input": os.fspath(input) if input else None, "output": os.fspath(output) if output else None})
    try:
        yield
    finally:
        _scoped.reset(token)


def root(kind: PathKind) -> str:
    """The folder of ``kind``: this run's, else the host's, else the current directory (temp: the system's)."""
    if kind not in PATH_KINDS:
        raise InputError(f"path kind must be one of {PATH_KINDS}, got {kind!r}")
    scoped = _scoped.get()
    if scoped and scoped.get(kind):
        return scoped[kind]
    if _host[0] is not None:
        got = _host[0](kind)
        if got:
            return got
    if kind == "temp":
        return os.path.join(tempfile.gettempdir(), "facegraph")
    return os.getcwd()


def resolve(text: str, kind: PathKind) -> str:
    """The path a node input names (module docstring); "" stays "" (nodes report a missing path themselves)."""
    t = (text or "").strip()
    if not t:
        return ""
    m = _ANNOTATION.match(t)
    if m:
        t, kind = m.group(1).strip(), m.group(2)
    t = os.path.expanduser(t)
    if os.path.isabs(t):
        return t
    return os.path.join(root(kind), t)
