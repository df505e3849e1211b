"""One exception hierarchy for the whole pack.

Every error says *what* was wrong, *where* (file, frame, node, model) and, where we know it, *what to do*.
Library code never uses ``assert`` for validation, never prints and never exits the process: a host such as
ComfyUI must survive any of these.
"""
from __future__ import annotations

from typing import Any


class FacegraphError(Exception):
    """Base class. ``context`` holds where the error happened (file=..., frame=..., node=..., model=...)."""

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        self.hint = hint
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        text = self.message + (f" [{where}]" if where else "")
        return text + (f". {self.hint}" if self.hint else "")

    def with_context(self, **context: Any) -> "FacegraphError":
        """Add context (e.g. the node id) while the error travels up; returns self for ``raise e.with_context()``."""
        for k, v in context.items():
            if v is not None:
                self.context.setdefault(k, v)
        self.args = (self._compose(),)
        return self

    def __str__(self) -> str:  # args may have been refreshed by with_context
        return self.args[0] if self.args else self._compose()


class InputError(FacegraphError, ValueError):
    """Bad input from the user or an upstream node: wrong shape, range, file, parameter."""


class ImageIOError(FacegraphError, OSError):
    """A frame or still could not be read or written (missing, truncated, unsupported, refused overwrite)."""


class ModelError(FacegraphError):
    """A model could not be resolved, verified or run."""


class ModelNotFoundError(ModelError):
    """No copy of a model file could be found in any location, and fetching was not possible or not allowed."""


class IntegrityError(ModelError):
    """A model file's sha256 differs from the pinned one. Such a file is never loaded."""


class EstimationError(FacegraphError):
    """An estimate (alignment, fit, pose) failed or is degenerate; the caller must not use its result."""


class GraphError(FacegraphError):
    """A graph could not be parsed or executed (unknown node, bad link, cycle, failing node)."""
