"""Calibrate core constants MESH_BOX_PER_EYE_MOUTH / MESH_CENTRE_ALONG: the MediaPipe mesh was trained on
crops made from BlazeFace boxes, so a detector-independent crop rule is fitted from 5 keypoints to BlazeFace
(full range) boxes on *unlabelled* footage (../shared/data stills and video frames): no annotated image is
used, so the landmark evaluation stays clean.

    FACEGRAPH_MODEL_MIRROR=../shared/models .venv/bin/python tests/golden/calibrate_mesh_roi.py
"""
import glob
from pathlib import Path

import numpy as np

from facegraph.core.colour import ViewOptions, network_view
from facegraph.core.detection import DetectOptions, box_iou
from facegraph.core.io.video import iter_video, probe_video
from facegraph.models.loader import load_model
from facegraph.plugin.evaluate import view_of

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

if __name__ == "__main__":
    yunet, blaze = load_model("yunet_n"), load_model("blazeface_full")
    views = [view_of(p) for p in sorted(glob.glob(str(DATA / "stills" / "*.jpg")))]
    for clip in sorted(glob.glob(str(DATA / "video" / "d*.mp4"))):
        n = probe_video(clip).frame_count
        views += [network_view(f.pixels, options=ViewOptions(exposure="none"))
                  for f in iter_video(clip, range(0, n, max(1, n // 12)))]
    size, along = [], []
    for v in views:
        y, b = yunet.detect([v])[0], blaze.detect([v], DetectOptions(score_threshold=0.5))[0]
        if not len(y) or not len(b):
            continue
        i = int(np.argmax(box_iou(y.boxes[:1], b.boxes)[0]))
        if box_iou(y.boxes[:1], b.boxes[i:i + 1])[0, 0] < 0.3:
            continue
        k = y.keypoints[0]
        eyes, mouth = (k[0] + k[1]) / 2, (k[3] + k[4]) / 2
        d = np.linalg.norm(mouth - eyes)
        box = b.boxes[i]
        size.append(max(box[2] - box[0], box[3] - box[1]) / d)
        along.append(np.dot((box[:2] + box[2:]) / 2 - eyes, (mouth - eyes) / d) / d)
    print(f"{len(size)} faces: MESH_BOX_PER_EYE_MOUTH = {np.mean(size):.3f} (sd {np.std(size):.3f}), "
          f"MESH_CENTRE_ALONG = {np.mean(along):.3f} (sd {np.std(along):.3f})")
