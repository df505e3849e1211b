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
        # every template through its named parameters (example_workflows/*.json extra.facegraph.parameters)
        run_file(WF / "analyse_shot.json", {"input": plate, "frames": frames, "tracking": str(d / "tracking"),
                                            "output": str(d / "crops" / "crop.####.exr"),
                                            "contact_sheet": str(d / "sheet.png")})
        thumb(d / "sheet.png", "analyse_shot")
        run_file(WF / "landmark_preview.json", {"input": plate, "frames": frames,
                                                "output": str(d / "lm" / "lm.####.exr"),
                                                "contact_sheet": str(d / "lm.png")})
        thumb(d / "lm.png", "landmark_preview")
        run_file(WF / "stabilise.json", {"tracking": str(d / "tracking"), "input": plate, "frames": frames,
                                         "output": str(d / "st" / "st.####.exr"), "crop_size": 256})
        tiles = [read_image(p)[0] for p in sorted((d / "st").glob("st.*.exr"))[:4]]
        strip = np.concatenate([np.clip(t[..., :3], 0, 1) ** (1 / 2.2) for t in tiles], axis=1)
        cv2.imwrite(str(d / "st.png"), (strip[..., ::-1] * 255 + 0.5).astype(np.uint8))
        thumb(d / "st.png", "stabilise")
        src = write_sample_source(d / "source.exr")
        run_file(WF / "face_replace.json", {"input": plate, "frames": frames, "tracking": str(d / "tracking"),
                                            "source": str(src), "output": str(d / "r" / "r.####.exr"),
                                            "preview": str(d / "r.png"), "face3d": str(d / "f3d")})
        thumb(d / "r.png", "face_replace")
        decal = np.zeros((512, 512, 4), np.float32)
        yy, xx = np.mgrid[0:512, 0:512] / 512.0
        stripes = ((xx * 12).astype(int) % 2 == 0) & (yy > 0.1) & (yy < 0.4)
        decal[stripes] = (0.05, 0.4, 1.2, 1.0)
        write_image(d / "decal.exr", decal, pixel_type="float")
        run_file(WF / "face_paint.json", {"input": plate, "frames": frames, "decal": str(d / "decal.exr"),
                                          "output": str(d / "p" / "p.####.exr"), "preview": str(d / "p.png")})
        thumb(d / "p.png", "face_paint")
        assert main(["-q", "analyse", plate, "--out", str(d / "shot"), "--no-preview"]) == 0
        for c in sorted((d / "shot" / "crops").glob("crop.*.exr")):
            px, _ = read_image(c)
            px[..., 1:] *= 0.4  # a "processed" crop: graded red
            write_image(d / "graded" / c.name, px, pixel_type="float")
        run_file(WF / "unstabilise.json", {"tracking": str(d / "shot" / "tracking"),
                                           "crops": str(d / "graded" / "crop.####.exr"), "input": plate,
                                           "frames": frames, "output": str(d / "u" / "u.####.exr"),
                                           "preview": str(d / "u.png")})
        thumb(d / "u.png", "unstabilise")
