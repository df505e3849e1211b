"""Progress and interruption, without knowing the host.

Long work in core/, models/ and nodes/ calls :func:`report` and :func:`check_interrupt`. By default they do nothing;
a host adapter (plugin/comfyui: ComfyUI's ProgressBar and interrupt flag; plugin/cli: a tqdm bar) installs a
:class:`Reporter` for the duration of a run with :func:`reporting`. Context-local, so threads and nested runs
do not see each other's bars.

Pictures shown on a node (the host's ``{"ui": {"images": [...]}}``) go through :func:`ui_images`: PNGs written
under the host's temp / output folder (plugin/comfyui installs the provider with :func:`set_ui_folder`;
headless: a temporary folder of this process) and referenced as ``{"filename", "subfolder", "type"}``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol, Sequence

import numpy as np


class Reporter(Protocol):
    def start(self, total: int, label: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...
    def check_interrupt(self) -> None:
        """Raise the host's interruption exception if the user asked to stop."""


class NullReporter:
    def start(self, total: int, label: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def check_interrupt(self) -> None:
        pass


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("facegraph_reporter", default=None)
_fallback: list[Reporter] = [NullReporter()]


def current() -> Reporter:
    """The reporter of the enclosing :func:`reporting` block, else the host's fallback (else a no-op)."""
    rep = _current.get()
    return rep if rep is not None else _fallback[0]


def set_fallback(reporter: Reporter | None) -> None:
    """Install the reporter used outside any :func:`reporting` block (a host adapter calls this once)."""
    _fallback[0] = reporter if reporter is not None else NullReporter()


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Install ``reporter`` for the enclosed block."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


@contextlib.contextmanager
def task(total: int, label: str) -> Iterator[Reporter]:
    """A unit of long work: ``with task(n, "detect") as p: ... p.advance()``. Checks interruption each step."""
    rep = current()
    rep.start(int(total), label)
    try:
        yield _Checked(rep)
    finally:
        rep.finish()


class _Checked:
    def __init__(self, rep: Reporter) -> None:
        self._rep = rep

    def advance(self, n: int = 1) -> None:
        self._rep.check_interrupt()
        self._rep.advance(n)

    def check_interrupt(self) -> None:
        self._rep.check_interrupt()


# ----------------------------------------------------------------------------------- pictures in the UI
UiKind = Literal["temp", "output"]
UI_KINDS: tuple[str, ...] = ("temp", "output")
UI_SUBFOLDER = "facegraph"
_ui_provider: list[Callable[[str], str] | None] = [None]
_own_ui_root: list[Path] = []


def set_ui_folder(provider: Callable[[str], str] | None) -> None:
    """Install the host's folder for UI pictures: ``provider(kind)`` returns the root folder of ``kind``
    ("temp" or "output"), or None when the host cannot say; ``provider`` None restores the headless default
    (a temporary folder of this process)."""
    _ui_provider[0] = provider


def ui_folder(kind: UiKind = "temp") -> Path:
    """The root folder of UI pictures of ``kind`` (the host's, else one temporary folder per process)."""
    if kind not in UI_KINDS:
        from .errors import InputError

        raise InputError(f"ui picture kind {kind!r} is not one of {UI_KINDS}")
    provider = _ui_provider[0]
    root = provider(kind) if provider is not None else None
    if root is not None:
        return Path(root)
    if not _own_ui_root:
        _own_ui_root.append(Path(tempfile.mkdtemp(prefix="facegraph-ui-")))
    return _own_ui_root[0] / kind


def ui_images(pictures: Sequence[np.ndarray], prefix: str, kind: UiKind = "temp") -> list[dict]:
    """Write display-referred pictures as PNGs for the host to show on a node; return their references.

    Convention: each picture is (H, W, 3) uint8 sRGB (a preview, never pixel data). Files land in
    ``ui_folder(kind)/facegraph`` under fresh names (``prefix_<random>_<index>.png``: a re-run never overwrites a
    picture the browser still shows). Returns ``[{"filename", "subfolder", "type"}]``, the shape ComfyUI's
    ``{"ui": {"images": [...]}}`` expects (as its own PreviewImage / SaveImage report).
    """
    from .io.images import write_display_png

    folder = ui_folder(kind) / UI_SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix) or "preview"
    refs = []
    for i, pic in enumerate(pictures):
        name = f"{safe}_{token}_{i:05d}.png"
        write_display_png(os.path.join(folder, name), np.ascontiguousarray(pic))
        refs.append({"filename": name, "subfolder": UI_SUBFOLDER, "type": kind})
    return refs


class UiResult(dict):
    """A node's return value with pictures / text for the host: ``{"ui": {...}, "result": (outputs...)}``.

    The host reads it as that dict (ComfyUI: ``"ui" in r``, ``r["ui"]``, ``r["result"]``); iterating it yields
    the outputs, so a caller that unpacks a node's tuple (``(preview,) = node.draw(...)``) keeps working.
    """

    def __init__(self, result: tuple, **ui: list) -> None:
        super().__init__(ui=dict(ui), result=tuple(result))

    def __iter__(self):
        return iter(self["result"])


def ui_result(result: tuple, **ui: list) -> UiResult:
    """``UiResult(result, images=[...], text=[...])``: see :class:`UiResult`."""
    return UiResult(result, **ui)


def preview_picks(n: int, count: int) -> list[int]:
    """Indices of at most ``count`` of ``n`` items, evenly spaced, first and last included (count 0: none)."""
    if n <= 0 or count <= 0:
        return []
    return [int(i) for i in np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))]
