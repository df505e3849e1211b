"""``facegraph analyse``: a shot from disk to tracking data, stabilised crops and previews, streamed.

Pass 1 analyses frames one at a time (cached on disk), pass 2 works on the small records (tracks, gates,
smoothing) and writes the export, pass 3 reads the frames again to write the main track's stabilised crops,
a landmark-overlay movie and a contact sheet. Nothing holds the sequence in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..core import progress
from ..core.align import warp_to_crop
from ..core.colour import ViewOptions
from ..core.io.frames import SequenceWriter
from ..core.io.images import write_display_png
from ..core.io.source import open_source
from ..core.io.video import VideoWriter
from ..core.preview import contact_sheet, draw_faces, to_display
from ..core.shot import SmoothOptions, scaled_alignment, write_export
from ..models.shot import AnalysisOptions, analyse_shot
from ..models.store import default_cache_dir


def analyse_to_disk(input_path: str, out: str | Path, *, frames: Sequence[int] | None = None,
                    missing: str = "hold", smooth: str = "rts", strength: float = 0.0, detector: str = "yunet_n",
                    landmarks: str = "mediapipe_landmarker_v2", crops: bool = True, crop_size: int = 512,
                    cache: bool = True, start_frame: int = 1001, fps: float | None = None, preview: bool = True,
                    device: str = "auto") -> Iterator[str]:
    out = Path(out)
    src = open_source(input_path, frames, missing=missing, start_frame=start_frame)
    src.fps = fps or src.fps or 24.0
    opts = AnalysisOptions(detector=detector, landmarks=landmarks, device=device)
    root = default_cache_dir() / "shots" if cache else None
    result = analyse_shot(src, opts, SmoothOptions(method=smooth, fps=src.fps).with_strength(strength), cache_root=root)
    filled = sum(sum(t.filled) for t in result.tracks)
    yield (f"analysed {len(result.frames)} frames ({src.frames[0]}-{src.frames[-1]}): {len(result.tracks)} track(s), "
           f"{filled} filled frame(s), smoothing {smooth}" + (f"; missing input frames {list(src.missing)}" if src.missing else ""))
    size = result.frames[0].size
    files = write_export(result, out / "tracking", crop_size=(crop_size, crop_size), plate_size=size)
    yield f"tracking export: {out / 'tracking'} ({len(files)} files)"
    if not (crops or preview) or not result.tracks:
        if not result.tracks:
            yield "no face was tracked: no crops or previews"
        return
    main = result.main_track()
    where = dict(zip(main.frames, main.alignments))
    faces_at = {ff.frame: ff for ff in result.frames}
    writer = SequenceWriter(out / "crops" / "crop.####.exr", mode="overwrite", pixel_type="half") if crops else None
    picks = set(np.unique(np.linspace(0, len(src.frames) - 1, min(8, len(src.frames))).round().astype(int)).tolist())
    tiles, labels = [], []
    movie = VideoWriter(out / "overlay.mp4", src.fps, overwrite=True) if preview else None
    try:
        with progress.task(len(src.frames), "crops and previews") as bar:
            for i, frame in enumerate(src.frames_iter()):
                a = where.get(frame.number)
                if writer is not None and a is not None:
                    writer.write(frame.number, warp_to_crop(frame.pixels[..., :3], scaled_alignment(a, (crop_size, crop_size))))
                if movie is not None:
                    shown = draw_faces(to_display(frame.pixels, ViewOptions(exposure="none")),
                                       faces_at[frame.number].faces)
                    movie.write(_srgb_to_linear8(shown))
                    if i in picks:
                        tiles.append(shown)
                        labels.append(str(frame.number))
                bar.advance()
        if movie is not None:
            movie.close()
    except BaseException:
        if movie is not None:
            movie.abort()
        raise
    if writer is not None:
        yield f"stabilised crops (track {main.track_id}): {out / 'crops' / 'crop.####.exr'} ({len(writer.written)} frames)"
    if preview:
        write_display_png(out / "contact_sheet.png", contact_sheet(tiles, labels=labels, tile_width=320))
        yield f"previews: {out / 'overlay.mp4'}, {out / 'contact_sheet.png'}"


def _srgb_to_linear8(rgb8: np.ndarray) -> np.ndarray:
    """A display picture back to linear so VideoWriter's sRGB view reproduces it exactly."""
    from ..core.colour import srgb_to_linear

    return srgb_to_linear(rgb8.astype(np.float32) / 255.0)
