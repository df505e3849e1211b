"""EXR read/write throughput, facegraph vs bare OpenImageIO calls, 1080p and 4K RGBA half.

Baseline: the same OIIO calls without facegraph (ImageInput.read_image / ImageOutput.write_image into a
fixed path). facegraph adds channel lookup by name, the NaN/Inf check, metadata, and the atomic temp+rename.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facegraph.core.io.images import read_image, write_image

from .common import interleaved, machine, table


def plate(w: int, h: int) -> np.ndarray:
    """A realistic linear RGBA frame: the astronaut photo scaled up, with film-like grain, alpha ramp."""
    from facegraph.plugin.demo import sample_photo
    from facegraph.core.colour import srgb_to_linear

    photo = srgb_to_linear(sample_photo().astype(np.float32) / 255)
    rgb = cv2.resize(photo, (w, h), interpolation=cv2.INTER_CUBIC)
    rgb = rgb * (1 + 0.02 * np.random.default_rng(0).standard_normal(rgb.shape).astype(np.float32))
    alpha = np.clip(np.linspace(-0.2, 1.2, w, dtype=np.float32)[None, :].repeat(h, 0), 0, 1)[..., None]
    return np.concatenate([rgb * alpha, alpha], -1).astype(np.float16).astype(np.float32)


def bare_write(path: str, px: np.ndarray, compression: str) -> None:
    import OpenImageIO as oiio

    spec = oiio.ImageSpec(px.shape[1], px.shape[0], 4, oiio.HALF)
    spec.channelnames = ("R", "G", "B", "A")
    spec.alpha_channel = 3
    spec.attribute("compression", compression)
    out = oiio.ImageOutput.create(path)
    out.open(path, spec)
    out.write_image(px)
    out.close()


def bare_read(path: str) -> np.ndarray:
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    px = inp.read_image(0, 0, 0, 4, oiio.FLOAT)
    inp.close()
    return px


def main(argv=None) -> str:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, (w, h) in {"1080p": (1920, 1080), "4K": (3840, 2160)}.items():
            px = plate(w, h)
            for comp in ("zip", "piz", "dwaa"):
                bare_path, fg_path = str(Path(d) / "bare.exr"), str(Path(d) / "fg.exr")
                w_t = interleaved({
                    "bare": lambda: bare_write(bare_path, px, comp),
                    "facegraph": lambda: write_image(fg_path, px, pixel_type="half", compression=comp,
                                                     overwrite=True),
                }, rounds=args.rounds)
                r_t = interleaved({
                    "bare": lambda: bare_read(bare_path),
                    "facegraph": lambda: read_image(fg_path),
                }, rounds=args.rounds)
                rows.append([name, comp, f"{w_t['bare'] * 1e3:.0f}", f"{w_t['facegraph'] * 1e3:.0f}",
                             f"{w_t['facegraph'] / w_t['bare']:.2f}", f"{r_t['bare'] * 1e3:.0f}",
                             f"{r_t['facegraph'] * 1e3:.0f}", f"{r_t['facegraph'] / r_t['bare']:.2f}"])
    text = table(["size", "compression", "write bare ms", "write facegraph ms", "ratio", "read bare ms",
                  "read facegraph ms", "ratio"], rows)
    return f"RGBA half, median of {args.rounds} interleaved rounds; {machine()}\n\n{text}"


if __name__ == "__main__":
    print(main())
