"""Analyse a whole shot: stream frames -> per-frame faces (cached on disk) -> tracks, gates, fills, smoothing.

Frames are read with a bounded window and analysed in small batches (``BATCH_FRAMES`` frames, at most
``BATCH_BYTES`` of pixels: no whole sequence in memory); the per-frame records go to a :class:`~facegraph.core.shotcache.FrameCache`, so a re-run (or a later graph) reads them instead
of running the models again. Only the small records are held for the shot-level pass.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core import progress
from ..core.colour import FrameViews, ViewOptions
from ..core.detection import DetectOptions
from ..core.errors import InputError
from ..core.io.frames import Frame
from ..core.io.source import Source
from ..core.refine import RefineOptions
from ..core.shot import GateOptions, ShotResult, SmoothOptions, exposure_gate, process_shot
from ..core.shotcache import FrameCache, file_identity
from ..core.tracking import TrackOptions
from ..core.types import FrameFaces
from ..core.version import version
from .analysis import analyse_views
from .loader import load_model
from .registry import registry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Per-frame analysis: models, detection, landmarks (re-crop passes), eye refinement, the networks' view
    and the exposure gate."""

    detector: str = "yunet_n"
    landmarks: str = "mediapipe_landmarker_v2"
    eye_model: str = "mediapipe_iris"
    recrop: int = 1
    eyes: str = "auto"
    detect: DetectOptions = DetectOptions()
    view: ViewOptions = ViewOptions()
    gate: GateOptions = GateOptions()
    device: str = "auto"
    threads: int = 0

    def key_material(self) -> dict:
        """What the cached results depend on: every option, the models' file hashes, facegraph's version."""
        models = {m: [f.sha256 for f in registry().get(m).files] for m in (self.detector, self.landmarks,
                                                                           self.eye_model)}
        opts = dataclasses.asdict(self)
        opts.pop("device")
        opts.pop("threads")
        return {"facegraph": version(), "options": opts, "models": models}


#: frames analysed together (detection, landmark and iris batches span them) and the most frame memory a
#: batch may hold; larger frames make smaller batches (1080p RGBA float32 is 33 MB: 8 fit; 4K: 3)
BATCH_FRAMES = 8
BATCH_BYTES = 512 * 2**20


def _as_frame_tensor(pixels) -> "torch.Tensor":
    """(H, W, C) numpy or (C, H, W) torch linear frame -> (C, H, W) float32 torch with C = 3 or 4 (RGB, or
    RGBA premultiplied; channels past the fourth, or a lone second, are not the picture): a view, no copy,
    where the input is float32 already."""
    import torch

    if isinstance(pixels, torch.Tensor):
        x = pixels if pixels.ndim == 3 else pixels[0]
    else:
        px = np.asarray(pixels)
        if px.ndim != 3:
            raise InputError(f"a frame must be (H, W, C), got shape {px.shape}")
        x = torch.from_numpy(px if px.dtype == np.float32 else px.astype(np.float32)).permute(2, 0, 1)
    c = x.shape[0]
    if c not in (3, 4):
        if c < 3:
            raise InputError(f"a frame needs RGB channels, got {c}")
        x = x[:3]
    return x if x.dtype == torch.float32 else x.float()


class ShotAnalyser:
    """The default chain over a shot's frames, in batches (see :func:`~facegraph.models.analysis.analyse_views`)."""

    def __init__(self, options: AnalysisOptions = AnalysisOptions(), *, batch: int = BATCH_FRAMES) -> None:
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        self.options = options
        self.batch = batch
        self.detector = load_model(options.detector, task="detect", device=options.device, threads=options.threads)
        self.mesh = load_model(options.landmarks, task="landmarks", device=options.device, threads=options.threads)
        self.iris = load_model(options.eye_model, task="refine", device=options.device, threads=options.threads)

    def analyse_frame(self, pixels, number: int) -> FrameFaces:
        """One linear frame (H, W, C) -> its faces with landmarks, refined, exposure-gated."""
        return self.analyse_frames([pixels], [number])[0]

    def analyse_frames(self, frames, numbers: Sequence[int]) -> list[FrameFaces]:
        """A batch of linear frames -> their faces with landmarks, refined, exposure-gated.

        Convention: frames: B frames of one size, each (H, W, C) float32 numpy or (C, H, W) torch (or a
        (B, C, H, W) tensor), scene-linear, premultiplied where C == 4, on any device; numbers: B frame
        numbers. The chain runs batched over all of them (one view record per frame: the exposure is
        measured once per frame and each network sees the view at its own input size). Faces in the frames'
        own pixels (pixel-area convention)."""
        items = [_as_frame_tensor(f) for f in frames]
        if len(items) != len(numbers):
            raise InputError(f"{len(numbers)} frame numbers for {len(items)} frames")
        if not items:
            return []
        views = FrameViews(items, self.options.view)
        found = analyse_views(views, list(numbers), detector=self.detector, mesh=self.mesh, iris=self.iris,
                              detect=self.options.detect,
                              refine=RefineOptions(recrop=self.options.recrop, eyes=self.options.eyes))
        out = []
        for x, ff in zip(items, found):
            rgb = x[:3].permute(1, 2, 0)
            rgb = rgb.numpy() if rgb.device.type == "cpu" else None
            faces = []
            for f in ff.faces:
                if rgb is None:  # core.shot.exposure_gate reads numpy pixels: one copy to the CPU
                    rgb = x[:3].permute(1, 2, 0).cpu().numpy()
                why = exposure_gate(f, rgb, self.options.gate)
                faces.append(f.replace(notes=f.notes + (f"gate={why}",)) if why else f)
            out.append(ff.replace(faces=tuple(faces)))
        return out

    def cached(self, source: Source, cache_root: str | Path) -> list[FrameFaces] | None:
        """Every frame of ``source`` from the cache, or None at the first frame that is not in it (reads the
        cache entries and hashes the input files; decodes nothing)."""
        cache = FrameCache(cache_root, {**self.options.key_material(), "source": source_identity(source)})
        identities = frame_identities(source)
        out = []
        for number in source.frames:
            hit = cache.get(number, identities(number))
            if hit is None:
                return None
            out.append(hit)
        return out

    def _batch_size(self, pixels: np.ndarray) -> int:
        return max(1, min(self.batch, BATCH_BYTES // max(1, pixels.nbytes)))

    def analyse(self, source: Source, cache_root: str | Path | None = None,
                on_frame: Callable[[Frame, FrameFaces], None] | None = None) -> list[FrameFaces]:
        """Per-frame faces for every frame of ``source``, streamed in batches of frames (at most ``batch``
        frames and BATCH_BYTES of pixels held), reading/writing the cache; progress and ``on_frame`` per
        frame, in order."""
        cache = None
        if cache_root is not None:
            cache = FrameCache(cache_root, {**self.options.key_material(), "source": source_identity(source)})
        out: list[FrameFaces] = []
        identities = frame_identities(source)
        todo = []
        for number in source.frames:
            hit = cache.get(number, identities(number)) if cache else None
            out.append(hit)
            if hit is None:
                todo.append(number)
        if todo:
            sub = source.subset(todo)
            pos = {f: i for i, f in enumerate(source.frames)}
            with progress.task(len(todo), "analyse frames") as bar:
                def flush(batch: list[Frame]) -> None:
                    found = self.analyse_frames([f.pixels for f in batch], [f.number for f in batch])
                    for frame, ff in zip(batch, found):
                        ff = to_display_window(ff, frame)
                        if frame.filled:
                            ff = ff.replace(faces=tuple(f.replace(notes=f.notes + (f"gate=missing-frame:{frame.source}",))
                                                        for f in ff.faces))
                        out[pos[frame.number]] = ff
                        if cache:
                            cache.put(frame.number, identities(frame.number), ff)
                        if on_frame is not None:
                            on_frame(frame, ff)
                        bar.advance()

                batch: list[Frame] = []
                for frame in sub.frames_iter():
                    if batch and (frame.pixels.shape != batch[0].pixels.shape
                                  or len(batch) >= self._batch_size(batch[0].pixels)):
                        flush(batch)
                        batch = []
                    batch.append(frame)
                if batch:
                    flush(batch)
        return out


def source_windows(source: Source) -> dict:
    """The first readable frame's data and display windows (x, y, w, h), for the tracking export."""
    from ..core.errors import FacegraphError
    from ..core.io.images import read_header

    try:
        first = source.input_files()[0]
        import OpenImageIO as oiio

        read_header(first)
        inp = oiio.ImageInput.open(first)
        spec = inp.spec()
        inp.close()
        return {"data_window": [spec.x, spec.y, spec.width, spec.height],
                "display_window": [spec.full_x, spec.full_y, spec.full_width, spec.full_height],
                "coordinates": "display-window pixels"}
    except (FacegraphError, IndexError, AttributeError, OSError):
        return {"coordinates": "display-window pixels"}


def window_offset(frame: Frame) -> tuple[int, int]:
    """(dx, dy) from a frame's data-window pixels (its array) to display-window pixels (the convention of
    every coordinate facegraph reports: see core/conventions.py)."""
    if frame.info is None:
        return (0, 0)
    dw, fw = frame.info.data_window, frame.info.display_window
    return (dw[0] - fw[0], dw[1] - fw[1])


def to_display_window(ff: FrameFaces, frame: Frame) -> FrameFaces:
    """Faces found on a frame's data-window array, in display-window pixels, sized as the display window."""
    if frame.info is None:
        return ff
    dx, dy = window_offset(frame)
    fw = frame.info.display_window
    return ff.shifted(dx, dy, size=(fw[2], fw[3]))


def source_identity(source: Source) -> dict:
    return {"path": source.path, "kind": source.kind, "read": {k: v for k, v in source._read.items()}}


def frame_identities(source: Source) -> Callable[[int], Any]:
    """A function frame number -> identity of the input that frame comes from (a hash of its content)."""
    if source.kind == "movie" or source.kind == "still":
        ident = file_identity(source.path)
        return lambda n: ident
    plan = source._plan
    src = dict(zip(plan.frames, plan.sources))
    memo: dict[int, Any] = {}

    def ident(n: int) -> Any:
        s = src.get(n)
        if s is None:
            return ["black"]
        if s not in memo:
            memo.clear()  # held frames repeat the previous source; keep one entry
            memo[s] = file_identity(source._pattern.path(s))
        return memo[s]
    return ident


def analyse_shot(source: Source, options: AnalysisOptions = AnalysisOptions(),
                 smooth: SmoothOptions = SmoothOptions(), track: TrackOptions = TrackOptions(),
                 cache_root: str | Path | None = None) -> ShotResult:
    """The whole analysis of a shot: per-frame (cached) then shot-level (tracks, gates, fills, smoothing).

    In a chunk of a known shot (a frame window with ``shot``, plugin/chunks.py) the shot-level pass runs over
    the whole shot when the shot cache holds every frame of it (the chunks' analysis pass wrote them): the
    result, restricted to the chunk's frames (:meth:`ShotResult.within`), is then exactly a single run's. When
    frames are missing it runs over the chunk and its handles (close to a single run, not equal) and says so.
    """
    from ..core import frame_window

    analyser = ShotAnalyser(options)
    frames = analyser.analyse(source, cache_root)
    smooth = dataclasses.replace(smooth, gate=options.gate, fps=source.fps or smooth.fps)
    whole, win = source.whole(), frame_window.current()
    if whole is not None and win is not None and not win.analysis_pass:
        every = analyser.cached(whole, cache_root) if cache_root is not None else None
        if every is not None:
            log.info("chunk %s: tracks and smoothing over the whole shot %d-%d from the shot cache (as a single "
                     "run)", win.label(), whole.frames[0], whole.frames[-1])
            result = process_shot(every, smooth, track).within(source.frames)
            return _described(result, source, options)
        log.warning("chunk %s: the shot cache does not hold every frame of the shot %d-%d, so tracks and "
                    "smoothing see only the chunk and its handles (close to a single run, not equal); run the "
                    "analysis pass first (facegraph run ... --analysis-pass, which farm jobs and --chunk do)",
                    win.label(), whole.frames[0], whole.frames[-1])
    return _described(process_shot(frames, smooth, track), source, options)


def _described(result: ShotResult, source: Source, options: AnalysisOptions) -> ShotResult:
    result.source = {"path": source.path, "kind": source.kind, "frames": [source.frames[0], source.frames[-1]],
                     "count": len(source.frames), "missing": list(source.missing), "fps": source.fps,
                     **source_windows(source)}
    result.params.update({"detector": options.detector, "landmarks": options.landmarks, "recrop": options.recrop,
                          "eyes": options.eyes})
    return result
