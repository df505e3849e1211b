"""Device names, resolved in one place.

Nodes and the CLI accept ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (and ``mps`` where torch has it). ``auto`` asks
the host first (plugin/comfyui installs ComfyUI's device) and otherwise picks CUDA when torch sees a GPU.
"""
from __future__ import annotations

import logging
from typing import Callable, Literal

from ..core.errors import InputError

log = logging.getLogger(__name__)

DeviceName = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Set by a host adapter: returns the host's preferred torch device name (e.g. "cuda:0").
host_device_provider: Callable[[], str] | None = None


def resolve_device(name: str = "auto") -> str:
    """Return a concrete device string ("cpu", "cuda:0", "mps"). Falls back to CPU with a logged reason."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if host_device_provider is not None:
            try:
                return str(host_device_provider())
            except Exception as exc:
                log.warning("host device unavailable (%s); choosing one myself", exc)
        return "cuda:0" if _cuda_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name.startswith("cuda"):
        if not _cuda_available():
            log.warning("device %r requested but torch sees no CUDA device; using the CPU", name)
            return "cpu"
        return name if ":" in name else "cuda:0"
    if name == "mps":
        return "mps"
    raise InputError(f"unknown device {name!r}", hint=f"use one of {DEVICE_CHOICES} or cuda:N")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
