"""Movies (mp4, mov/ProRes, mkv ...) through PyAV, decoded with an explicit colour matrix and range.

Decoding: frames are converted by swscale only to planar 4:4:4 YUV (chroma upsampling, no matrix); the
Y'CbCr -> R'G'B' matrix and the range expansion are done here in float, from the stream's tags or as asked:
matrix ``bt709`` (ITU-R BT.709: Kr 0.2126, Kb 0.0722) or ``bt601`` (ITU-R BT.601: Kr 0.299, Kb 0.114);
untagged streams follow ffmpeg's rule (BT.709 from 720 lines up, else BT.601). Range ``limited`` (Y' 16-235,
C 16-240 in 8-bit codes) or ``full``; untagged means limited. The transfer (``srgb`` by default, as for stills,
or ``rec709`` / ``linear``) then gives scene-linear float.

Encoding (previews): linear frames go through a view transform, then our BT.709 limited-range matrix, and the
stream is tagged BT.709 so players decode it as written.
"""
from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from ..colour import ViewOptions, apply_view, rec709_to_linear, srgb_to_linear
from ..fsutil import note_input, refuse_input, temp_beside
from ..errors import ImageIOError, InputError
from .frames import Frame

MOVIE_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf")
MATRICES = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}  # (Kr, Kb) from the ITU-R standards
_AVCOL_SPC = {1: "bt709", 5: "bt601", 6: "bt601"}  # libavutil AVColorSpace codes
TRANSFERS = ("srgb", "rec709", "linear")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    codec: str
    pix_fmt: str
    matrix: str
    range: str
    tagged: bool


def probe_video(path: str | os.PathLike) -> VideoInfo:
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageIOError("file not found", file=path)
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise ImageIOError("no video stream", file=path)
            s = c.streams.video[0]
            cc = s.codec_context
            spc, rng = int(cc.colorspace or 2), int(cc.color_range or 0)
            matrix = _AVCOL_SPC.get(spc) or ("bt709" if cc.height >= 720 else "bt601")
            fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
            count = int(s.frames or 0)
            if count == 0 and s.duration is not None and s.time_base is not None:
                count = int(round(float(s.duration * s.time_base) * fps))
            return VideoInfo(path=path, width=cc.width, height=cc.height, fps=fps, frame_count=count,
                             codec=cc.name, pix_fmt=str(cc.pix_fmt), matrix=matrix,
                             range="full" if rng == 2 else "limited", tagged=spc in _AVCOL_SPC)
    except av.error.FFmpegError as exc:
        raise ImageIOError(f"cannot open movie: {exc}", file=path) from None


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, *, matrix: str, full_range: bool,
                 bits: int = 8) -> np.ndarray:
    """Code values (any bit depth ``bits``) -> non-linear R'G'B' float32 (H, W, 3), nominally [0, 1]."""
    if matrix not in MATRICES:
        raise InputError(f"matrix must be one of {tuple(MATRICES)}, got {matrix!r}")
    scale = float(1 << (bits - 8))
    y, cb, cr = (np.asarray(v, np.float32) / scale for v in (y, cb, cr))
    if full_range:
        yn, cbn, crn = y / 255.0, (cb - 128.0) / 255.0, (cr - 128.0) / 255.0
    else:  # ITU-R BT.601/709 8-bit quantisation: Y' = 219 E'y + 16, C = 224 E'c + 128
        yn, cbn, crn = (y - 16.0) / 219.0, (cb - 128.0) / 224.0, (cr - 128.0) / 224.0
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    r = yn + 2.0 * (1.0 - kr) * crn
    b = yn + 2.0 * (1.0 - kb) * cbn
    g = (yn - kr * r - kb * b) / kg
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray, *, matrix: str = "bt709", bits: int = 8) -> np.ndarray:
    """Non-linear R'G'B' in [0, 1] (H, W, 3) -> limited-range Y'CbCr codes (3, H, W), rounded, of ``bits``."""
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    r, g, b = (np.clip(rgb[..., i], 0, 1).astype(np.float64) for i in range(3))
    ey = kr * r + kg * g + kb * b
    ecb = (b - ey) / (2 * (1 - kb))
    ecr = (r - ey) / (2 * (1 - kr))
    scale = float(1 << (bits - 8))
    codes = np.stack([219 * ey + 16, 224 * ecb + 128, 224 * ecr + 128]) * scale
    return np.round(codes).astype(np.uint16 if bits > 8 else np.uint8)


def _planes(frame, bits: int) -> np.ndarray:
    fmt = "yuv444p" if bits == 8 else "yuv444p16le"
    arr = frame.reformat(format=fmt).to_ndarray()
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        return arr
    return np.moveaxis(arr, -1, 0)


def iter_video(path: str | os.PathLike, indices: Sequence[int] | None = None, *, transfer: str = "srgb",
               matrix: str = "auto", colour_range: str = "auto", first_frame: int = 0) -> Iterator[Frame]:
    """Decode a movie to scene-linear float frames (H, W, 3), streamed.

    indices: 0-based frame indices to yield (sorted; None = all). Frame numbers are ``first_frame + index``.
    transfer: how the decoded R'G'B' becomes linear (``srgb``, ``rec709``, ``linear``).
    matrix / colour_range: ``auto`` reads the stream's tags, or force ``bt709``/``bt601`` and
    ``limited``/``full``.
    """
    import av

    if transfer not in TRANSFERS:
        raise InputError(f"transfer must be one of {TRANSFERS}, got {transfer!r}")
    info = probe_video(path)
    note_input(path)
    m = info.matrix if matrix == "auto" else matrix
    full = (info.range == "full") if colour_range == "auto" else colour_range == "full"
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    to_linear = {"srgb": srgb_to_linear, "rec709": rec709_to_linear, "linear": lambda v: v}[transfer]
    bits = 8 if "10" not in info.pix_fmt and "12" not in info.pix_fmt and "16" not in info.pix_fmt else 16
    try:
        with av.open(os.fspath(path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            pos = -1
            for frame in c.decode(stream):
                pos += 1
                if wanted is not None:
                    if not wanted:
                        break
                    if pos != wanted[0]:
                        continue
                    wanted.pop(0)
                y, cb, cr = _planes(frame, bits)
                rgb = ycbcr_to_rgb(y, cb, cr, matrix=m, full_range=full, bits=bits)
                yield Frame(number=first_frame + pos, pixels=to_linear(rgb), info=None, source=first_frame + pos)
    except av.error.FFmpegError as exc:
        raise ImageIOError(f"cannot decode movie: {exc}", file=os.fspath(path)) from None
    if wanted:
        raise ImageIOError(f"movie has no frames {wanted[:5]}{'...' if len(wanted) > 5 else ''}",
                           file=os.fspath(path), hint=f"it has {pos + 1} frames (0-based indices)")


class VideoWriter:
    """Encode linear frames to a preview movie through a view transform, atomically (temp + rename).

    codec: ``h264`` (mp4/mov, 8-bit 4:2:0, crf ``quality``) or ``prores`` (mov, ProRes 422 HQ 10-bit).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 24.0, *, codec: str = "h264",
                 view: ViewOptions = ViewOptions(exposure="none"), quality: int = 18, overwrite: bool = False):
        self.path = os.fspath(path)
        if codec not in ("h264", "prores"):
            raise InputError(f"codec must be h264 or prores, got {codec!r}")
        if os.path.exists(self.path) and not overwrite:
            raise ImageIOError("file exists", file=self.path, hint="set overwrite to replace it")
        self.fps, self.codec, self.view, self.quality = fps, codec, view, quality
        self._container = None
        self._stream = None
        self._tmp = None
        self._count = 0

    def _open(self, w: int, h: int) -> None:
        import av

        refuse_input(self.path)
        self._tmp = temp_beside(self.path, os.path.splitext(self.path)[1])
        self._container = av.open(self._tmp, "w")
        rate = Fraction(self.fps).limit_denominator(1001)
        if self.codec == "h264":
            st = self._container.add_stream("libx264", rate=rate)
            st.pix_fmt = "yuv420p"
            st.options = {"crf": str(self.quality), "preset": "medium"}
        else:
            st = self._container.add_stream("prores_ks", rate=rate)
            st.pix_fmt = "yuv422p10le"
            st.options = {"profile": "3"}  # 422 HQ
        st.width, st.height = w, h
        cc = st.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited
        self._stream = st

    def write(self, pixels: np.ndarray) -> None:
        import av

        rgb = np.asarray(pixels, np.float32)[..., :3]
        h, w = rgb.shape[:2]
        if self.codec == "h264" and (w % 2 or h % 2):  # 4:2:0 needs even sizes: replicate the last row/col
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            h, w = rgb.shape[:2]
        if self._container is None:
            self._open(w, h)
        disp = np.clip(apply_view(rgb * np.float32(2.0 ** self.view.stops), self.view), 0, 1)
        bits = 8 if self.codec == "h264" else 16
        yuv = rgb_to_ycbcr(disp, matrix="bt709", bits=bits)
        fmt = "yuv444p" if bits == 8 else "yuv444p16le"
        if bits == 8:
            vf = av.VideoFrame.from_ndarray(yuv, format=fmt)
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.moveaxis(yuv, 0, -1)), format=fmt)
        vf = vf.reformat(format=self._stream.pix_fmt)
        vf.pts = self._count
        self._count += 1
        for p in self._stream.encode(vf):
            self._container.mux(p)

    def close(self) -> str:
        if self._container is None:
            raise ImageIOError("no frames were written", file=self.path)
        for p in self._stream.encode():
            self._container.mux(p)
        self._container.close()
        refuse_input(self.path)
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise ImageIOError(f"cannot write: {exc.strerror or exc}", file=self.path) from None
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
