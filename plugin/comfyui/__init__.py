"""ComfyUI registration and bridges (progress, interruption, device, model folder).

Every ``comfy.*`` / ``folder_paths`` import is lazy and guarded: importing ``comfy.model_management`` at module
level crashes ComfyUI's custom-node loader on machines without a GPU, and outside ComfyUI none of them exist.
"""
from __future__ import annotations

import logging
import os

from ...core import progress
from ...models import devices
from ...models.store import default_store
from ...nodes import DISPLAY_NAMES, NODE_CLASSES

log = logging.getLogger(__name__)

MODEL_FOLDER = "facegraph"  # ComfyUI/models/facegraph, laid out like the mirror or with files flat

NODE_CLASS_MAPPINGS = dict(NODE_CLASSES)
NODE_DISPLAY_NAME_MAPPINGS = dict(DISPLAY_NAMES)


class ComfyReporter:
    """core.progress.Reporter backed by comfy.utils.ProgressBar and ComfyUI's interrupt flag."""

    def __init__(self) -> None:
        self._bars: list = []

    def start(self, total: int, label: str) -> None:
        try:
            import comfy.utils

            self._bars.append(comfy.utils.ProgressBar(max(1, total)))
        except Exception:  # outside a prompt execution there is no bar to drive
            self._bars.append(None)

    def advance(self, n: int = 1) -> None:
        if self._bars and self._bars[-1] is not None:
            self._bars[-1].update(n)

    def finish(self) -> None:
        if self._bars:
            self._bars.pop()

    def check_interrupt(self) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def _host_device() -> str:
    import comfy.model_management

    return str(comfy.model_management.get_torch_device())


def _model_folders() -> list[str]:
    import folder_paths

    return list(folder_paths.get_folder_paths(MODEL_FOLDER))


def install_bridges() -> bool:
    """Wire facegraph to the running ComfyUI. Returns False (and changes nothing) outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return False
    try:
        folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    except Exception as exc:
        log.warning("facegraph: could not register the model folder: %s", exc)
    default_store().host_dirs = _model_folders
    devices.host_device_provider = _host_device
    progress.set_fallback(ComfyReporter())
    return True


install_bridges()
