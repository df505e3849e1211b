"""The pack's version, from one source of truth: pyproject.toml (via installed metadata when present)."""
from __future__ import annotations

import functools
import tomllib
from importlib import metadata
from pathlib import Path


@functools.lru_cache(maxsize=1)
def version() -> str:
    root = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if root.is_file():  # a checkout (custom_nodes folder or editable install): the file is the truth
        return tomllib.loads(root.read_text())["project"]["version"]
    try:
        return metadata.version("facegraph")
    except metadata.PackageNotFoundError:
        return "0+unknown"
