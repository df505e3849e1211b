"""Generate example_workflows/<name>.jpg, the thumbnails ComfyUI's template browser shows beside each template,
by running each shipped template headless on the built-in sample plate (plugin/demo.py):

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python tests/golden/make_thumbnails.py
"""
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facegraph.core.io.images import read_image, write_image
from facegraph.plugin.cli import main
from facegraph.plugin.demo import write_sample_plate, write_sample_source
from facegraph.plugin.runner import run_file

WF = Path(__file__).resolve().parents[2] / "example_workflows"
SIZE = (512, 256)  # ComfyUI's template cards are wide


def thumb(png: Path, name: str) -> None:
    img = cv2.imread(str(png))
    h, w = img.shape[:2]
    s = min(SIZE[0] / w, SIZE[1] / h)
    img = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    card = np.full((SIZE[1], SIZE[0], 3), 24, np.uint8)
    y, x = (SIZE[1] - img.shape[0]) // 2, (SIZE[0] - img.shape[1]) // 2
    card[y:y + img.shape[0], x:x + img.shape[1]] = img
    cv2.imwrite(str(WF / f"{name}.jpg"), card, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(WF / f"{name}.jpg")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        numbers = write_sample_plate(d / "plate" / "plate.####.exr", 8)
        plate, frames = str(d / "plate" / "plate.####.exr"), f"{numbers[0]}-{numbers[-1]}"
        run_file(WF / "analyse_shot.json", {"1.path": plate, "1.frames": frames, "3.path": plate, "3.frames": frames,
                                            "2.folder": str(d / "tracking"), "5.path": str(d / "crops" / "crop.####.exr"),
                                            "7.path": str(d / "sheet.png")})
        thumb(d / "sheet.png", "analyse_shot")
        src = write_sample_source(d / "source.exr")
        run_file(WF / "face_replace.json", {"1.path": plate, "1.frames": frames, "2.folder": str(d / "tracking"),
                                            "3.source": str(src), "3.plate": plate, "3.frames": frames,
                                            "3.output": str(d / "r" / "r.####.exr"), "3.preview_path": str(d / "r.png"),
                                            "4.plate": plate, "4.frames": frames, "4.folder": str(d / "f3d")})
        thumb(d / "r.png", "face_replace")
        decal = np.zeros((512, 512, 4), np.float32)
        yy, xx = np.mgrid[0:512, 0:512] / 512.0
        stripes = ((xx * 12).astype(int) % 2 == 0) & (yy > 0.1) & (yy < 0.4)
        decal[stripes] = (0.05, 0.4, 1.2, 1.0)
        write_image(d / "decal.exr", decal, pixel_type="float")
        run_file(WF / "face_paint.json", {"1.path": plate, "1.frames": frames, "2.decal": str(d / "decal.exr"),
                                          "2.plate": plate, "2.frames": frames, "2.output": str(d / "p" / "p.####.exr"),
                                          "2.preview_path": str(d / "p.png")})
        thumb(d / "p.png", "face_paint")
        assert main(["-q", "analyse", plate, "--out", str(d / "shot"), "--no-preview"]) == 0
        for c in sorted((d / "shot" / "crops").glob("crop.*.exr")):
            px, _ = read_image(c)
            px[..., 1:] *= 0.4  # a "processed" crop: graded red
            write_image(d / "graded" / c.name, px, pixel_type="float")
        run_file(WF / "unstabilise.json", {"1.path": str(d / "shot" / "tracking"),
                                           "2.crops": str(d / "graded" / "crop.####.exr"), "2.plate": plate,
                                           "2.frames": frames, "2.output": str(d / "u" / "u.####.exr"),
                                           "2.preview_path": str(d / "u.png")})
        thumb(d / "u.png", "unstabilise")
