"""Graph type names and small packing helpers shared by every node module.

Graph types are namespaced (FACEGRAPH_...): ComfyUI core already ships FACE_LANDMARKS and BOUNDING_BOX with
other payloads; converter nodes translate explicitly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

IMAGE = "IMAGE"
MASK = "MASK"
STRING = "STRING"
INT = "INT"
FLOAT = "FLOAT"
BOOLEAN = "BOOLEAN"

FACES = "FACEGRAPH_FACES"          # list[FrameFaces], one per image of the batch
MODEL = "FACEGRAPH_MODEL"          # a cached model handle (models.handles.ModelHandle)
ALIGN = "FACEGRAPH_ALIGN"          # list[Alignment], one per crop of the batch
SEQUENCE = "FACEGRAPH_SEQUENCE"    # core.io.frames.SequenceInfo
TRACKS = "FACEGRAPH_TRACKS"        # core.shot.ShotResult: tracks with per-frame alignments
VIEW = "FACEGRAPH_VIEW"            # core.colour.ViewOptions
FACE_MODEL = "FACEGRAPH_FACE_MODEL"  # models.pipeline.synthesis.FaceMesh (a MorphableModel with torch topology)
FIT = "FACEGRAPH_FIT"              # list[list[core.morphable.fit.FitResult | None]]: per image, per face of FACES
TEXTURE = "FACEGRAPH_TEXTURE"      # models.pipeline.synthesis.Texture (straight colour + alpha in a UV layout)
COLOUR_TRANSFER = "FACEGRAPH_COLOUR_TRANSFER"  # core.colour_match.ColourTransfer (one for a shot)

CATEGORY = "facegraph"


def in_path(text: str) -> str:
    """A path a node reads, resolved against the host's input folder (core/paths.py)."""
    from ..core.paths import resolve

    return resolve(str(text or ""), "input")


def out_path(text: str) -> str:
    """A path a node writes, resolved against the host's output folder (core/paths.py)."""
    from ..core.paths import resolve

    return resolve(str(text or ""), "output")


def widget(kind: str, tooltip: str, **options: Any) -> tuple:
    """An input spec ``(TYPE, {options, tooltip})``; ``kind`` may be a type name or a list of combo choices."""
    opts = dict(options)
    opts["tooltip"] = tooltip
    return (list(kind) if isinstance(kind, (list, tuple)) else kind, opts)


def image_to_numpy(image: Any) -> np.ndarray:
    """Host IMAGE (torch [B,H,W,C] float32) -> numpy float32 [B,H,W,C] on the CPU (no copy when possible)."""
    if isinstance(image, np.ndarray):
        arr = image
    else:
        arr = image.detach().cpu().numpy()
    if arr.ndim == 3:
        arr = arr[None]
    return np.asarray(arr, dtype=np.float32)


def numpy_to_image(arr: np.ndarray) -> Any:
    """numpy [B,H,W,C] (or [H,W,C]) -> host IMAGE: torch float32 [B,H,W,C] on the CPU."""
    import torch

    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr))


def numpy_to_mask(arr: np.ndarray) -> Any:
    import torch

    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr))


def mask_to_numpy(mask: Any) -> np.ndarray:
    arr = mask if isinstance(mask, np.ndarray) else mask.detach().cpu().numpy()
    if arr.ndim == 2:
        arr = arr[None]
    return np.asarray(arr, dtype=np.float32)
