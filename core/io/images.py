"""Read and write single images through OpenImageIO, keeping float, linear, premultiplied pixels.

EXR: half or float, any OpenEXR compression (validated: OIIO silently falls back to zip on an unknown name),
channels addressed by name (files may store them in any order, e.g. ``A, B, G, R``), layers (``diffuse.R``),
data window vs display window (overscan, crops) and metadata preserved on a round trip.
Stills (PNG, JPEG, TIFF 8/16-bit): sRGB-decoded to linear on read and encoded back on write; straight alpha on
disk, premultiplied in memory. Float TIFF/EXR/HDR are linear already.

Arrays are (H, W, C) float32 covering the *data window*; :class:`ImageInfo` carries the windows and metadata
needed to write the frame back where it came from.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from ..colour import linear_to_srgb, srgb_to_linear
from ..errors import ImageIOError, InputError
from ..fsutil import note_input, refuse_input, temp_beside

log = logging.getLogger(__name__)

PixelType = Literal["half", "float"]
PIXEL_TYPES: tuple[str, ...] = ("half", "float")
#: OpenEXR 3 compression names (openexr.com, "Compression"); an optional ":level" may follow zip/dwaa/dwab.
EXR_COMPRESSIONS: tuple[str, ...] = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab")
NonFinitePolicy = Literal["error", "zero"]
NONFINITE_POLICIES: tuple[str, ...] = ("error", "zero")
#: what to do with finite values beyond half float's range (|x| > 65504) when writing half
HalfOverflowPolicy = Literal["error", "clamp", "float"]
HALF_OVERFLOW_POLICIES: tuple[str, ...] = ("error", "clamp", "float")
HALF_MAX = 65504.0  # largest finite IEEE 754 binary16 value
#: largest frame read without being asked (pixels); FACEGRAPH_MAX_PIXELS raises it. 8192 x 8192 float RGBA is
#: 1 GiB per decoded frame; a 16384^2 frame peaked at 13 GB through the analysis chain.
DEFAULT_MAX_PIXELS = 8192 * 8192
#: OIIO format names whose pixel values are linear already (everything else with integer pixels is sRGB)
_LINEAR_FORMATS = ("openexr", "hdr", "pfm")
_NONFINITE_HINT = ("use the nonfinite policy 'zero' to replace them with 0 (--nonfinite zero on the command "
                   "line, the nonfinite input on the nodes)")

FLOAT_FORMATS = (".exr", ".hdr", ".pfm")
STILL_FORMATS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: attributes that describe the file's layout rather than the picture; never copied from one file to another
_STRUCTURAL = ("compression", "oiio:", "openexr:chunkCount", "openexr:lineOrder", "tiff:", "png:", "jpeg:",
               "planarconfig", "Exif:", "IPTC:", "XResolution", "YResolution", "ResolutionUnit")


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a read learned about a file, and what a write needs to put it back.

    data_window / display_window: (x, y, width, height) in pixels, EXR semantics (the array covers the data
    window; the display window is the frame the picture is meant to fill). attributes: (name, type, value)
    triples, lossless for OIIO. channels: the names of the returned array's channels, in order.
    """

    path: str
    channels: tuple[str, ...]
    data_window: tuple[int, int, int, int]
    display_window: tuple[int, int, int, int]
    pixel_type: str
    attributes: tuple[tuple[str, str, Any], ...] = ()
    encoding: str = "linear"  # how pixel values were stored: linear | srgb

    @property
    def width(self) -> int:
        return self.data_window[2]

    @property
    def height(self) -> int:
        return self.data_window[3]

    def attribute(self, name: str, default: Any = None) -> Any:
        for n, _t, v in self.attributes:
            if n == name:
                return v
        return default


def all_finite(a: np.ndarray) -> bool:
    """True when ``a`` holds no NaN/Inf. One reduction in the common case; the exact (slower) test only when
    the sum is not finite (NaN/Inf present, or an overflow of huge finite values)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    return bool(np.isfinite(a).all())


def validate_compression(name: str) -> str:
    """Return a valid OpenEXR compression string (``zip``, ``dwaa:45``, ...) or raise InputError."""
    base, _, level = (name or "").strip().lower().partition(":")
    if base not in EXR_COMPRESSIONS:
        raise InputError(f"unknown EXR compression {name!r}", hint=f"use one of {', '.join(EXR_COMPRESSIONS)}")
    if level:
        if base not in ("zip", "zips", "dwaa", "dwab") or not level.replace(".", "", 1).isdigit():
            raise InputError(f"compression level {level!r} is not valid for {base}")
    return base + (f":{level}" if level else "")


def _pick_channels(names: Sequence[str], want: str | Sequence[str] | None, layer: str, path: str,
                   frame: int | None) -> list[int]:
    """Indices of the wanted channels. ``want``: None/"auto" -> RGB(A) of ``layer``; "RGB", "RGBA", or names."""
    prefix = f"{layer}." if layer else ""
    lower = {n.lower(): i for i, n in enumerate(names)}
    if want is None or want == "auto":
        rgb = [lower.get((prefix + c).lower()) for c in "rgb"]
        if None in rgb:
            if not layer and len(names) in (1, 2) and names[0].upper() in ("Y", "L", "GRAY", "LUMINANCE") and (
                    len(names) == 1 or names[1].upper() == "A"):
                idx = [0, 0, 0]  # luminance-only file: replicate
                if len(names) == 2:
                    idx.append(1)
                return idx
            raise ImageIOError(f"no {prefix}R/G/B channels (found {list(names)})", file=path, frame=frame,
                               hint="channels are picked by name: name the channels to read (channels=...), "
                                    "or the layer that holds them (--layer / the layer input)")
        a = lower.get((prefix + "a").lower())
        return rgb + ([a] if a is not None else [])
    wanted = list(want) if isinstance(want, str) and want.isalpha() and want.isupper() else (
        [want] if isinstance(want, str) else list(want))
    out = []
    for c in wanted:
        i = lower.get((prefix + c).lower())
        if i is None:
            raise ImageIOError(f"channel {prefix + c!r} not in file (found {list(names)})", file=path, frame=frame)
        out.append(i)
    return out


def read_image(path: str | os.PathLike, *, channels: str | Sequence[str] | None = None, layer: str = "",
               nonfinite: str = "error", frame: int | None = None, threads: int = 0
               ) -> tuple[np.ndarray, ImageInfo]:
    """Read one image as (H, W, C) float32 scene-linear, premultiplied.

    channels: None/"auto" = RGB plus A when present (of ``layer`` if given), "RGB"/"RGBA", or a list of names.
    nonfinite: ``error`` raises on NaN/Inf pixels naming the file and frame; ``zero`` replaces them with 0.
    threads: OIIO worker threads for this file (0 = OIIO's global setting).
    Raises ImageIOError (missing, unreadable, truncated, 0x0, wrong channels) naming file and frame.
    """
    import OpenImageIO as oiio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageIOError("file not found", file=path, frame=frame)
    note_input(path)
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)  # stills: get straight alpha, decode, then premultiply
    inp = oiio.ImageInput.open(path, config)
    if inp is None:
        raise ImageIOError(f"cannot open: {oiio_error(oiio.geterror())}",
                              file=path, frame=frame)
    try:
        if threads and hasattr(inp, "threads"):
            inp.threads(threads)
        spec = inp.spec()
        check_spec(spec, path, frame)
        real_format = inp.format_name().lower()
        names = list(spec.channelnames)
        idx = _pick_channels(names, channels, layer, path, frame)
        lo, hi = min(idx), max(idx) + 1
        data = inp.read_image(0, 0, lo, hi, oiio.FLOAT)
        if data is None or inp.has_error:
            raise ImageIOError(f"cannot read pixels: {oiio_error(inp.geterror() or 'truncated or corrupt file')}",
                               file=path, frame=frame)
        data = np.asarray(data, dtype=np.float32).reshape(spec.height, spec.width, hi - lo)
        order = [i - lo for i in idx]
        # the common case (RGB/RGBA stored in order) needs no copy
        pixels = data if order == list(range(hi - lo)) else np.ascontiguousarray(data[:, :, order])
        fmt = str(spec.format)
        straight = bool(spec.get_int_attribute("oiio:UnassociatedAlpha", 0))
        colourspace = spec.get_string_attribute("oiio:ColorSpace", "").lower()
        attrs = tuple((p.name, str(p.type), p.value) for p in spec.extra_attribs
                      if not p.name.startswith(_STRUCTURAL))
        out_names = tuple(names[i] for i in idx)
    finally:
        inp.close()

    integer = fmt in ("uint8", "uint16", "int8", "int16", "uint32", "int32")
    encoding = "linear"
    has_alpha = len(out_names) == 4 and out_names[3].lower().endswith("a")
    if integer and real_format not in _LINEAR_FORMATS:
        if "linear" not in colourspace:
            encoding = "srgb"
            pixels[..., :3] = srgb_to_linear(pixels[..., :3])
        if has_alpha:
            pixels[..., :3] *= pixels[..., 3:4]  # premultiply after decoding straight colour
    elif has_alpha and straight:
        pixels[..., :3] *= pixels[..., 3:4]

    if not all_finite(pixels):
        bad = ~np.isfinite(pixels)
        if nonfinite == "zero":
            pixels[bad] = 0.0
        else:
            raise ImageIOError(f"{int(bad.sum())} NaN/Inf values", file=path, frame=frame, hint=_NONFINITE_HINT)
    info = ImageInfo(path=path, channels=out_names,
                     data_window=(spec.x, spec.y, spec.width, spec.height),
                     display_window=(spec.full_x, spec.full_y, spec.full_width, spec.full_height),
                     pixel_type=fmt, attributes=attrs, encoding=encoding)
    return pixels, info


def oiio_error(text: str) -> str:
    """OIIO's error text as one line: its messages repeat and span lines; keep each distinct line once."""
    lines = [" ".join(t.split()) for t in str(text or "").splitlines()]
    return "; ".join(dict.fromkeys(t for t in lines if t)) or "unknown error"


def max_pixels() -> int:
    """The largest frame (width x height) read without being asked: FACEGRAPH_MAX_PIXELS or the default."""
    text = os.environ.get("FACEGRAPH_MAX_PIXELS", "")
    try:
        return int(text) if text.strip() else DEFAULT_MAX_PIXELS
    except ValueError:
        raise InputError(f"FACEGRAPH_MAX_PIXELS={text!r} is not an integer") from None


def check_spec(spec, path: str, frame: int | None) -> None:
    """Refuse empty and over-large images before any pixel is decoded."""
    if spec.width <= 0 or spec.height <= 0 or spec.nchannels <= 0:
        raise ImageIOError(f"empty image ({spec.width}x{spec.height}x{spec.nchannels})", file=path, frame=frame)
    limit = max_pixels()
    if spec.width * spec.height > limit:
        raise ImageIOError(f"frame of {spec.width}x{spec.height} is larger than the limit of {limit} pixels",
                           file=path, frame=frame,
                           hint="set FACEGRAPH_MAX_PIXELS to a larger number of pixels if this machine has the memory")


@dataclasses.dataclass(frozen=True)
class Header:
    """What a header read tells without decoding pixels."""

    path: str
    width: int
    height: int
    channels: tuple[str, ...]
    format: str


def read_header(path: str | os.PathLike, *, frame: int | None = None) -> Header:
    """Open ``path`` and read its header only (cheap: no pixels). Raises ImageIOError for a missing,
    unreadable, empty or over-large file, naming the file and frame."""
    import OpenImageIO as oiio

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageIOError("file not found", file=path, frame=frame)
    if os.path.getsize(path) == 0:
        raise ImageIOError("empty file (0 bytes)", file=path, frame=frame)
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise ImageIOError(f"cannot open: {oiio_error(oiio.geterror())}",
                              file=path, frame=frame)
    try:
        spec = inp.spec()
        check_spec(spec, path, frame)
        return Header(path=path, width=spec.width, height=spec.height, channels=tuple(spec.channelnames),
                      format=inp.format_name().lower())
    finally:
        inp.close()


def write_image(path: str | os.PathLike, pixels: np.ndarray, *, channels: Sequence[str] | None = None,
                pixel_type: str = "half", compression: str = "zip",
                data_window: tuple[int, int] | tuple[int, int, int, int] | None = None,
                display_window: tuple[int, int, int, int] | None = None,
                attributes: Iterable[tuple[str, str, Any]] = (), overwrite: bool = False,
                nonfinite: str = "error", frame: int | None = None, bit_depth: int = 8,
                encoded: bool = False, threads: int = 0, half_overflow: str = "error") -> str:
    """Write (H, W, C) float32 linear premultiplied pixels atomically (temp file + rename).

    EXR keeps the values as they are (half/float). PNG/JPEG/TIFF are sRGB-encoded with straight alpha,
    quantised to ``bit_depth`` (8, or 16 for PNG/TIFF). ``data_window`` gives the array's origin (x, y) inside
    ``display_window`` (x, y, w, h); both default to the array itself. Refuses to replace an existing file
    unless ``overwrite``. ``encoded``: the pixels are already display-referred [0, 1] (a view transform was
    applied) and are written to PNG/JPEG/TIFF without the sRGB encode. ``threads``: OIIO worker threads for
    this file (0 = OIIO's global setting). ``half_overflow``: finite values beyond half's range (|x| > 65504)
    would become Inf in a half EXR: ``error`` refuses (nothing written), ``clamp`` clamps them to +-65504,
    ``float`` writes this file as 32-bit float instead. Never replaces a file this process read as an input.
    Returns the path written.
    """
    import OpenImageIO as oiio

    path = os.fspath(path)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageIOError(f"cannot write an image of shape {pixels.shape}", file=path, frame=frame)
    h, w, c = pixels.shape
    if channels is None:
        channels = {1: ("Y",), 2: ("Y", "A"), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}.get(c)
        if channels is None:
            raise ImageIOError(f"{c} channels need explicit channel names", file=path, frame=frame)
    if len(channels) != c:
        raise ImageIOError(f"{len(channels)} channel names for {c} channels", file=path, frame=frame)
    if os.path.exists(path) and not overwrite:
        raise ImageIOError("file exists", file=path, frame=frame, hint="set overwrite to replace it")
    refuse_input(path, frame)
    if half_overflow not in HALF_OVERFLOW_POLICIES:
        raise InputError(f"half_overflow must be one of {HALF_OVERFLOW_POLICIES}, got {half_overflow!r}")
    ext = os.path.splitext(path)[1].lower()
    data = np.ascontiguousarray(pixels, dtype=np.float32)
    if not all_finite(data):
        finite = np.isfinite(data)
        if nonfinite == "zero":
            data = np.where(finite, data, 0.0).astype(np.float32)
        else:
            raise ImageIOError(f"{int((~finite).sum())} NaN/Inf values in the image to write", file=path,
                               frame=frame, hint="nothing was written; " + _NONFINITE_HINT)

    if ext == ".exr":
        if pixel_type not in PIXEL_TYPES:
            raise InputError(f"pixel_type must be one of {PIXEL_TYPES}, got {pixel_type!r}")
        if pixel_type == "half" and data.size and max(float(data.max()), -float(data.min())) > HALF_MAX:
            n = int((np.abs(data) > HALF_MAX).sum())
            if half_overflow == "error":
                raise ImageIOError(f"{n} values exceed half float's range (|x| > {HALF_MAX:g}) and would be "
                                   "written as Inf", file=path, frame=frame,
                                   hint="nothing was written; write float (--float / pixel_type float), or "
                                        "choose the half overflow policy 'clamp' or 'float' (--half-overflow)")
            if half_overflow == "clamp":
                log.warning("%s: %d values beyond +-%g clamped to half's range", path, n, HALF_MAX)
                data = np.clip(data, -HALF_MAX, HALF_MAX)
            else:
                log.warning("%s: %d values beyond half's range: written as float", path, n)
                pixel_type = "float"
        fmt = oiio.HALF if pixel_type == "half" else oiio.FLOAT
        spec = oiio.ImageSpec(w, h, c, fmt)
        spec.attribute("compression", validate_compression(compression))
    elif ext in STILL_FORMATS:
        if bit_depth not in (8, 16) or (bit_depth == 16 and ext in (".jpg", ".jpeg")):
            raise InputError(f"bit depth {bit_depth} is not available for {ext}")
        fmt = oiio.UINT8 if bit_depth == 8 else oiio.UINT16
        spec = oiio.ImageSpec(w, h, c, fmt)
        data = np.clip(data, 0.0, 1.0) if encoded else _encode_still(data, channels)
        spec.attribute("oiio:ColorSpace", "sRGB")
        if c == 4:
            spec.attribute("oiio:UnassociatedAlpha", 1)
    else:
        raise ImageIOError(f"unsupported output format {ext!r}", file=path,
                           hint="write .exr for float data, or .png/.jpg/.tif for previews")
    spec.channelnames = tuple(channels)
    if c == 4 and channels[3].upper().endswith("A"):
        spec.alpha_channel = 3
    if data_window is not None:
        spec.x, spec.y = int(data_window[0]), int(data_window[1])
    if display_window is not None:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = (int(v) for v in display_window)
    else:
        spec.full_x, spec.full_y, spec.full_width, spec.full_height = spec.x, spec.y, w, h
    for name, typ, value in attributes:
        if name.startswith(_STRUCTURAL):
            continue
        try:
            spec.attribute(name, oiio.TypeDesc(typ), value)
        except (TypeError, ValueError, RuntimeError):
            spec.attribute(name, str(value))

    tmp = temp_beside(path, ext)
    try:
        out = oiio.ImageOutput.create(tmp)
        if out is None:
            raise ImageIOError(f"no writer for {ext}: {oiio.geterror()}", file=path, frame=frame)
        if threads and hasattr(out, "threads"):
            out.threads(threads)
        if not out.open(tmp, spec):
            raise ImageIOError(f"cannot open for writing: {oiio_error(out.geterror())}", file=path, frame=frame)
        ok = out.write_image(data)
        err = out.geterror()
        ok = out.close() and ok
        if not ok:
            raise ImageIOError(f"cannot write pixels: {oiio_error(err or out.geterror() or 'disk full?')}", file=path,
                               frame=frame, hint="check the free space and permissions of the output folder")
        if os.path.exists(path) and not overwrite:  # someone else wrote it meanwhile
            raise ImageIOError("file appeared while writing", file=path, frame=frame)
        refuse_input(path, frame)
        os.replace(tmp, path)
    except OSError as exc:
        raise ImageIOError(f"cannot write: {exc.strerror or exc}", file=path, frame=frame) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _encode_still(data: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Linear premultiplied -> sRGB-encoded straight-alpha floats in [0, 1] (OIIO quantises with rounding)."""
    out = data.copy()
    if len(channels) == 4:
        a = out[..., 3:4]
        out[..., :3] = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    colour = slice(0, 3) if out.shape[2] >= 3 else slice(0, 1)
    out[..., colour] = linear_to_srgb(out[..., colour])
    return np.clip(out, 0.0, 1.0)


def write_display_png(path: str | os.PathLike, rgb8: np.ndarray) -> str:
    """Write an already display-referred (H, W, 3) uint8 RGB picture (a preview) as PNG, atomically,
    replacing any previous one. Not for pixel data: use :func:`write_image` for that."""
    import cv2

    path = os.fspath(path)
    if rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise InputError(f"write_display_png expects (H, W, 3) uint8, got {rgb8.shape} {rgb8.dtype}")
    refuse_input(path)
    tmp = temp_beside(path, ".png")
    try:
        if not cv2.imwrite(tmp, np.ascontiguousarray(rgb8[..., ::-1])):
            raise ImageIOError("cannot write preview", file=path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
