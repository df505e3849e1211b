"""Colour: transfer functions and the one function that makes a network's view of a linear frame.

Pixels for all maths stay scene-linear, premultiplied and unclamped (conventions: Images). Only
:func:`network_view` produces display-referred [0, 1] data, for detectors and landmark networks, with geometry
unchanged so boxes and points map 1:1 back onto the linear plate.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from .errors import InputError

# IEC 61966-2-1 (sRGB) piecewise transfer: constants from the standard.
_SRGB_A = 0.055
_SRGB_LIN_BREAK = 0.0031308
_SRGB_ENC_BREAK = 0.04045


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values -> linear (IEC 61966-2-1 EOTF). Any float array; negatives mirror through 0."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    lin = np.where(a <= _SRGB_ENC_BREAK, a / 12.92, ((a + _SRGB_A) / (1 + _SRGB_A)) ** 2.4)
    return (np.sign(v) * lin).astype(np.float32)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear -> sRGB-encoded (IEC 61966-2-1 inverse EOTF). Unclamped: values > 1 extend the curve."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    enc = np.where(a <= _SRGB_LIN_BREAK, a * 12.92, (1 + _SRGB_A) * np.power(a, 1 / 2.4) - _SRGB_A)
    return (np.sign(v) * enc).astype(np.float32)


def rec709_to_linear(v: np.ndarray) -> np.ndarray:
    """BT.709 OETF-encoded video values -> scene linear (inverse of ITU-R BT.709-6 eq. 1.1)."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    lin = np.where(a < 0.081, a / 4.5, ((a + 0.099) / 1.099) ** (1 / 0.45))
    return (np.sign(v) * lin).astype(np.float32)


def linear_to_rec709(v: np.ndarray) -> np.ndarray:
    """Scene linear -> BT.709 OETF (ITU-R BT.709-6 eq. 1.1)."""
    v = np.asarray(v, dtype=np.float32)
    a = np.abs(v)
    enc = np.where(a < 0.018, 4.5 * a, 1.099 * np.power(a, 0.45) - 0.099)
    return (np.sign(v) * enc).astype(np.float32)


def unpremultiply(rgb: np.ndarray, alpha: np.ndarray | None, eps: float = 1e-6) -> np.ndarray:
    """Divide premultiplied colour by alpha where alpha > eps; leaves colour where alpha is ~0.

    rgb: (..., H, W, 3) float32; alpha: (..., H, W) or (..., H, W, 1) float32 in [0, 1], or None.
    """
    if alpha is None:
        return rgb
    a = alpha if alpha.ndim == rgb.ndim else alpha[..., None]
    return np.where(a > eps, rgb / np.maximum(a, eps), rgb).astype(np.float32)


ViewTransform = Literal["srgb", "rec709", "linear", "ocio"]
VIEW_TRANSFORMS: tuple[str, ...] = ("srgb", "rec709", "linear", "ocio")
ExposureMode = Literal["none", "auto_frame", "auto_region"]
EXPOSURE_MODES: tuple[str, ...] = ("none", "auto_frame", "auto_region")


@dataclasses.dataclass(frozen=True)
class ViewOptions:
    """How a linear frame becomes a network's view.

    exposure: ``none`` keeps values; ``auto_frame`` scales so the frame's robust mid-level (the 50th
    percentile of luminance of the central 80 %) lands on ``target_mid``; ``auto_region`` does the same on a
    given box (a face) when one is passed. ``stops`` is added on top (manual trim, in stops).
    view: ``srgb`` (IEC 61966-2-1), ``rec709`` (BT.709 OETF), ``linear`` (no curve) or ``ocio`` with
    ``ocio_config`` (a path or ``ocio://...`` built-in URI), ``ocio_display`` and ``ocio_view``.
    """

    exposure: str = "auto_frame"
    stops: float = 0.0
    target_mid: float = 0.18  # scene-linear middle grey (18 % reflectance), the usual exposure anchor
    view: str = "srgb"
    ocio_config: str = ""
    ocio_display: str = ""
    ocio_view: str = ""
    ocio_colourspace: str = "auto"   # auto: Linear Rec.709 where the config has it (facegraph's frames), else scene_linear

    def __post_init__(self) -> None:
        if self.exposure not in EXPOSURE_MODES:
            raise InputError(f"exposure must be one of {EXPOSURE_MODES}, got {self.exposure!r}")
        if self.view not in VIEW_TRANSFORMS:
            raise InputError(f"view must be one of {VIEW_TRANSFORMS}, got {self.view!r}")
        if self.view == "ocio" and not self.ocio_config:
            raise InputError("view 'ocio' needs ocio_config (a file or an ocio:// built-in config)")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec.709 / sRGB-primaries relative luminance (ITU-R BT.709 coefficients). rgb: (..., 3)."""
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def exposure_gain(rgb: np.ndarray, *, target_mid: float = 0.18, box: tuple | None = None,
                  white: float = 1.0) -> float:
    """Gain that puts the median luminance of the central 80 % (or of ``box``) on ``target_mid``, capped so
    the 98th percentile does not pass ``white``.

    rgb: (H, W, 3) linear float32. box: (x0, y0, x1, y1) frame pixels or None. Returns 1.0 for black frames.
    The median of a face region is close to skin mid-tone, which should sit near middle grey after the
    gain; the frame median is the fallback when no face is known yet. The cap matters when a dark background
    dominates the frame: without it a lit face in front of it is pushed past white (measured on the sample
    plate: a gain of 9 washed the face out and YuNet lost it).
    """
    rows, cols = _gain_sample(rgb.shape[:2], box)
    return _gain_from_sample(luminance(rgb[rows, cols].astype(np.float32)), target_mid, white)


#: pixels the exposure statistics look at: regions are subsampled to about this many (the median of ~64k
#: pixels is as good as of 8M, and costs a hundredth)
_GAIN_SAMPLES = 65536


def _gain_sample(hw: tuple[int, int], box: tuple | None = None) -> tuple[slice, slice]:
    """(rows, cols) strided slices of the pixels :func:`exposure_gain` measures: the central 80 % of an
    (h, w) frame (or ``box``), subsampled to about _GAIN_SAMPLES pixels. A reduced copy of the frame is all
    the exposure needs; the torch path (:class:`FrameViews`) takes the same pixels, so both give one gain."""
    h, w = hw
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    else:
        y0, y1, x0, x1 = int(0.1 * h), max(int(0.9 * h), 1), int(0.1 * w), max(int(0.9 * w), 1)
    step = max(1, int(np.sqrt((y1 - y0) * (x1 - x0) / _GAIN_SAMPLES)))
    return slice(y0, y1, step), slice(x0, x1, step)


def _gain_from_sample(lum: np.ndarray, target_mid: float, white: float) -> float:
    lum = lum[np.isfinite(lum)]
    if lum.size == 0:
        return 1.0
    mid, high = (float(v) for v in np.percentile(lum, [50, 98]))
    if high <= 1e-8:
        return 1.0
    return min(target_mid / mid, white / high) if mid > 1e-8 else white / high


def network_view(rgb: np.ndarray, alpha: np.ndarray | None = None, options: ViewOptions = ViewOptions(),
                 *, box: tuple | None = None) -> np.ndarray:
    """THE function that turns a linear frame into what a detector or landmark network sees.

    unpremultiply -> exposure normalisation -> view transform -> clip to [0, 1]. Geometry is unchanged.

    Args:
        rgb: (H, W, 3) float32 scene-linear, premultiplied if ``alpha`` is given.
        alpha: (H, W) float32 or None.
        options: :class:`ViewOptions`.
        box: region for ``auto_region`` exposure.
    Returns:
        (H, W, 3) float32 display-referred in [0, 1].
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"network_view expects (H, W, 3), got {rgb.shape}")
    x = rgb.astype(np.float32, copy=False)
    if alpha is not None:
        x = unpremultiply(x, alpha)
    gain = 2.0 ** options.stops
    if options.exposure == "auto_frame" or (options.exposure == "auto_region" and box is None):
        gain *= exposure_gain(x, target_mid=options.target_mid)
    elif options.exposure == "auto_region":
        gain *= exposure_gain(x, target_mid=options.target_mid, box=box)
    if options.view in _LUT_VIEWS:
        return _lut_view(x, gain, options.view)
    x = np.nan_to_num(x * np.float32(gain), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(apply_view(x, options), 0.0, 1.0)


#: view curves as lookup tables over [0, 1]: 16384 entries keep the view within 0.1 / 255 of the exact
#: curve (the steepest slope, 12.92 at the sRGB toe, over 1 / 16383) at a third of the cost on 1080p frames
_LUT_SIZE = 16384
_LUT_VIEWS = ("srgb", "rec709", "linear")
_LUTS: dict[str, np.ndarray] = {}


def _lut_view(x: np.ndarray, gain: float, view: str) -> np.ndarray:
    lut = _LUTS.get(view)
    if lut is None:
        ramp = np.linspace(0.0, 1.0, _LUT_SIZE, dtype=np.float32)
        curve = {"srgb": linear_to_srgb, "rec709": linear_to_rec709, "linear": lambda v: v}[view]
        lut = _LUTS[view] = np.clip(curve(ramp), 0.0, 1.0).astype(np.float32)
    idx = np.multiply(x, np.float32(gain * (_LUT_SIZE - 1)))
    np.fmax(idx, 0.0, out=idx)        # fmax/fmin also send NaN to 0 and clamp +-Inf
    np.fmin(idx, _LUT_SIZE - 1, out=idx)
    idx += 0.5
    return lut[idx.astype(np.int32)]


#: alpha below which colour is left as it is when unpremultiplying (the same as :func:`unpremultiply`)
_ALPHA_EPS = 1e-6


class FrameViews:
    """The networks' view of a batch of linear frames, made at each network's input resolution.

    :func:`network_view` is per-pixel maths (unpremultiply, exposure gain, view curve, clip) plus one
    per-frame statistic (the exposure gain). FrameViews keeps the linear frames, measures each frame's gain
    once (lazily, on the reduced copy :func:`exposure_gain` looks at) and applies the per-pixel part with
    :meth:`tone` to whatever a network cuts or resizes from the frames: a detector's resized input, a 256 x 256
    face crop, a 64 x 64 eye crop. So no full-resolution view is ever made, and every network of a graph
    shares the frame's statistics (see :func:`frame_views` for the cache between nodes).

    Resampling before the curve instead of after is the one difference from cutting crops from
    ``network_view``'s output: interpolation now mixes linear values (tests/models/test_analysis_chain.py
    measures what that does to the landmarks). For the LUT views (srgb, rec709, linear) the per-pixel maths
    is bit-identical to ``network_view`` on the same pixels.

    Convention:
        frames: a (B, C, H, W) float32 torch tensor, or a sequence of B (C, H, W) tensors of one size and
            device (no stacking, so a shot's frames need no copy); C = 3 (RGB) or 4 (RGBA, premultiplied);
            scene-linear, unclamped; any device. ComfyUI's IMAGE goes in as ``bchw(image)`` (a view).
        options: :class:`ViewOptions`. ``auto_region`` has no box here and measures the frame, as
            ``network_view`` does without a box.
        display: True when the frames already are display-referred views in [0, 1] (``network_view``
            outputs): :meth:`tone` then only clips, so the numpy entry points (``predict(view, rois)``,
            ``detect(views)``) run on this same code and give their old numbers.
        gains: (B,) float64 store of the frames' gains, NaN where not measured yet (shared, filled in place).
    Pixel coordinates are untouched: whatever geometry a network maps its crop with stays the frame's.
    """

    def __init__(self, frames, options: ViewOptions = ViewOptions(), *, display: bool = False,
                 gains: np.ndarray | None = None) -> None:
        import torch

        if isinstance(frames, torch.Tensor):
            if frames.ndim != 4:
                raise InputError(f"frames must be (B, C, H, W), got shape {tuple(frames.shape)}",
                                 hint="ComfyUI IMAGE (B, H, W, C) goes in as core.tensors.bchw(image)")
            items = list(frames.unbind(0))
        else:
            items = [f[0] if f.ndim == 4 and f.shape[0] == 1 else f for f in frames]
        if not items:
            raise InputError("frames is empty: give at least one frame")
        first = items[0]
        for i, f in enumerate(items):
            if not isinstance(f, torch.Tensor) or f.ndim != 3 or f.shape[0] not in (3, 4):
                raise InputError(f"frame {i} must be a (C, H, W) tensor with C = 3 or 4, got "
                                 f"{tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__}")
            if f.dtype != torch.float32:
                raise InputError(f"frame {i} must be float32, got {f.dtype}")
            if f.shape != first.shape or f.device != first.device:
                raise InputError(f"frames must share one size and device: frame {i} is {tuple(f.shape)} on "
                                 f"{f.device}, frame 0 {tuple(first.shape)} on {first.device}",
                                 hint="analyse frames of different sizes in separate batches")
        self.frames = items
        self.options = options
        self.display = bool(display)
        if gains is None:
            gains = np.full(len(items), np.nan)
        if gains.shape != (len(items),):
            raise InputError(f"gains must be ({len(items)},), got {gains.shape}")
        self._gains = gains

    @classmethod
    def from_display(cls, views) -> "FrameViews":
        """Display-referred numpy views (H, W, 3) float32 in [0, 1] (``network_view`` outputs), as zero-copy
        CPU tensors."""
        import torch

        items = []
        for i, v in enumerate(views):
            v = np.asarray(v)
            if v.ndim != 3 or v.shape[2] != 3:
                raise InputError(f"view {i} must be (H, W, 3), got {v.shape}")
            items.append(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1))
        return cls(items, ViewOptions(exposure="none", view="linear"), display=True)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the frames in pixels."""
        return int(self.frames[0].shape[2]), int(self.frames[0].shape[1])

    @property
    def channels(self) -> int:
        return int(self.frames[0].shape[0])

    @property
    def device(self):
        return self.frames[0].device

    def subset(self, index) -> "FrameViews":
        """The views of some frames (a slice or indices), sharing the gains already measured."""
        idx = list(range(len(self)))[index] if isinstance(index, slice) else [int(i) for i in index]
        sub = FrameViews([self.frames[i] for i in idx], self.options, display=self.display,
                         gains=self._gains[idx].copy())
        sub._parent = (self, idx)
        return sub

    # ------------------------------------------------------------------------------------------ gains
    def gain(self, i: int) -> float:
        """Frame i's total gain (2 ** stops times the exposure gain), measured once on a reduced copy."""
        g = self._gains[i]
        if np.isnan(g):
            g = self._gains[i] = self._measure(i)
            parent = getattr(self, "_parent", None)
            if parent is not None:
                parent[0]._gains[parent[1][i]] = g
        return float(g)

    def gains(self, index) -> np.ndarray:
        """(N,) float64 gains of frames ``index`` (N ints)."""
        return np.array([self.gain(int(i)) for i in index], np.float64)

    def _measure(self, i: int) -> float:
        o = self.options
        if self.display:
            return 1.0
        gain = 2.0 ** o.stops
        if o.exposure == "none":
            return gain
        f = self.frames[i]
        rows, cols = _gain_sample((int(f.shape[1]), int(f.shape[2])))
        sample = f[:, rows, cols]
        if f.device.type == "cpu":
            px = sample.permute(1, 2, 0).numpy().astype(np.float32)
            rgb = unpremultiply(px[..., :3], px[..., 3]) if px.shape[2] == 4 else px
            return gain * _gain_from_sample(luminance(rgb), o.target_mid, 1.0)
        return gain * _gain_torch(sample, o.target_mid, 1.0)

    # ------------------------------------------------------------------------------------------- tone
    def tone(self, pixels, index, *, backend: str = "auto"):
        """The per-pixel part of the view on pixels cut or resized from the linear frames.

        Convention:
            pixels: (N, C, h, w) float32 tensor, C = the frames' channels, resampled from frames ``index``
                ((N,) ints) in the frames' colour (linear, premultiplied); any device.
            Returns a new (N, 3, h, w) float32 tensor on the same device, display-referred RGB in [0, 1]
            (unpremultiplied, times the frame's gain, through the view curve, clipped; NaN -> 0); on the
            CPU path channels-last in memory (what the cv2 crops and the TFLite graphs use).
            backend: "auto" (numpy's table lookup on CPU tensors, zero-copy; torch elsewhere), "numpy" or
            "torch": the same numbers (tests/core/test_colour.py).
        """
        import torch

        if backend not in ("auto", "numpy", "torch"):
            raise InputError(f"backend must be auto, numpy or torch, got {backend!r}")

        if pixels.ndim != 4 or pixels.shape[1] != self.channels:
            raise InputError(f"pixels must be (N, {self.channels}, h, w), got {tuple(pixels.shape)}")
        index = [int(i) for i in index]
        if len(index) != pixels.shape[0]:
            raise InputError(f"index has {len(index)} entries for {pixels.shape[0]} crops")
        x = pixels[:, :3]
        if pixels.shape[1] == 4:
            a = pixels[:, 3:4]
            x = torch.where(a > _ALPHA_EPS, x / a.clamp_min(_ALPHA_EPS), x)
        if self.display:
            return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
        gains = self.gains(index)
        view = self.options.view
        if backend == "numpy" and x.device.type != "cpu":
            raise InputError(f"backend='numpy' needs CPU pixels, these are on {x.device}", hint="use 'auto'")
        use_numpy = backend == "numpy" or (backend == "auto" and x.device.type == "cpu")
        if view in _LUT_VIEWS and use_numpy:  # numpy's table lookup: 5x faster than torch's gather on a CPU
            n, _, h, w = x.shape
            out = torch.empty((n, h, w, 3), dtype=torch.float32)  # channels-last, as the cv2 paths make them
            os_ = out.numpy()
            for k in range(n):
                os_[k] = _lut_view(x[k].permute(1, 2, 0).numpy(), float(gains[k]), view)
            return out.permute(0, 3, 1, 2)
        if view in _LUT_VIEWS:
            lut = _torch_lut(view, x.device)
            scale = torch.from_numpy((gains * (_LUT_SIZE - 1)).astype(np.float32)).to(x.device)
            idx = x * scale[:, None, None, None]
            idx = torch.nan_to_num(idx, nan=0.0, posinf=float(_LUT_SIZE - 1), neginf=0.0)
            idx = idx.clamp_(0.0, float(_LUT_SIZE - 1)).add_(0.5)
            return lut[idx.to(torch.int64)]
        if x.device.type != "cpu":
            raise InputError(f"the OCIO view runs on the CPU; the frames are on {x.device}",
                             hint="use an srgb / rec709 / linear view on this device, or move the frames with .cpu()")
        out = torch.empty_like(x)
        for k in range(x.shape[0]):
            hwc = x[k].permute(1, 2, 0).numpy() * np.float32(gains[k])
            hwc = np.nan_to_num(hwc, nan=0.0, posinf=0.0, neginf=0.0)
            out[k] = torch.from_numpy(np.clip(apply_view(hwc, self.options), 0.0, 1.0)).permute(2, 0, 1)
        return out

    def full_view(self, i: int) -> np.ndarray:
        """Frame i's whole network view as (H, W, 3) float32 numpy in [0, 1] (CPU frames): what
        ``network_view`` gives, for code that still wants a full picture (previews, old entry points)."""
        f = self.frames[i]
        return self.tone(f[None], [i])[0].permute(1, 2, 0).cpu().numpy()


def _gain_torch(sample, target_mid: float, white: float) -> float:
    """:func:`_gain_from_sample` on a (C, h, w) torch sample on any device (two scalars come back)."""
    import torch

    x = sample.float()
    rgb = x[:3]
    if x.shape[0] == 4:
        a = x[3:4]
        rgb = torch.where(a > _ALPHA_EPS, rgb / a.clamp_min(_ALPHA_EPS), rgb)
    lum = rgb[0] * 0.2126 + rgb[1] * 0.7152 + rgb[2] * 0.0722
    lum = lum.reshape(-1)
    lum = torch.where(torch.isfinite(lum), lum, torch.full_like(lum, float("nan")))
    if not bool(torch.isfinite(lum).any()):
        return 1.0
    q = torch.nanquantile(lum, torch.tensor([0.5, 0.98], device=lum.device, dtype=lum.dtype))
    mid, high = (float(v) for v in q.cpu())
    if high <= 1e-8:
        return 1.0
    return min(target_mid / mid, white / high) if mid > 1e-8 else white / high


_TORCH_LUTS: dict[tuple[str, str], object] = {}


def _torch_lut(view: str, device):
    key = (view, str(device))
    lut = _TORCH_LUTS.get(key)
    if lut is None:
        import torch

        _lut_view(np.zeros((1, 1, 3), np.float32), 1.0, view)  # builds the numpy table
        lut = _TORCH_LUTS[key] = torch.from_numpy(_LUTS[view]).to(device)
    return lut


#: frame_views' cache: key -> (weak reference to the tensor that owns the frames, its version, gains)
_VIEW_CACHE: "dict[tuple, tuple]" = {}
_VIEW_CACHE_SIZE = 32


def frame_views(images, options: ViewOptions = ViewOptions()) -> FrameViews:
    """FrameViews of an image batch, sharing measured gains with earlier calls on the same frames.

    The cache is keyed by frame identity: the tensor's memory (data pointer, shape, strides, device, dtype),
    the options, and validated by a weak reference to the tensor that owns the memory (a view's base, e.g.
    the IMAGE a node received) and its version counter (bumped by any in-place change). So the Detect,
    Landmarks and Refine nodes of one graph measure each frame once, and a freed or modified tensor is never
    mistaken for the frames it replaced. Holds no frames (weak references), at most 32 batches.

    Convention: images (B, C, H, W) float32 tensor, C = 3 or 4, linear, any device (see :class:`FrameViews`).
    """
    import weakref

    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("frame_views takes a (B, C, H, W) tensor",
                         hint="ComfyUI IMAGE (B, H, W, C) goes in as core.tensors.bchw(image)")
    owner = images._base if images._base is not None else images
    key = (images.data_ptr(), tuple(images.shape), tuple(images.stride()), str(images.device), images.dtype,
           options)
    entry = _VIEW_CACHE.get(key)
    if entry is not None and entry[0]() is owner and entry[1] == images._version:
        return FrameViews(images, options, gains=entry[2])
    gains = np.full(images.shape[0], np.nan)
    while len(_VIEW_CACHE) >= _VIEW_CACHE_SIZE:
        _VIEW_CACHE.pop(next(iter(_VIEW_CACHE)))

    def drop(ref, key=key):
        if _VIEW_CACHE.get(key, (None,))[0] is ref:  # not an entry made since for reused memory
            _VIEW_CACHE.pop(key, None)

    _VIEW_CACHE[key] = (weakref.ref(owner, drop), images._version, gains)
    return FrameViews(images, options, gains=gains)


def apply_view(x: np.ndarray, options: ViewOptions) -> np.ndarray:
    """Apply only the view transform of ``options`` (no exposure, no clip). x: (H, W, 3) linear float32."""
    if options.view == "srgb":
        return linear_to_srgb(x)
    if options.view == "rec709":
        return linear_to_rec709(x)
    if options.view == "linear":
        return x
    return ocio_view(x, options.ocio_config, options.ocio_display, options.ocio_view, options.ocio_colourspace)


def ocio_view(x: np.ndarray, config: str, display: str = "", view: str = "",
              colourspace: str = "auto") -> np.ndarray:
    """Display/view transform through OpenColorIO (as built into OpenImageIO). x: (H, W, 3) float32.

    ``config`` may be a file path or a built-in URI such as ``ocio://studio-config-latest`` (works offline).
    Empty display/view pick the config's defaults. ``colourspace``: what the frames are in; ``auto`` =
    "Linear Rec.709 (sRGB)" where the config defines it (facegraph's scene-linear frames have Rec.709
    primaries), else the config's ``scene_linear`` role. (The studio config's scene_linear role is ACEScg:
    reading facegraph's frames as that would shift every preview's colours.)
    """
    import OpenImageIO as oiio

    cfg = _ocio_config(config)
    if colourspace in ("", "auto"):
        names = set(cfg.getColorSpaceNames())
        colourspace = OCIO_LINEAR_REC709 if OCIO_LINEAR_REC709 in names else "scene_linear"
    displays = list(cfg.getDisplayNames())
    display = display or cfg.getDefaultDisplayName()
    if display not in displays:
        raise InputError(f"OCIO display {display!r} not in {config}", hint=f"displays: {', '.join(displays)}")
    views = list(cfg.getViewNames(display))
    view = view or cfg.getDefaultViewName(display)
    if view not in views:
        raise InputError(f"OCIO view {view!r} not available for {display!r} in {config}",
                         hint=f"views: {', '.join(views)}")
    src = oiio.ImageBuf(np.ascontiguousarray(x, dtype=np.float32))
    dst = oiio.ImageBuf()
    if not oiio.ImageBufAlgo.ociodisplay(dst, src, display, view, colourspace, colorconfig=config):
        raise InputError(f"OCIO display transform failed ({config}, {display} / {view}, from {colourspace}): "
                         f"{dst.geterror() or oiio.geterror()}")
    return np.asarray(dst.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(x.shape)


_OCIO_CONFIGS: dict[str, object] = {}


def _ocio_config(config: str):
    import OpenImageIO as oiio

    if config not in _OCIO_CONFIGS:
        import os

        if not config.startswith("ocio://") and not os.path.isfile(config):
            raise InputError(f"cannot load OCIO config {config!r}: no such file",
                             hint="give a config file path or a built-in URI such as ocio://studio-config-latest")
        cfg = oiio.ColorConfig(config)
        if cfg.getNumColorSpaces() == 0:
            raise InputError(f"cannot load OCIO config {config!r}: {oiio.geterror() or 'no colour spaces'}",
                             hint="give a config file path or a built-in URI such as ocio://studio-config-latest")
        _OCIO_CONFIGS[config] = cfg
    return _OCIO_CONFIGS[config]


# ------------------------------------------------------------------------------------ colour-space conversion
#: the built-in colour spaces of :func:`convert_colourspace`; any other name is an OCIO colour space
BuiltinColourspace = Literal["linear", "srgb", "rec709"]
BUILTIN_COLOURSPACES: tuple[str, ...] = ("linear", "srgb", "rec709")
#: the OCIO config used when none is given: OCIO's built-in studio config (ships inside OpenImageIO's OCIO,
#: works offline), the same default the view transform node offers
DEFAULT_OCIO_CONFIG = "ocio://studio-config-latest"
#: facegraph's working space ("linear") by its name in the studio config (alias ``lin_rec709``); note that the
#: studio config's ``scene_linear`` role is ACEScg, not this
OCIO_LINEAR_REC709 = "Linear Rec.709 (sRGB)"

# ITU-R BT.709-6 item 1.2 OETF: V = 4.5 L below 0.018, 1.099 L^0.45 - 0.099 above (same numbers as
# linear_to_rec709 / rec709_to_linear above)
_R709_LIN_BREAK = 0.018
_R709_ENC_BREAK = 0.081
_R709_ALPHA = 1.099
_R709_BETA = 0.099
_R709_GAMMA = 0.45
_R709_SLOPE = 4.5


def _torch_curve(x, name: str, to_linear: bool):
    """The built-in curves on a torch tensor (any device, its dtype); odd-extended like the numpy ones."""
    import torch

    a = x.abs()
    if name == "srgb":
        if to_linear:
            v = torch.where(a <= _SRGB_ENC_BREAK, a / 12.92, ((a + _SRGB_A) / (1 + _SRGB_A)) ** 2.4)
        else:
            v = torch.where(a <= _SRGB_LIN_BREAK, a * 12.92, (1 + _SRGB_A) * a ** (1 / 2.4) - _SRGB_A)
    else:  # rec709
        if to_linear:
            v = torch.where(a < _R709_ENC_BREAK, a / _R709_SLOPE,
                            ((a + _R709_BETA) / _R709_ALPHA) ** (1 / _R709_GAMMA))
        else:
            v = torch.where(a < _R709_LIN_BREAK, _R709_SLOPE * a, _R709_ALPHA * a ** _R709_GAMMA - _R709_BETA)
    return torch.sign(x) * v


_NUMPY_CURVES = {("srgb", True): srgb_to_linear, ("srgb", False): linear_to_srgb,
                 ("rec709", True): rec709_to_linear, ("rec709", False): linear_to_rec709}


def _check_space(name: object, arg: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{arg} must be a colour space name: one of {BUILTIN_COLOURSPACES} or an OCIO colour "
                         f"space, got {name!r}")
    return name.strip()


def convert_colourspace(rgb, source: str, target: str, *, ocio_config: str = "",
                        ocio_linear: str = OCIO_LINEAR_REC709):
    """Convert colour values from one colour space to another (explicit, both directions).

    Built-in spaces:
        ``linear``  scene-linear, Rec.709 / sRGB primaries, D65: facegraph's working space.
        ``srgb``    sRGB-encoded (IEC 61966-2-1 piecewise curve, :func:`srgb_to_linear` / :func:`linear_to_srgb`);
                    what ComfyUI's core Load Image produces and what its other nodes expect.
        ``rec709``  BT.709 OETF-encoded (ITU-R BT.709-6, :func:`rec709_to_linear` / :func:`linear_to_rec709`).
    Any other name is an OCIO colour space (or alias / role) of ``ocio_config`` (default
    :data:`DEFAULT_OCIO_CONFIG`), converted through OpenImageIO's bundled OpenColorIO. When one side is
    built-in and the other OCIO, the built-in side goes through ``linear`` first and ``linear`` is the config's
    ``ocio_linear`` space (default ``Linear Rec.709 (sRGB)``, correct for the studio config; name the
    equivalent space for another config).

    Convention:
        rgb: (..., 3) float32 numpy array, or a float torch tensor (..., 3) on any device. Colour only: no
        alpha; for premultiplied pixels convert the straight colour (see :func:`reinterpret_decoded`).
        Returns the same kind: a new float32 numpy array, or a tensor on the input's device and dtype. The
        input is never modified; ``source == target`` returns a copy.
        Range: nothing is clamped. Linear targets are unbounded. For encoded targets (and sources) the
        built-in curves are extended as odd functions: values > 1 follow the power segment past 1 (linear 2.0
        -> sRGB 1.353), negatives mirror through 0 (f(-x) = -f(x)); NaN stays NaN. So srgb -> linear ->
        srgb is the identity on any finite value, not only on [0, 1]. The rec709 curve keeps the standard's
        rounded constants (1.099, 0.018), which leave a 2.4e-4 step at the break: rec709 -> linear -> rec709
        is exact except for encoded values in [0.081, 0.0812]; linear -> rec709 -> linear is exact. OCIO spaces do what the config's
        transforms do (the studio config's sRGB curve is also unclamped).
        Device: built-in curves run on the tensor's own device (torch ops). OCIO runs on the CPU through
        numpy: a CUDA tensor with an OCIO side raises InputError (move it with ``.cpu()`` first; this
        function never moves data between devices).
    Raises InputError for an empty name, an unknown OCIO colour space or config, or a non-(..., 3) input.
    """
    source = _check_space(source, "source")
    target = _check_space(target, "target")
    is_torch = not isinstance(rgb, np.ndarray) and type(rgb).__module__.startswith("torch")
    if not is_torch:
        rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise InputError(f"rgb must be (..., 3) colour values, got shape {tuple(rgb.shape)}",
                         hint="pass the colour channels only (x[..., :3])")
    if is_torch and not rgb.is_floating_point():
        raise InputError(f"rgb must be a float tensor, got {rgb.dtype}")
    if source == target:
        return rgb.clone() if is_torch else rgb.copy()
    ocio = [s for s in (source, target) if s not in BUILTIN_COLOURSPACES]
    if ocio and is_torch and rgb.device.type != "cpu":
        raise InputError(f"OCIO colour space {ocio[0]!r} is converted on the CPU; the values are on {rgb.device}",
                         hint="move them with .cpu() first (built-in linear/srgb/rec709 run on any device)")
    x = rgb
    # source -> linear (built-in) or source -> OCIO side
    if source in ("srgb", "rec709"):
        x = _torch_curve(x, source, True) if is_torch else _NUMPY_CURVES[(source, True)](x)
    ocio_from = source if source not in BUILTIN_COLOURSPACES else ocio_linear
    ocio_to = target if target not in BUILTIN_COLOURSPACES else ocio_linear
    if ocio and ocio_from != ocio_to:
        config = ocio_config or DEFAULT_OCIO_CONFIG
        if is_torch:
            import torch

            out = ocio_convert(x.detach().to(torch.float32).numpy(), ocio_from, ocio_to, config)
            x = torch.from_numpy(out).to(rgb.dtype)
        else:
            x = ocio_convert(x, ocio_from, ocio_to, config)
    if target in ("srgb", "rec709"):
        x = _torch_curve(x, target, False) if is_torch else _NUMPY_CURVES[(target, False)](x)
    if x is rgb:  # e.g. OCIO <-> OCIO pair that resolved to the same space: still a new array
        x = rgb.clone() if is_torch else rgb.copy()
    return x if is_torch else np.asarray(x, dtype=np.float32)


def ocio_convert(rgb: np.ndarray, source: str, target: str, config: str = DEFAULT_OCIO_CONFIG) -> np.ndarray:
    """Colour-space conversion through OpenColorIO (as built into OpenImageIO), on the CPU.

    Convention: rgb (..., 3) float32 numpy, colour only (no unpremultiply: convert straight colour); returns a
    new (..., 3) float32 array in ``target``. source / target: colour space names, aliases or roles of
    ``config`` (a file path or a built-in ``ocio://`` URI). Unclamped unless the config's transform clamps.
    """
    import OpenImageIO as oiio

    cfg = _ocio_config(config)
    x = np.ascontiguousarray(rgb, dtype=np.float32)
    shape = x.shape
    flat = x.reshape(1, -1, 3) if x.ndim != 3 else x  # OIIO wants (H, W, C)
    if flat.size == 0:
        return x.copy()
    src = oiio.ImageBuf(flat)
    dst = oiio.ImageBuf()
    ok = oiio.ImageBufAlgo.colorconvert(dst, src, source, target, False, colorconfig=config)
    error = dst.geterror() or (oiio.geterror() if not ok else "")  # always fetch: OIIO logs unread errors
    if not ok:
        names = list(cfg.getColorSpaceNames())
        missing = [n for n in (source, target) if cfg.getColorSpaceIndex(n) < 0 and n not in names]
        hint = (f"colour spaces in {config} include: {', '.join(names[:12])}, ... "
                f"(`ociocheck` or the config file lists them all)")
        what = f"unknown OCIO colour space {missing[0]!r} in {config}" if missing else \
            f"OCIO conversion {source!r} -> {target!r} failed ({config}): {error}"
        raise InputError(what, hint=hint)
    return np.asarray(dst.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(shape)


def reinterpret_decoded(pixels: np.ndarray, decoded_as: str, assume: str) -> np.ndarray:
    """Re-read already decoded pixels as if their file had been stored in ``assume`` instead of ``decoded_as``.

    A reader turned the file's values v into linear with ``decoded_as``'s curve (``srgb`` for 8/16-bit
    stills, ``linear`` for float files, see core.io.images.read_image's ``encoding``); this undoes that
    (getting v back, to float precision) and decodes v with ``assume``'s curve instead, e.g. a 16-bit TIFF
    that holds linear values (assume ``linear``) or an EXR that holds sRGB-encoded values (assume ``srgb``).

    Convention: pixels (H, W, C) or (B, H, W, C) float32 numpy, C = 3 or 4 (RGBA, premultiplied); returns new
    scene-linear (Rec.709 primaries) premultiplied pixels of the same shape. The curves act on straight
    colour: with alpha, colour is unpremultiplied where alpha > 1e-6, converted and premultiplied again
    (where alpha is ~0 the colour is converted as it is, so emissive pixels survive). Alpha is unchanged.
    decoded_as / assume: ``linear``, ``srgb`` or ``rec709``. Unclamped (odd-extended curves).
    """
    for name, value in (("decoded_as", decoded_as), ("assume", assume)):
        if value not in BUILTIN_COLOURSPACES:
            raise InputError(f"{name} must be one of {BUILTIN_COLOURSPACES}, got {value!r}")
    px = np.asarray(pixels, dtype=np.float32)
    if px.ndim < 3 or px.shape[-1] not in (3, 4):
        raise InputError(f"pixels must be (H, W, 3|4) or (B, H, W, 3|4), got shape {px.shape}")
    out = px.copy()
    if decoded_as == assume:
        return out
    rgb = px[..., :3]
    alpha = px[..., 3:4] if px.shape[-1] == 4 else None
    eps = 1e-6
    if alpha is not None:
        rgb = np.where(alpha > eps, rgb / np.maximum(alpha, eps), rgb)
    stored = convert_colourspace(rgb, "linear", decoded_as)
    rgb = convert_colourspace(stored, assume, "linear")
    if alpha is not None:
        rgb = np.where(alpha > eps, rgb * alpha, rgb)
    out[..., :3] = rgb
    return out
