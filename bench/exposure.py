"""Issue 3: does detection survive -4 .. +4 stops of exposure on real faces? (swept to +-6 to show the limits)

Each still in ../shared/data/stills is sRGB-decoded to linear, scaled by 2^stops (a plate shot under / over
exposed), then shown to the default detector two ways: (a) a plain sRGB conversion clipped to [0, 1] (what
tools that quantise to 8-bit do) and (b) facegraph's network_view (robust auto exposure, then sRGB). Baseline:
faces found at 0 stops with the plain conversion, same run."""
from __future__ import annotations

import numpy as np

from facegraph.core.colour import ViewOptions, linear_to_srgb, network_view
from facegraph.core.detection import DetectOptions, box_iou
from facegraph.core.io.images import read_image
from facegraph.models.loader import load_model

from .common import DATA, machine, table

STOPS = (-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6)


def main(argv=None) -> str:
    det = load_model("yunet_n")
    stills = sorted((DATA / "stills").glob("*.jpg"))
    reference = {}
    found = {("plain", s): 0 for s in STOPS} | {("facegraph", s): 0 for s in STOPS}
    for path in stills:
        px, _ = read_image(path)
        lin = px[..., :3]
        ref = det.detect([np.clip(linear_to_srgb(lin), 0, 1)], DetectOptions())[0]
        if not len(ref):
            continue
        reference[path.name] = ref.boxes[0]
        for s in STOPS:
            plate = lin * np.float32(2.0 ** s)
            for kind, view in (("plain", np.clip(linear_to_srgb(plate), 0, 1)),
                               ("facegraph", network_view(plate, options=ViewOptions(exposure="auto_frame")))):
                d = det.detect([view], DetectOptions())[0]
                if len(d) and box_iou(ref.boxes[:1], d.boxes).max() >= 0.5:
                    found[(kind, s)] += 1
    n = len(reference)
    rows = [[kind] + [f"{found[(kind, s)]}/{n}" for s in STOPS] for kind in ("plain", "facegraph")]
    return (f"{machine()}; YuNet (yunet_n), score >= 0.6; a face counts when its box overlaps the 0-stop box "
            f"(IoU >= 0.5); {n} stills with a face at 0 stops\n\n" +
            table(["view fed to the detector"] + [f"{s:+d}" for s in STOPS], rows))


if __name__ == "__main__":
    print(main())
