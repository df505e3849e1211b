"""``facegraph analyse``: a shot from disk to tracking data, stabilised crops and previews, streamed.

Pass 1 analyses frames one at a time (cached on disk), pass 2 works on the small records (tracks, gates,
smoothing) and writes the export, pass 3 reads the frames again to write the main track's stabilised crops,
a landmark-overlay movie and a contact sheet. Nothing holds the sequence in memory.
"""
from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..core import progress
from ..core.align import crop_step
from ..core.colour import ViewOptions
from ..core.fsutil import OutputFolder
from ..core.shotcache import stable_hash
from ..core.io.frames import SequenceInfo, SequenceWriter
from ..core.io.images import write_display_png
from ..core.io.source import open_source
from ..core.io.stream import open_stream
from ..core.io.video import VideoWriter
from ..core.preview import contact_sheet, draw_step
from ..core.shot import SmoothOptions, scaled_alignment, write_export
from ..models.shot import AnalysisOptions, analyse_shot
from ..models.store import shot_cache_dir


def analyse_to_disk(input_path: str, out: str | Path, *, frames: Sequence[int] | None = None,
                    missing: str = "hold", smooth: str = "rts", strength: float = 0.0, detector: str = "yunet_n",
                    landmarks: str = "mediapipe_landmarker_v2", crops: bool = True, crop_size: int = 512,
                    cache: bool = True, start_frame: int = 1001, fps: float | None = None, preview: bool = True,
                    device: str = "auto", layer: str = "", nonfinite: str = "error",
                    overwrite: bool = False, detect_every: int | None = None) -> Iterator[str]:
    """Analyse ``input_path`` into the folder ``out``. Refuses a non-empty ``out`` unless ``overwrite`` (then
    what the previous run wrote there is removed first: see core.fsutil.OutputFolder) and never writes over
    an input file. Every check that can fail cheaply (frame headers, output folder) runs before any work."""
    out = Path(out)
    src = open_source(input_path, frames, missing=missing, start_frame=start_frame, layer=layer, nonfinite=nonfinite)
    src.fps = fps or src.fps or 24.0
    planned = ["tracking/tracking.json", "tracking/npz/frame.####.npz"]
    planned += ["crops/crop.####.exr"] if crops else []
    planned += ["overlay.mp4", "contact_sheet.png"] if preview else []
    folder = OutputFolder(out, planned)
    removed = folder.prepare(overwrite=overwrite, inputs=src.input_files())
    if removed:
        yield f"removed {len(removed)} file(s) of the previous run in {out}"
    try:
        yield from _analyse(src, out, folder, missing=missing, smooth=smooth, strength=strength, detector=detector,
                            landmarks=landmarks, crops=crops, crop_size=crop_size, cache=cache, preview=preview,
                            device=device, detect_every=detect_every)
    finally:
        folder.finish()


def _analyse(src, out: Path, folder: OutputFolder, *, missing, smooth, strength, detector, landmarks, crops,
             crop_size, cache, preview, device, detect_every=None) -> Iterator[str]:
    opts = AnalysisOptions(detector=detector, landmarks=landmarks, device=device)
    if detect_every is not None:
        opts = dataclasses.replace(opts, detect_every=int(detect_every))
    root = shot_cache_dir() if cache else None
    result = analyse_shot(src, opts, SmoothOptions(method=smooth, fps=src.fps).with_strength(strength), cache_root=root)
    filled = sum(sum(t.filled) for t in result.tracks)
    yield (f"analysed {len(result.frames)} frames ({src.frames[0]}-{src.frames[-1]}): {len(result.tracks)} track(s), "
           f"{filled} filled frame(s), smoothing {smooth}" + (f"; missing input frames {list(src.missing)}" if src.missing else ""))
    size = result.frames[0].size
    from ..models.morphable import canonical_head

    files = write_export(result, out / "tracking", crop_size=(crop_size, crop_size), plate_size=size,
                         head=canonical_head())
    folder.add(*files)
    yield f"tracking export: {out / 'tracking'} ({len(files)} files)"
    if not (crops or preview) or not result.tracks:
        if not result.tracks:
            yield "no face was tracked: no crops or previews"
        return
    main = result.main_track()
    where = {n: scaled_alignment(a, (crop_size, crop_size)) for n, a in zip(main.frames, main.alignments)}
    faces_at = {ff.frame: ff for ff in result.frames}
    # the folder was emptied of earlier results by prepare(): nothing is ever overwritten here
    writer = SequenceWriter(out / "crops" / "crop.####.exr", mode="error", pixel_type="half",
                            protect=src.input_files(), graph_hash=stable_hash(result.params, 16)) if crops else None
    picks = set(progress.preview_picks(len(src.frames), 8))
    tiles, labels = [], []
    movie = VideoWriter(out / "overlay.mp4", src.fps) if preview else None
    # the same per-frame steps as the streamed template's Track Crops / Draw Landmarks nodes (nodes/stream.py)
    crop = crop_step(where, (crop_size, crop_size))
    draw = draw_step(faces_at, ViewOptions(exposure="none"))
    stream = open_stream(src, SequenceInfo(pattern=src.path, frames=tuple(src.frames)))
    index = {n: i for i, n in enumerate(src.frames)}
    try:
        with progress.task(len(src.frames), "crops and previews") as bar:
            for chunk in stream.chunks():
                if writer is not None:
                    tracked = [i for i, n in enumerate(chunk.numbers) if n in where]
                    if tracked:
                        cut = crop(chunk.take(tracked))
                        for n, px in zip(cut.numbers, cut.images[:, :3].permute(0, 2, 3, 1).numpy()):
                            writer.write(n, px)
                if movie is not None:
                    shown = draw(chunk).images.permute(0, 2, 3, 1).numpy()
                    for n, pic in zip(chunk.numbers, shown):
                        pic8 = (pic * 255.0 + 0.5).astype(np.uint8)  # draw_step's pictures are uint8 / 255
                        movie.write(_srgb_to_linear8(pic8))
                        if index[n] in picks:
                            tiles.append(pic8)
                            labels.append(str(n))
                bar.advance(len(chunk))
        if movie is not None:
            folder.add(movie.close())
    except BaseException:
        if movie is not None:
            movie.abort()
        raise
    if writer is not None:
        writer.close()
        folder.add(*writer.written)
        yield f"stabilised crops (track {main.track_id}): {out / 'crops' / 'crop.####.exr'} ({len(writer.written)} frames)"
    if preview:
        folder.add(write_display_png(out / "contact_sheet.png", contact_sheet(tiles, labels=labels, tile_width=320)))
        yield f"previews: {out / 'overlay.mp4'}, {out / 'contact_sheet.png'}"


def _srgb_to_linear8(rgb8: np.ndarray) -> np.ndarray:
    """A display picture back to linear so VideoWriter's sRGB view reproduces it exactly."""
    from ..core.colour import srgb_to_linear

    return srgb_to_linear(rgb8.astype(np.float32) / 255.0)
