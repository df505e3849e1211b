"""Analyse a whole shot: stream frames -> per-frame faces (cached on disk) -> tracks, gates, fills, smoothing.

Frames are read with a bounded window and analysed one at a time (no whole sequence in memory); the per-frame
records go to a :class:`~facegraph.core.shotcache.FrameCache`, so a re-run (or a later graph) reads them instead
of running the models again. Only the small records are held for the shot-level pass.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core import progress
from ..core.colour import ViewOptions, network_view
from ..core.detection import DetectOptions
from ..core.io.frames import Frame
from ..core.io.source import Source
from ..core.refine import RefineOptions
from ..core.shot import GateOptions, ShotResult, SmoothOptions, exposure_gate, process_shot
from ..core.shotcache import FrameCache, file_identity
from ..core.tracking import TrackOptions
from ..core.types import FrameFaces
from ..core.version import version
from .analysis import detect_frames, landmark_frames, refine_frames
from .loader import load_model
from .registry import registry


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


class ShotAnalyser:
    def __init__(self, options: AnalysisOptions = AnalysisOptions()) -> None:
        self.options = options
        self.detector = load_model(options.detector, task="detect", device=options.device, threads=options.threads)
        self.mesh = load_model(options.landmarks, task="landmarks", device=options.device, threads=options.threads)
        self.iris = load_model(options.eye_model, task="refine", device=options.device, threads=options.threads)

    def analyse_frame(self, pixels: np.ndarray, number: int) -> FrameFaces:
        """One linear frame (H, W, C) -> its faces with landmarks, refined, exposure-gated."""
        rgb = pixels[..., :3]
        alpha = pixels[..., 3] if pixels.shape[-1] == 4 else None
        view = network_view(rgb, alpha, self.options.view)
        ff = detect_frames(self.detector, [view], [number], self.options.detect)
        ff = landmark_frames(self.mesh, [view], ff, recrop=0)
        ff = refine_frames([view], ff, mesh=self.mesh, iris=self.iris,
                           options=RefineOptions(recrop=self.options.recrop, eyes=self.options.eyes))[0]
        faces = []
        for f in ff.faces:
            why = exposure_gate(f, rgb, self.options.gate)
            faces.append(f.replace(notes=f.notes + (f"gate={why}",)) if why else f)
        return ff.replace(faces=tuple(faces))

    def analyse(self, source: Source, cache_root: str | Path | None = None,
                on_frame: Callable[[Frame, FrameFaces], None] | None = None) -> list[FrameFaces]:
        """Per-frame faces for every frame of ``source``, streamed, reading/writing the cache."""
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
                for frame in sub.frames_iter():
                    ff = self.analyse_frame(frame.pixels, frame.number)
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
    """The whole analysis of a shot: per-frame (cached) then shot-level (tracks, gates, fills, smoothing)."""
    frames = ShotAnalyser(options).analyse(source, cache_root)
    smooth = dataclasses.replace(smooth, gate=options.gate, fps=source.fps or smooth.fps)
    result = process_shot(frames, smooth, track)
    result.source = {"path": source.path, "kind": source.kind, "frames": [source.frames[0], source.frames[-1]],
                     "count": len(source.frames), "missing": list(source.missing), "fps": source.fps,
                     **source_windows(source)}
    result.params.update({"detector": options.detector, "landmarks": options.landmarks, "recrop": options.recrop,
                          "eyes": options.eyes})
    return result
