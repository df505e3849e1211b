"""The README's main job on the built-in sample.

The sample is a short linear EXR plate made from a real face photo that an installed package provides (the
public-domain astronaut portrait shipped inside scikit-image), moved by known smooth motion with exposure
changes. The demo runs the template graph on it headless and writes the results plus a picture.
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.io.frames import SequenceWriter, iter_frames
from ..core.io.images import read_image, write_display_png
from ..core.io.sequence import SequencePattern
from ..core.preview import contact_sheet, to_display
from ..core.synthetic import Motion, render_plate, smooth_motion
from .runner import load_graph_file, Runner

log = logging.getLogger(__name__)

SAMPLE_FIRST_FRAME = 1001
SAMPLE_SIZE = (640, 480)
TEMPLATES = Path(__file__).with_name("templates")


def sample_photo() -> np.ndarray:
    """The astronaut portrait (NASA, public domain) from scikit-image's bundled data, (512, 512, 3) uint8."""
    ref = resources.files("skimage.data").joinpath("astronaut.png")
    with resources.as_file(ref) as path:
        pixels, _ = read_image(path)  # sRGB-decoded to linear on read
    from ..core.colour import linear_to_srgb

    return (np.clip(linear_to_srgb(pixels[..., :3]), 0, 1) * 255 + 0.5).astype(np.uint8)


def sample_motion(frames: int) -> Motion:
    photo = sample_photo()
    return smooth_motion(frames, (photo.shape[1], photo.shape[0]), SAMPLE_SIZE)


def write_sample_plate(pattern: str | Path, frames: int = 24) -> list[int]:
    """Write the sample plate (resumable); returns its frame numbers."""
    photo = sample_photo()
    motion = smooth_motion(frames, (photo.shape[1], photo.shape[0]), SAMPLE_SIZE)
    writer = SequenceWriter(str(pattern), mode="resume", pixel_type="half", compression="zip")
    numbers = list(range(SAMPLE_FIRST_FRAME, SAMPLE_FIRST_FRAME + frames))
    if writer.first_missing(numbers) is None:
        return numbers
    for n, img in zip(numbers, render_plate(photo, motion, SAMPLE_SIZE)):
        writer.write(n, img)
    return numbers


def run_demo(out_dir: str | Path, frames: int = 24) -> Iterator[str]:
    out = Path(out_dir)
    plate = out / "plate" / "plate.####.exr"
    result = out / "result" / "result.####.exr"
    numbers = write_sample_plate(plate, frames)
    yield f"sample plate: {plate} ({numbers[0]}-{numbers[-1]}, {SAMPLE_SIZE[0]}x{SAMPLE_SIZE[1]}, half float)"
    graph, defaults = load_graph_file(TEMPLATES / "demo.yaml")
    run = Runner().run(graph, {**defaults, "plate": str(plate), "out": str(result)})
    yield f"graph: {len(run.order)} nodes in {sum(run.seconds.values()):.1f} s -> {result}"
    picks = numbers[:: max(1, len(numbers) // 8)][:8]
    tiles = [to_display(f.pixels) for f in iter_frames(SequencePattern.parse(str(result)), picks)]
    sheet = out / "contact_sheet.png"
    write_display_png(sheet, contact_sheet(tiles, labels=[str(p) for p in picks]))
    yield f"picture: {sheet}"
