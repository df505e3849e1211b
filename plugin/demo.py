"""The README's main job on the built-in sample, run headless through the same graph files ComfyUI's template
browser shows: the analyse-shot graph (example_workflows/analyse_shot.json) and then face replace
(example_workflows/face_replace.json).

The sample is a short linear EXR plate made from a real face photo that an installed package provides (the
public-domain astronaut portrait shipped inside scikit-image), moved by known smooth motion with exposure
changes. The first graph tracks and smooths the face, exports the tracking data, writes a stabilised face-crop
EXR sequence and a contact sheet of the plate with landmarks. The second puts a source face onto every frame
(UV texture, one colour match for the shot, Poisson blend) and writes the EXR result and a before / after
sheet. The built-in source is the same portrait mirrored and graded cold (a different-looking face in
different light, so the colour match and the blend have work to do); ``--source`` takes any photo.
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
WORKFLOWS = Path(__file__).resolve().parents[1] / "example_workflows"
WORKFLOW = WORKFLOWS / "analyse_shot.json"
REPLACE_WORKFLOW = WORKFLOWS / "face_replace.json"
#: the built-in source's grade: linear RGB gains (a cold, darker light than the plate's)
SOURCE_GRADE = (0.55, 0.75, 1.1)


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
    with writer:
        for n, img in zip(numbers, render_plate(photo, motion, SAMPLE_SIZE)):
            writer.write(n, img)
    return numbers


def write_sample_source(path: str | Path) -> Path:
    """The built-in source photo (linear EXR): the sample portrait mirrored and graded (kept if present)."""
    from ..core.colour import srgb_to_linear
    from ..core.io.images import write_image

    path = Path(path)
    if not path.exists():
        lin = srgb_to_linear(sample_photo()[:, ::-1].astype(np.float32) / 255.0)
        write_image(path, (lin * np.asarray(SOURCE_GRADE, np.float32)).astype(np.float32), pixel_type="half")
    return path


def run_demo(out_dir: str | Path, frames: int = 24, source: str | Path | None = None) -> Iterator[str]:
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
    src = Path(source) if source else write_sample_source(out / "source" / "source.exr")
    run = run_file(REPLACE_WORKFLOW, {
        "1.path": str(plate), "1.frames": frame_range, "2.folder": str(out / "tracking"),
        "3.source": str(src), "3.plate": str(plate), "3.frames": frame_range,
        "4.plate": str(plate), "4.frames": frame_range, "4.folder": str(out / "face3d"),
        "3.output": str(out / "replace" / "replace.####.exr"), "3.preview_path": str(out / "before_after.png")})
    yield f"graph {REPLACE_WORKFLOW.name}: {len(run.order)} nodes in {sum(run.seconds.values()):.1f} s"
    yield f"face replace ({src.name} onto the plate): {run.outputs['3'][2]}"
    yield f"result: {out / 'replace' / 'replace.####.exr'}"
    yield f"3D face: {out / 'face3d'} (fit.json, mesh/face.####.obj, texture.exr); tracking.json carries the fit"
    yield f"picture (before / after): {out / 'before_after.png'}"
