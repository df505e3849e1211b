"""Read pickled numpy arrays without executing arbitrary code.

The 3DDFA configs ship as Python pickles. They are read only after their sha256 has been verified, and only
through an unpickler that admits the handful of globals numpy needs to rebuild an ndarray (and plain
containers). Anything else raises :class:`~facegraph.core.errors.ModelError`.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise ModelError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core -> numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def load_arrays(path: Path | str) -> Any:
    """Unpickle ``path`` admitting only numpy arrays, scalars, dicts, lists and tuples of them."""
    data = Path(path).read_bytes()
    try:
        obj = _ArrayUnpickler(io.BytesIO(data)).load()
    except ModelError as exc:
        raise exc.with_context(file=str(path))
    except Exception as exc:  # malformed pickle
        raise ModelError(f"cannot read pickled arrays: {exc}", file=str(path)) from None
    _check(obj, str(path))
    return obj


def _check(obj: Any, where: str) -> None:
    if isinstance(obj, (np.ndarray, np.generic, int, float, str, bytes, type(None))):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check(k, where)
            _check(v, where)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check(v, where)
        return
    raise ModelError(f"unexpected object of type {type(obj).__name__} in pickle", file=where)
