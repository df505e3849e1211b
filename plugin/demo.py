"""The README's main job on the built-in sample: the analyse-shot graph (example_workflows/analyse_shot.json,
the same file ComfyUI's template browser shows), run headless.

The sample is a short linear EXR plate made from a real face photo that an installed package provides (the
public-domain astronaut portrait shipped inside scikit-image), moved by known smooth motion with exposure
changes. The graph tracks and smooths the face, exports the tracking data, writes a stabilised face-crop EXR
sequence and a contact sheet of the plate with landmarks.
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Iterator

import numpy as np

from ..core.io.frames import SequenceWriter
from ..core.io.images import read_image
from ..core.synthetic import render_plate, smooth_motion
from .runner import run_file

log = logging.getLogger(__name__)

SAMPLE_FIRST_FRAME = 1001
SAMPLE_SIZE = (640, 480)
WORKFLOW = Path(__file__).resolve().parents[1] / "example_workflows" / "analyse_shot.json"


def sample_photo() -> np.ndarray:
    """The astronaut portrait (NASA, public domain) from scikit-image's bundled data, (512, 512, 3) uint8."""
    ref = resources.files("skimage.data").joinpath("astronaut.png")
    with resources.as_file(ref) as path:
        pixels, _ = read_image(path)  # sRGB-decoded to linear on read
    from ..core.colour import linear_to_srgb

    return (np.clip(linear_to_srgb(pixels[..., :3]), 0, 1) * 255 + 0.5).astype(np.uint8)


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
    numbers = write_sample_plate(plate, frames)
    yield f"sample plate: {plate} ({numbers[0]}-{numbers[-1]}, {SAMPLE_SIZE[0]}x{SAMPLE_SIZE[1]}, half float, linear)"
    frame_range = f"{numbers[0]}-{numbers[-1]}"
    run = run_file(WORKFLOW, {
        "1.path": str(plate), "1.frames": frame_range, "3.path": str(plate), "3.frames": frame_range,
        "2.folder": str(out / "tracking"), "5.path": str(out / "crops" / "crop.####.exr"),
        "7.path": str(out / "contact_sheet.png")})
    yield f"graph {WORKFLOW.name}: {len(run.order)} nodes in {sum(run.seconds.values()):.1f} s"
    summary = run.outputs["1"][3]
    yield f"analysis: {summary}"
    yield f"tracking export: {out / 'tracking'} (tracking.json, npz/, track_*.chan)"
    yield f"stabilised crops: {out / 'crops' / 'crop.####.exr'}"
    yield f"picture: {out / 'contact_sheet.png'}"
