"""Progress and interruption, without knowing the host.

Long work in core/ and models/ calls :func:`report` and :func:`check_interrupt`. By default they do nothing;
a host adapter (plugin/comfyui: ComfyUI's ProgressBar and interrupt flag; plugin/cli: a tqdm bar) installs a
:class:`Reporter` for the duration of a run with :func:`reporting`. Context-local, so threads and nested runs
do not see each other's bars.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Protocol


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
