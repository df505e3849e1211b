"""Analyse a whole shot: stream frames -> per-frame faces (cached on disk) -> tracks, gates, fills, smoothing.

Frames are read with a bounded window and analysed in small batches (``BATCH_FRAMES`` frames, at most
``BATCH_BYTES`` of pixels: no whole sequence in memory); the per-frame records go to a :class:`~facegraph.core.shotcache.FrameCache`, so a re-run (or a later graph) reads them instead
of running the models again. Only the small records are held for the shot-level pass.

ROI tracking between keyframes (``AnalysisOptions.detect_every``, MediaPipe's video-mode scheme): frame f of a
shot is a KEYFRAME iff ``f % detect_every == 0`` (absolute frame numbers, so every chunk of a farm render agrees)
or f is the shot's first frame (where the shot skips frames: the first frame of each block of ``detect_every``
numbers, :func:`is_keyframe`). A keyframe runs the full chain (detect -> landmarks -> re-crop -> eyes, pose,
blendshapes). Any other frame takes each face's mesh region from the previous shot frame's final landmarks and
runs one mesh pass (no detection, no re-crop), then the same refine steps
(:func:`~facegraph.models.analysis.track_views`); when a face is lost there (presence below the refine gate,
region out of the frame) or the previous frame has no face, the frame runs the full chain instead and the
frames after it follow it. So a frame's result depends only on the frames from its keyframe to itself, and a
face that enters the picture between keyframes appears at the next keyframe (or at the next full-chain frame).
Track ids are decided later, over the shot (core/tracking.py). "The shot" is the source's frames in a single
run, and the whole shot (``Source.whole()``) in a chunk that knows it, whose earlier frames of a keyframe group
come from the cache or are decoded outside the chunk's window: a chunked render is bit-identical to a single
run. Tracking needs a MediaPipe mesh (its presence says when a face is lost); other landmark models detect
every frame.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..core import progress
from ..core.colour import FrameViews, ViewOptions
from ..core.detection import DetectOptions
from ..core.errors import InputError
from ..core.io.frames import Frame
from ..core.io.source import Source
from ..core.refine import RefineOptions
from ..core.shot import GateOptions, ShotResult, SmoothOptions, gate_frame, process_shot
from ..core.shotcache import FrameCache, file_identity, stable_hash
from ..core.tracking import TrackOptions
from ..core.types import FrameFaces
from ..core.version import version
from .analysis import analyse_views, track_views
from .landmarkers import MediaPipeMesh
from .loader import load_model
from .registry import registry

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """Per-frame analysis: models, detection, landmarks (re-crop passes), eye refinement, the networks' view
    and the exposure gate.

    detect_every: ROI tracking between keyframes (module docstring): frame f of a shot is a keyframe (full
    chain, detection included) iff ``f % detect_every == 0`` or it is the shot's first frame (:func:`is_keyframe`
    where frames are skipped); the frames between
    follow the previous frame's landmarks with one mesh pass; 1 = detect every frame. The default, 8, is the
    measured trade-off (bench/chain.py ``--tracking``, LiteRT on 2 CPU threads: 21 ms per 1080p frame instead
    of 42-45 ms; landmarks within 0.2-0.6 px mean / 1.6 px p95 of detecting every frame on the real clips, no
    fall-backs, the same jitter); a face that enters between keyframes is found at the next keyframe."""

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
    detect_every: int = 8
    #: the landmark and eye models' precision (models.loader.PRECISIONS; fp16 for GPUs: on a CPU the torch
    #: port emulates it, slowly); the detector runs in fp32
    precision: str = "fp32"

    def __post_init__(self) -> None:
        n = self.detect_every
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"detect_every must be an integer >= 1 (1: detect every frame), got {n!r}")
        from .loader import PRECISIONS

        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def key_material(self) -> dict:
        """What the cached results depend on: every option, the models' file hashes, facegraph's version."""
        models = {m: [f.sha256 for f in registry().get(m).files] for m in (self.detector, self.landmarks,
                                                                           self.eye_model)}
        opts = dataclasses.asdict(self)
        opts.pop("device")
        opts.pop("threads")
        if opts["precision"] == "fp32":
            opts.pop("precision")  # as before precision was an option: fp32 caches stay valid
        return {"facegraph": version(), "options": opts, "models": models}


#: frames analysed together (detection, landmark and iris batches span them) and the most frame memory a
#: batch may hold; larger frames make smaller batches (1080p RGBA float32 is 33 MB: 8 fit; 4K: 3)
BATCH_FRAMES = 8
BATCH_BYTES = 512 * 2**20


def is_keyframe(frame: int, previous: int | None, detect_every: int) -> bool:
    """Whether shot frame ``frame`` runs the full chain by the rule: it is the shot's first frame (``previous``,
    the shot frame before it, is None) or the first of the shot's frames in its block of ``detect_every``
    absolute frame numbers (``frame // detect_every != previous // detect_every``): on consecutive frames,
    exactly ``frame % detect_every == 0``; where frames are skipped, the first frame after a skipped multiple.
    Every frame with detect_every = 1."""
    return detect_every <= 1 or previous is None or frame // detect_every != previous // detect_every


def keyframe_groups(frames: Sequence[int], detect_every: int) -> list[tuple[int, ...]]:
    """A shot's frames (increasing) cut into keyframe groups: each group starts at a keyframe
    (:func:`is_keyframe`) and holds the frames up to the next one."""
    groups: list[list[int]] = []
    prev = None
    for f in frames:
        if is_keyframe(f, prev, detect_every):
            groups.append([])
        groups[-1].append(f)
        prev = f
    return [tuple(g) for g in groups]


class _ShotPlan:
    """A shot's frames with the tracking rule: each frame's predecessor (None for keyframes, or when tracking is
    off) and its cache identity. The identity of a keyframe is its input's (as without tracking); a tracked
    frame's also holds a hash chain over the frames of its group before it (frame numbers and input
    identities), so an edit of any earlier frame of the group invalidates it."""

    def __init__(self, shot: Source, detect_every: int, tracking: bool) -> None:
        self.frames = tuple(shot.frames)
        self.pos = {f: i for i, f in enumerate(self.frames)}
        self.detect_every = detect_every if tracking else 1
        self._input = frame_identities(shot)
        self._links: dict[int, str] = {}

    def previous(self, frame: int) -> int | None:
        """The shot frame a tracked ``frame`` follows, or None when ``frame`` is a keyframe."""
        i = self.pos[frame]
        prev = self.frames[i - 1] if i else None
        return None if is_keyframe(frame, prev, self.detect_every) else prev

    def _link(self, frame: int) -> str:
        """Hash chain over the group's frames up to ``frame``: link(f) = H(link(previous(f)), f, input(f))."""
        todo = []
        f: int | None = frame
        while f is not None and f not in self._links:
            todo.append(f)
            f = self.previous(f)
        for g in reversed(todo):
            p = self.previous(g)
            self._links[g] = stable_hash([self._links[p] if p is not None else None, g, self._input(g)])
        return self._links[frame]

    def identity(self, frame: int) -> Any:
        prev = self.previous(frame)
        if prev is None:
            return self._input(frame)
        return {"input": self._input(frame), "after": self._link(prev)}


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
    """The default chain over a shot's frames, in batches (see :func:`~facegraph.models.analysis.analyse_views`),
    with ROI tracking between keyframes (module docstring; ``options.detect_every``)."""

    def __init__(self, options: AnalysisOptions = AnalysisOptions(), *, batch: int = BATCH_FRAMES) -> None:
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        self.options = options
        self.batch = batch
        self.detector = load_model(options.detector, task="detect", device=options.device, threads=options.threads)
        self.mesh = load_model(options.landmarks, task="landmarks", device=options.device, threads=options.threads,
                               precision=options.precision)
        self.iris = load_model(options.eye_model, task="refine", device=options.device, threads=options.threads,
                               precision=options.precision)
        #: whether frames between keyframes follow the previous frame (a MediaPipe mesh and detect_every > 1)
        self.tracking = options.detect_every > 1 and isinstance(self.mesh, MediaPipeMesh)

    def _refine_options(self) -> RefineOptions:
        return RefineOptions(recrop=self.options.recrop, eyes=self.options.eyes)

    def analyse_frame(self, pixels, number: int) -> FrameFaces:
        """One linear frame (H, W, C) -> its faces with landmarks, refined, exposure-gated."""
        return self.analyse_frames([pixels], [number])[0]

    def analyse_frames(self, frames, numbers: Sequence[int]) -> list[FrameFaces]:
        """A batch of linear frames -> their faces with landmarks, refined, exposure-gated: the full chain on
        every frame (detection included, no tracking: the frames need not be a shot).

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
                              detect=self.options.detect, refine=self._refine_options())
        return self._gated(items, found)

    def track_frames(self, frames, numbers: Sequence[int], previous: Sequence[FrameFaces]) -> list[FrameFaces | None]:
        """The track step on a batch of frames: each frame's faces from its predecessor's final landmarks
        (``previous``), one mesh pass, refined, exposure-gated; None for a frame whose faces are lost (run the
        full chain on it: :meth:`analyse_frames`). See :func:`~facegraph.models.analysis.track_views`.

        Convention: frames and numbers as :meth:`analyse_frames`; previous: B FrameFaces in the frames' own
        pixels (pixel-area convention). InputError when tracking is off (``self.tracking``)."""
        if not self.tracking:
            raise InputError(f"tracking is off for {self.options.landmarks} with detect_every="
                             f"{self.options.detect_every}", hint="it needs a MediaPipe mesh and detect_every > 1")
        items = [_as_frame_tensor(f) for f in frames]
        if len(items) != len(numbers) or len(items) != len(previous):
            raise InputError(f"{len(numbers)} frame numbers and {len(previous)} previous results for "
                             f"{len(items)} frames")
        if not items:
            return []
        views = FrameViews(items, self.options.view)
        found = track_views(views, list(numbers), list(previous), mesh=self.mesh, iris=self.iris,
                            refine=self._refine_options())
        kept = [k for k, ff in enumerate(found) if ff is not None]
        gated = self._gated([items[k] for k in kept], [found[k] for k in kept])
        out: list[FrameFaces | None] = [None] * len(items)
        for k, ff in zip(kept, gated):
            out[k] = ff
        return out

    def _gated(self, items: list, found: list[FrameFaces]) -> list[FrameFaces]:
        """``found`` with the exposure gate's notes (core.shot.gate_frame) on each face."""
        out = []
        for x, ff in zip(items, found):
            # core.shot.gate_frame reads numpy pixels: a view on the CPU, one copy from another device
            out.append(gate_frame(ff, x[:3].permute(1, 2, 0).cpu().numpy(), self.options.gate) if ff.faces else ff)
        return out

    def analyse_sequence(self, frames, numbers: Sequence[int]) -> list[FrameFaces]:
        """Frames held in memory as ONE shot, in order (``numbers`` increasing, ``numbers[0]`` the shot's first
        frame): per-frame faces with
        the keyframe rule and tracking between keyframes (module docstring), the same results as
        :meth:`analyse` on a source of these frames. Convention as :meth:`analyse_frames` (frames (H, W, C)
        numpy or (C, H, W) torch, one size per batch, any device; no display window)."""
        items = list(frames)
        numbers = [int(n) for n in numbers]
        if len(items) != len(numbers):
            raise InputError(f"{len(numbers)} frame numbers for {len(items)} frames")
        if any(b <= a for a, b in zip(numbers, numbers[1:])):
            raise InputError("frame numbers must increase (one shot, in order)")
        every = self.options.detect_every if self.tracking else 1
        prev = {n: (None if is_keyframe(n, numbers[i - 1] if i else None, every) else numbers[i - 1])
                for i, n in enumerate(numbers)}
        known: dict[int, FrameFaces] = {}
        out = []
        for frame, ff in self._compute((Frame(number=n, pixels=p, info=None, source=n)
                                        for n, p in zip(numbers, items)), prev.get, known):
            known[frame.number] = ff
            out.append(ff)
        return out

    def _compute(self, frames: Iterable[Frame], previous: Callable[[int], int | None],
                 known: dict[int, FrameFaces]) -> Iterator[tuple[Frame, FrameFaces]]:
        """Each frame's faces (display-window pixels, missing-frame notes), in order. Keyframes (previous(n) is
        None) run the full chain in batches of frames; a tracked frame runs after everything before it, from
        ``known[previous(n)]`` (the caller stores every result there), falling back to the full chain when its
        faces are lost."""
        batch: list[Frame] = []

        def finish(frame: Frame, ff: FrameFaces) -> tuple[Frame, FrameFaces]:
            ff = to_display_window(ff, frame)
            if frame.filled:
                ff = ff.replace(faces=tuple(f.replace(notes=f.notes + (f"gate=missing-frame:{frame.source}",))
                                            for f in ff.faces))
            return frame, ff

        def flush() -> Iterator[tuple[Frame, FrameFaces]]:
            if batch:
                found = self.analyse_frames([f.pixels for f in batch], [f.number for f in batch])
                done = list(batch)
                batch.clear()
                for frame, ff in zip(done, found):
                    yield finish(frame, ff)

        for frame in frames:
            prev = previous(frame.number)
            if prev is None:
                if batch and (frame.pixels.shape != batch[0].pixels.shape
                              or len(batch) >= self._batch_size(batch[0].pixels)):
                    yield from flush()
                batch.append(frame)
                continue
            yield from flush()  # a tracked frame needs its predecessor's result first
            dx, dy = window_offset(frame)
            before = known[prev].shifted(-dx, -dy)
            ff = self.track_frames([frame.pixels], [frame.number], [before])[0] if len(before) else None
            if ff is None:
                log.debug("frame %d: tracking lost (or no face in frame %d): full chain", frame.number, prev)
                ff = self.analyse_frames([frame.pixels], [frame.number])[0]
            yield finish(frame, ff)
        yield from flush()

    def _plan(self, source: Source) -> tuple[Source, _ShotPlan]:
        """(the shot ``source`` belongs to, its tracking plan): the whole shot in a chunk that knows it
        (Source.whole()), else the source itself."""
        shot = source.whole()
        if shot is None or not set(source.frames) <= set(shot.frames):
            shot = source
        return shot, _ShotPlan(shot, self.options.detect_every, self.tracking)

    def _cache(self, source: Source, cache_root: str | Path) -> FrameCache:
        return FrameCache(cache_root, {**self.options.key_material(), "source": source_identity(source)})

    def cached(self, source: Source, cache_root: str | Path,
               known: dict[int, FrameFaces] | None = None) -> list[FrameFaces] | None:
        """Every frame of ``source`` from the cache, or None at the first frame that is not in it (reads the
        cache entries and hashes the input files; decodes nothing). ``known``: frames already analysed (or read)
        by this analyser from the same shot, taken as they are instead of read again."""
        cache = self._cache(source, cache_root)
        _, plan = self._plan(source)
        known = known or {}
        out = []
        for number in source.frames:
            hit = known.get(number)
            if hit is None:
                hit = cache.get(number, plan.identity(number))
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
        frame, in order.

        With tracking (module docstring) a frame between keyframes needs its predecessor's result: from the
        cache, or computed first (earlier frames of its keyframe group, decoded from the whole shot where the
        source is a chunk of one; neither returned nor cached: the cache gets the source's frames, as a chunk
        writes its own frames). Keyframes batch across frames; tracked frames run one at a time, in order."""
        cache = self._cache(source, cache_root) if cache_root is not None else None
        shot, plan = self._plan(source)
        known: dict[int, FrameFaces] = {}
        out: list[FrameFaces | None] = []
        todo = []
        for number in source.frames:
            hit = cache.get(number, plan.identity(number)) if cache else None
            out.append(hit)
            if hit is None:
                todo.append(number)
            else:
                known[number] = hit
        if not todo:
            return out
        pos = {f: i for i, f in enumerate(source.frames)}
        compute = set(todo)
        for number in todo:  # tracked frames: back through the group to a known (or cached) predecessor
            prev = plan.previous(number)
            while prev is not None and prev not in known and prev not in compute:
                hit = cache.get(prev, plan.identity(prev)) if cache else None
                if hit is not None:
                    known[prev] = hit
                    break
                compute.add(prev)
                prev = plan.previous(prev)
        extra = len(compute) - len(todo)
        if extra:
            log.info("analysing %d earlier frame(s) of the keyframe groups too (tracking follows them)", extra)
        sub = shot.subset(compute)
        # the whole shot's frames are read outside the chunk's window (only the reads: on_frame still sees it)
        frames = _unwindowed(sub.frames_iter) if shot is not source else sub.frames_iter()
        with progress.task(len(compute), "analyse frames") as bar:
            for frame, ff in self._compute(frames, plan.previous, known):
                known[frame.number] = ff
                if frame.number in pos:  # the source's own frames only: a chunk writes what it reads
                    if cache:
                        cache.put(frame.number, plan.identity(frame.number), ff)
                    out[pos[frame.number]] = ff
                    if on_frame is not None:
                        on_frame(frame, ff)
                bar.advance()
        return out


def _unwindowed(frames: Callable[[], Iterable[Frame]]) -> Iterator[Frame]:
    """The frames of ``frames()``, each read inside core.frame_window.no_window() (a context variable, so it is
    set around each step of the reader, never across the caller's code between frames)."""
    from ..core.frame_window import no_window

    with no_window():
        it = iter(frames())
    while True:
        with no_window():
            frame = next(it, None)
        if frame is None:
            return
        yield frame


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
        every = (analyser.cached(whole, cache_root, dict(zip(source.frames, frames))) if cache_root is not None
                 else None)
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
