"""Shape and dtype checks shared by every frame kernel (see DESIGN.md "Frames on any device").

Convention:
    images   (B, C, H, W) float32 (float16/bfloat16/float64 where a kernel says so), any device, scene-linear,
             premultiplied where C == 4, not clamped.
    masks    (B, 1, H, W) float32 in [0, 1].
    matrices (B, 2, 3) 2x3 affines, source -> destination, pixel-area coordinates (core/conventions.py).
The checks raise :class:`InputError` naming the argument and what was expected; they never copy or move data.
ComfyUI's IMAGE (B, H, W, C) becomes (B, C, H, W) with :func:`bchw` (a permuted view, not a copy).
"""
from __future__ import annotations

import torch

from .errors import InputError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_images(x: torch.Tensor, name: str = "images", *, channels: tuple[int, ...] | None = None,
                 dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> torch.Tensor:
    """Validate a (B, C, H, W) image batch; returns it unchanged."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] not in channels:
        raise InputError(f"{name} must have {' or '.join(map(str, channels))} channels, got {x.shape[1]} "
                         f"(shape {tuple(x.shape)})")
    if x.dtype not in dtypes:
        raise InputError(f"{name} must be {'/'.join(str(d).removeprefix('torch.') for d in dtypes)}, got {x.dtype}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise InputError(f"{name} is empty: shape {tuple(x.shape)}")
    return x


def check_masks(m: torch.Tensor, like: torch.Tensor | None = None, name: str = "masks") -> torch.Tensor:
    """Validate a (B, 1, H, W) float mask batch (and that it matches ``like``'s batch, size and device)."""
    check_images(m, name, channels=(1,), dtypes=FLOAT_DTYPES)
    if like is not None:
        if m.shape[0] not in (1, like.shape[0]) or m.shape[2:] != like.shape[2:]:
            raise InputError(f"{name} {tuple(m.shape)} does not match the images {tuple(like.shape)} "
                             f"(batch 1 or {like.shape[0]}, size {tuple(like.shape[2:])})")
        if m.device != like.device:
            raise InputError(f"{name} is on {m.device} but the images are on {like.device}: move one of them")
    return m


def check_matrices(m: torch.Tensor, batch: int | None = None, name: str = "matrices") -> torch.Tensor:
    """Validate (B, 2, 3) affines (batch 1 broadcasts)."""
    if not isinstance(m, torch.Tensor) or m.ndim != 3 or tuple(m.shape[1:]) != (2, 3):
        raise InputError(f"{name} must be a (B, 2, 3) tensor, got "
                         f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__}")
    if batch is not None and m.shape[0] not in (1, batch):
        raise InputError(f"{name} has batch {m.shape[0]}, expected 1 or {batch}")
    if not torch.isfinite(m).all():
        raise InputError(f"{name} contains NaN or Inf")
    return m


def bchw(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, C) -> (B, C, H, W) view (no copy)."""
    if image.ndim != 4:
        raise InputError(f"IMAGE must be (B, H, W, C), got shape {tuple(image.shape)}")
    return image.permute(0, 3, 1, 2)


def bhwc(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> ComfyUI IMAGE (B, H, W, C) view (no copy)."""
    return images.permute(0, 2, 3, 1)
