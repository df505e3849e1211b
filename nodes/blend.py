"""Blend nodes: colour match, Poisson blend, paste-back of face crops into their frames.

Thin: IMAGE (B, H, W, C) becomes (B, C, H, W) by a permuted view at the node edge (core.tensors.bchw) and MASK
(B, H, W) becomes (B, 1, H, W); the kernels of core.colour_match / core.blend run on the tensors' own device.
The input checks here are the node edge's (shapes against each other, NaN, empty masks), each InputError names
the node input; everything else is core's.

Bad input, the same in every node of this module and of nodes/face_model.py: an empty or all-zero mask passes
the target through unchanged with a ui note (not an error); a mask of another size, NaN / Inf in a source, or a
crop of the wrong size for its alignment raise InputError naming the input. Nothing returns a half result.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..core import progress
from ..core.blend import GUIDANCES, PASTE_MODES, PasteOptions, PoissonOptions, paste_back, poisson_blend
from ..core.colour_match import (METHODS, SPACES, ColourTransfer, apply_colour_transfer, colour_stats,
                                 fit_colour_transfer, frame_colour_stats, region_stats_difference)
from ..core.errors import InputError
from ..core.tensors import bchw, bhwc
from .types import (ALIGN, BOOLEAN, CATEGORY, COLOUR_TRANSFER, FLOAT, IMAGE, INT, MASK, SEQUENCE, widget)


# ------------------------------------------------------------------------------------------- node edge
def image_in(image: Any, name: str) -> torch.Tensor:
    """Host IMAGE (B, H, W, C) (or one (H, W, C) image; torch or numpy) -> (B, C, H, W) float32 view on the
    image's own device (a copy only when the dtype is not float32). InputError names ``name``."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise InputError(f"input {name!r} must be an IMAGE tensor (B, H, W, C), got {type(image).__name__}",
                         input=name)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:3]) < 1:
        raise InputError(f"input {name!r} must be an IMAGE (B, H, W, C) with C = 3 or 4, got shape "
                         f"{tuple(image.shape)}", input=name)
    if not image.is_floating_point():
        raise InputError(f"input {name!r} must hold float pixels, got {image.dtype}", input=name)
    return bchw(image if image.dtype == torch.float32 else image.float())


def mask_in(mask: Any, name: str, like: torch.Tensor, *, batch: int | None = None) -> torch.Tensor | None:
    """Host MASK (B, H, W) (or (H, W)) -> (B | 1, 1, H, W) float32 on ``like``'s device, or None when not
    connected. The size must be ``like``'s (B, C, H, W) H x W and the batch 1 or ``batch`` (default: like's);
    values finite and in [0, 1]. InputError names ``name``."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise InputError(f"input {name!r} must be a MASK (B, H, W), got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}",
                         input=name)
    m = mask if mask.ndim == 3 else mask[None]
    want_b = like.shape[0] if batch is None else batch
    h, w = like.shape[2:]
    if tuple(m.shape[1:]) != (h, w):
        raise InputError(f"input {name!r} is {m.shape[2]}x{m.shape[1]} but the images it masks are {w}x{h}",
                         hint="resize the mask to the images, or connect the mask made for these images",
                         input=name)
    if m.shape[0] not in (1, want_b):
        raise InputError(f"input {name!r} holds {m.shape[0]} masks for {want_b} images: connect 1 or {want_b}",
                         input=name)
    m = m.to(device=like.device, dtype=torch.float32)[:, None]
    check_finite(m, name)
    if m.numel() and (float(m.min()) < 0.0 or float(m.max()) > 1.0):
        raise InputError(f"input {name!r} must be in [0, 1], got values in [{float(m.min()):.4g}, "
                         f"{float(m.max()):.4g}]", input=name)
    return m


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """InputError naming ``name`` when ``x`` holds NaN or Inf (one reduction; the exact test only then)."""
    if bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all()):
        return x
    bad = "NaN" if bool(torch.isnan(x).any()) else "Inf"
    raise InputError(f"input {name!r} contains {bad} values", hint="fix or fill those pixels first "
                     "(e.g. Load Image Sequence's nonfinite=zero)", input=name)


def is_empty(mask: torch.Tensor | None) -> bool:
    """True for a connected mask that is zero everywhere (None = not connected = the whole frame)."""
    return mask is not None and not bool((mask > 0).any())


def image_out(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> host IMAGE (B, H, W, C), contiguous (hosts and savers may call .view / .numpy)."""
    return bhwc(x).contiguous()


def mask_out(m: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> host MASK (B, H, W)."""
    return m[:, 0].contiguous()


def with_notes(result: tuple, notes: Sequence[str], summary: str = "") -> dict:
    """The node's return value with a ui text: the summary and the notes (what was passed through and why)."""
    text = "\n".join([summary] * bool(summary) + list(notes)) or "ok"
    return {"ui": {"text": [text]}, "result": result}


def identity_transfer(space: str, device: torch.device) -> ColourTransfer:
    """The colour transfer that changes nothing (what an empty mask gives)."""
    return ColourTransfer("meanstd", space, matrix=torch.eye(3, dtype=torch.float64, device=device),
                          offset=torch.zeros(3, dtype=torch.float64, device=device))


# ------------------------------------------------------------------------------------------ colour match
class ColourMatch:
    DESCRIPTION = ("Match the colour of the source to the target in linear light (core.colour_match): the "
                   "distribution under source_mask is mapped onto the one under target_mask (meanstd, mkl or "
                   "histogram, in log / opponent / linear). per_batch: one transfer fitted on the whole batch "
                   "(no flicker over a shot); off: one per frame. An empty mask passes the source through.")
    CATEGORY = f"{CATEGORY}/blend"
    FUNCTION = "match"
    RETURN_TYPES = (IMAGE, COLOUR_TRANSFER)
    RETURN_NAMES = ("images", "transfer")
    OUTPUT_TOOLTIPS = ("the source recoloured (scene-linear, unclamped)",
                       "the fitted transfer (per_batch) or a list with one per frame")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source": widget(IMAGE, "linear images to recolour (e.g. a face texture or crop)"),
            "target": widget(IMAGE, "linear images whose colour to match (e.g. the plate); batch 1 or the "
                                    "source's when per_batch is off"),
            "method": widget(METHODS, "meanstd: mean and spread per channel; mkl: the optimal linear map of "
                                      "the colour covariances; histogram: per-channel quantile LUT",
                             default="mkl"),
            "space": widget(SPACES, "working space: log (stops), opponent (log luminance / chroma), linear",
                            default="opponent"),
            "strength": widget(FLOAT, "0: unchanged, 1: the full map", default=1.0, min=0.0, max=1.0, step=0.05),
            "per_batch": widget(BOOLEAN, "one transfer for the whole batch (a shot: no flicker); off: one per "
                                         "frame", default=True),
        }, "optional": {
            "source_mask": widget(MASK, "where the source's colours are measured (default: everywhere)"),
            "target_mask": widget(MASK, "where the target's colours are measured (default: everywhere)"),
            "limit_to_mask": widget(BOOLEAN, "change only the source pixels under source_mask (soft)",
                                    default=False),
        }}

    def match(self, source, target, method="mkl", space="opponent", strength=1.0, per_batch=True,
              source_mask=None, target_mask=None, limit_to_mask=False):
        src = check_finite(image_in(source, "source"), "source")
        tgt = check_finite(image_in(target, "target").to(src.device), "target")
        for name, x in (("source", src), ("target", tgt)):
            if x.shape[1] not in (3, 4):
                raise InputError(f"input {name!r} must have 3 or 4 channels, got {x.shape[1]}", input=name)
        sm = mask_in(source_mask, "source_mask", src)
        tm = mask_in(target_mask, "target_mask", tgt)
        if not per_batch and tgt.shape[0] not in (1, src.shape[0]):
            raise InputError(f"per-frame matching needs one target per source frame ({src.shape[0]}) or a single "
                             f"target, got {tgt.shape[0]}",
                             hint="connect one target per source frame, or turn per_batch on", input="target")
        for name, m in (("source_mask", sm), ("target_mask", tm)):
            if is_empty(m):
                return with_notes((image_out(src), identity_transfer(space, src.device)),
                                  [f"{name} is empty: the source is passed through unchanged"])
        sketch = method == "histogram"
        notes: list[str] = []
        if per_batch:
            st_s = colour_stats(src, sm, space, sketch=sketch, image_name="source", mask_name="source_mask")
            st_t = colour_stats(tgt, tm, space, sketch=sketch, image_name="target", mask_name="target_mask")
            transfer: Any = fit_colour_transfer(st_s, st_t, method, space)
        else:
            per_s = frame_colour_stats(src, sm, space, sketch=sketch, allow_empty=True, image_name="source",
                                       mask_name="source_mask")
            per_t = frame_colour_stats(tgt, tm, space, sketch=sketch, allow_empty=True, image_name="target",
                                       mask_name="target_mask")
            transfer = []
            for b, s in enumerate(per_s):
                t = per_t[b if len(per_t) > 1 else 0]
                if s.total <= 0 or t.total <= 0:
                    notes.append(f"frame {b}: empty mask, passed through")
                    transfer.append(identity_transfer(space, src.device))
                else:
                    transfer.append(fit_colour_transfer(s, t, method, space))
        out = apply_colour_transfer(src, transfer, strength=float(strength), mask=sm if limit_to_mask else None)
        before = region_stats_difference(src, tgt, sm, tm, "log")["mean_abs"]
        after = region_stats_difference(out, tgt, sm, tm, "log")["mean_abs"]
        summary = (f"{method} in {space}, {'one transfer for' if per_batch else 'one transfer per frame of'} "
                   f"{src.shape[0]} frame(s): mean difference {before:.3f} -> {after:.3f} stops")
        return with_notes((image_out(out), transfer), notes, summary)


# ------------------------------------------------------------------------------------------ poisson
class PoissonBlend:
    DESCRIPTION = ("Gradient-domain (Poisson) blend of the source into the target inside the mask "
                   "(core.blend.poisson_blend): the source's detail with the target's light at the mask's edge. "
                   "Scene-linear, unclamped; only the mask's box plus margin is solved. An empty mask passes the "
                   "target through.")
    CATEGORY = f"{CATEGORY}/blend"
    FUNCTION = "blend"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("the blended target",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source": widget(IMAGE, "what goes in, already in the target's pixel grid (batch 1 or the target's)"),
            "target": widget(IMAGE, "the plate"),
            "mask": widget(MASK, "where the source goes (soft allowed; batch 1 or the target's)"),
            "guidance": widget(GUIDANCES, "source: the source's gradients; mixed: the larger of source and "
                                          "target per edge; log: gradients of log colour (exposure-invariant)",
                               default="source"),
            "margin": widget(INT, "pixels of target around the mask's box inside the solve", default=16, min=1,
                             max=1024),
        }}

    def blend(self, source, target, mask, guidance="source", margin=16):
        tgt = check_finite(image_in(target, "target"), "target")
        src = check_finite(image_in(source, "source").to(tgt.device), "source")
        if src.shape[1:] != tgt.shape[1:]:
            raise InputError(f"input 'source' is {src.shape[3]}x{src.shape[2]}x{src.shape[1]} but 'target' is "
                             f"{tgt.shape[3]}x{tgt.shape[2]}x{tgt.shape[1]} (width x height x channels)",
                             hint="warp the source into the target's frame first (e.g. Paste Back)",
                             input="source")
        if src.shape[0] not in (1, tgt.shape[0]):
            raise InputError(f"{src.shape[0]} source images for {tgt.shape[0]} targets: connect 1 or "
                             f"{tgt.shape[0]}", input="source")
        m = mask_in(mask, "mask", tgt)
        if is_empty(m):
            return with_notes((image_out(tgt),), ["mask is empty: the target is passed through unchanged"])
        notes = [f"frame {b}: empty mask, passed through" for b in range(m.shape[0]) if not bool((m[b] > 0).any())]
        opts = PoissonOptions(guidance=guidance, margin_px=int(margin))
        src = src.expand(tgt.shape[0], -1, -1, -1)
        parts = []
        with progress.task(tgt.shape[0], "poisson blend") as bar:  # per frame: progress and interruption
            for b in range(tgt.shape[0]):
                bar.check_interrupt()
                mb = m[b:b + 1] if m.shape[0] > 1 else m
                parts.append(poisson_blend(src[b:b + 1], tgt[b:b + 1], mb, options=opts))
                bar.advance()
        out = torch.cat(parts, 0)
        return with_notes((image_out(out),), notes, f"{guidance} guidance, {tgt.shape[0]} frame(s)")


# ------------------------------------------------------------------------------------------ paste back
def crop_frame_indices(alignments: Sequence, n_frames: int, sequence=None) -> list[int]:
    """Batch index of each alignment's frame. With ``sequence`` (frame numbers of the frames' batch), by number;
    without, frame numbers 0 .. B-1 are batch indices (Align Faces on a batch without a sequence), and otherwise
    the distinct numbers in increasing order name the B frames in order (every frame has a crop)."""
    numbers = [int(a.frame) for a in alignments]
    if sequence is not None:
        if len(sequence.frames) != n_frames:
            raise InputError(f"sequence has {len(sequence.frames)} frame numbers for {n_frames} frames",
                             input="sequence")
        where = {int(f): i for i, f in enumerate(sequence.frames)}
        missing = sorted({f for f in numbers if f not in where})
        if missing:
            raise InputError(f"alignments name frames {missing[:5]} that the sequence does not hold",
                             hint="connect the sequence of these frames", input="alignments")
        return [where[f] for f in numbers]
    if all(0 <= f < n_frames for f in numbers):
        return numbers
    distinct = sorted(set(numbers))
    if len(distinct) == n_frames:
        order = {f: i for i, f in enumerate(distinct)}
        return [order[f] for f in numbers]
    raise InputError(f"alignments name frames {distinct[:5]}... that cannot be matched to {n_frames} frames",
                     hint="connect the sequence (frame numbers) of these frames", input="sequence")


class PasteBack:
    DESCRIPTION = ("Paste processed face crops back into their frames through each crop's alignment "
                   "(frame_from_crop, core.blend.paste_back): 'over' with the feathered crop mask, or 'poisson'. "
                   "Many faces per frame; frames without crops pass through unchanged.")
    CATEGORY = f"{CATEGORY}/blend"
    FUNCTION = "paste"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("the frames with the crops pasted in",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": widget(IMAGE, "the linear frames the crops were taken from"),
            "crops": widget(IMAGE, "processed crops, one per alignment, at the alignments' crop size"),
            "alignments": widget(ALIGN, "from Align Faces / Track Crops"),
            "mode": widget(PASTE_MODES, "over: feathered premultiplied over; poisson: gradient-domain blend",
                           default="over"),
            "feather_px": widget(FLOAT, "mask edge softness in crop pixels (the mask is eroded first, so no "
                                        "crop edge shows)", default=8.0, min=0.0, max=256.0, step=0.5),
        }, "optional": {
            "crop_masks": widget(MASK, "where each crop is pasted, crop space (default: the whole crop)"),
            "sequence": widget(SEQUENCE, "the frames' numbers, to find each crop's frame (Align Faces on a "
                                         "sequence, Track Crops)"),
            "guidance": widget(GUIDANCES, "poisson mode's guidance", default="source"),
        }}

    def paste(self, frames, crops, alignments, mode="over", feather_px=8.0, crop_masks=None, sequence=None,
              guidance="source"):
        fr = image_in(frames, "frames")
        cr = check_finite(image_in(crops, "crops").to(fr.device), "crops")
        n = cr.shape[0]
        if not isinstance(alignments, (list, tuple)) or len(alignments) != n:
            raise InputError(f"{len(alignments) if isinstance(alignments, (list, tuple)) else '?'} alignments for "
                             f"{n} crops: connect the alignments made with these crops", input="alignments")
        size = (cr.shape[3], cr.shape[2])
        for k, a in enumerate(alignments):
            if tuple(int(v) for v in a.crop_size) != size:
                raise InputError(f"crop {k} is {size[0]}x{size[1]} but its alignment is for "
                                 f"{a.crop_size[0]}x{a.crop_size[1]} crops",
                                 hint="paste crops at the size they were aligned at", input="crops")
        idx = crop_frame_indices(alignments, fr.shape[0], sequence)
        m = mask_in(crop_masks, "crop_masks", cr)
        m = torch.ones((n, 1, size[1], size[0]), dtype=torch.float32, device=fr.device) if m is None else \
            m.expand(n, -1, -1, -1)
        keep = [k for k in range(n) if bool((m[k] > 0).any())]
        notes = [f"crop {k}: empty mask, not pasted" for k in range(n) if k not in keep]
        if not keep:
            return with_notes((image_out(fr),), notes + ["nothing to paste: the frames are passed through"])
        c = fr.shape[1] if fr.shape[1] == cr.shape[1] else min(3, fr.shape[1], cr.shape[1])
        if c != fr.shape[1] or c != cr.shape[1]:
            notes.append(f"frames have {fr.shape[1]} channels, crops {cr.shape[1]}: the first {c} are pasted")
        mats = torch.from_numpy(np.stack([alignments[k].frame_from_crop for k in keep]))
        opts = PasteOptions(mode=mode, feather_px=float(feather_px), poisson=PoissonOptions(guidance=guidance))
        frame_of = torch.tensor([idx[k] for k in keep], dtype=torch.long)
        parts = []
        with progress.task(fr.shape[0], "paste back") as bar:  # per frame: progress and interruption
            for b in range(fr.shape[0]):
                bar.check_interrupt()
                sel = torch.nonzero(frame_of == b).flatten()
                if len(sel) == 0:
                    parts.append(fr[b:b + 1, :c].clone())
                else:
                    ks = [keep[int(j)] for j in sel]
                    parts.append(paste_back(fr[b:b + 1, :c], cr[ks, :c], mats[sel], m[ks],
                                            torch.zeros(len(ks), dtype=torch.long), options=opts))
                bar.advance()
        pasted = torch.cat(parts, 0)
        out = pasted if c == fr.shape[1] else torch.cat([pasted, fr[:, c:]], dim=1)
        untouched = fr.shape[0] - len({idx[k] for k in keep})
        return with_notes((image_out(out),), notes, f"{len(keep)} crop(s) pasted ({mode}) into "
                                                    f"{fr.shape[0] - untouched} frame(s); {untouched} passed through")


NODES = {
    "FacegraphColourMatch": (ColourMatch, "Colour Match (facegraph)"),
    "FacegraphPoissonBlend": (PoissonBlend, "Poisson Blend (facegraph)"),
    "FacegraphPasteBack": (PasteBack, "Paste Back (facegraph)"),
}
