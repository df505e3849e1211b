"""Pictures for people: contact sheets and overlays, display-referred 8-bit. Never used for maths."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .colour import ViewOptions, apply_view


def to_display(frame: np.ndarray, view: ViewOptions = ViewOptions(exposure="none")) -> np.ndarray:
    """Linear (H, W, 3[+]) float32 -> display-referred (H, W, 3) uint8 through the view transform (no auto
    exposure unless asked)."""
    rgb = np.nan_to_num(frame[..., :3].astype(np.float32))
    if view.stops:
        rgb = rgb * np.float32(2.0 ** view.stops)
    disp = np.clip(apply_view(rgb, view), 0, 1)
    return (disp * 255.0 + 0.5).astype(np.uint8)


def contact_sheet(tiles: Sequence[np.ndarray], *, columns: int = 4, labels: Sequence[str] | None = None,
                  tile_width: int = 256, gap: int = 4, background: int = 24) -> np.ndarray:
    """Tile uint8 (H, W, 3) images into one sheet, each scaled to ``tile_width``, optional labels.

    Returns (H, W, 3) uint8 RGB.
    """
    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    scaled = []
    for t in tiles:
        h, w = t.shape[:2]
        th = max(1, int(round(h * tile_width / w)))
        scaled.append(cv2.resize(t, (tile_width, th), interpolation=cv2.INTER_AREA))
    th = max(s.shape[0] for s in scaled)
    rows = (len(scaled) + columns - 1) // columns
    cols = min(columns, len(scaled))
    sheet = np.full((rows * (th + gap) + gap, cols * (tile_width + gap) + gap, 3), background, np.uint8)
    for i, s in enumerate(scaled):
        r, c = divmod(i, columns)
        y, x = gap + r * (th + gap), gap + c * (tile_width + gap)
        sheet[y:y + s.shape[0], x:x + tile_width] = s
        if labels is not None and i < len(labels):
            cv2.putText(sheet, str(labels[i]), (x + 6, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3,
                        cv2.LINE_AA)
            cv2.putText(sheet, str(labels[i]), (x + 6, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return sheet


POINT_SETS: tuple[str, ...] = ("auto", "all", "ibug68")


def draw_faces(rgb8: np.ndarray, faces, point_size: int = 1, boxes: bool = True, points: str = "auto") -> np.ndarray:
    """Draw faces (boxes, scores, track ids, landmarks, keypoints) on a display-referred uint8 (H, W, 3)
    picture; returns a copy. Green: detected/refined, orange: smoothed/filled."""
    img = np.ascontiguousarray(rgb8.copy())
    s = 16  # sub-pixel drawing: coordinates in 1/16 px (cv2 shift=4)
    for k, f in enumerate(faces):
        colour = (0, 255, 0) if f.provenance in ("detected", "refined") else (255, 160, 0)
        if boxes:
            x0, y0, x1, y1 = (int(round(v * s)) for v in f.box)
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA, shift=4)
            label = f"{k}:{f.score:.2f}" + (f" id{f.track_id}" if f.track_id is not None else "")
            cv2.putText(img, label, (int(f.box[0]), max(10, int(f.box[1]) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        colour, 1, cv2.LINE_AA)
        if f.landmarks is not None:
            xy = f.landmarks.xy
            dense = f.landmarks.scheme.startswith("mediapipe")
            if dense and (points == "ibug68" or (points == "auto" and f.width < 200)):
                from .landmarks import mesh_to_ibug68

                xy = mesh_to_ibug68(xy)  # a readable subset on small faces
            for x, y in xy:  # pixel-area coords -> cv2 centre coords
                cv2.circle(img, (int(round((x - 0.5) * s)), int(round((y - 0.5) * s))), max(1, point_size) * s,
                           (255, 255, 0), -1 if point_size else 1, cv2.LINE_AA, shift=4)
        if f.keypoints is not None:
            for x, y in f.keypoints:
                cv2.circle(img, (int(round((x - 0.5) * s)), int(round((y - 0.5) * s))), (point_size + 2) * s,
                           (255, 0, 255), 1, cv2.LINE_AA, shift=4)
    return img


def draw_step(faces_by_frame, view: ViewOptions = ViewOptions(exposure="none"), point_size: int = 1,
              boxes: bool = True, points: str = "auto"):
    """A frame-stream step (core.io.stream) drawing each frame's faces over its view-transformed picture.

    Convention: chunk images (B, C, H, W) scene-linear float32 (data windows, offset by the chunk's ``offsets``;
    ``faces_by_frame``: frame number -> FrameFaces in display-window pixels) -> (B, 3, H, W) display-referred
    float32 in [0, 1] (the uint8 picture of :func:`draw_faces` / 255), on the chunk's device.
    """
    import dataclasses

    import torch

    def step(chunk):
        px = chunk.images.detach().permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for n, (dx, dy), img in zip(chunk.numbers, chunk.offsets, px):
            ff = faces_by_frame.get(n)
            drawn = ff.shifted(-dx, -dy).faces if ff is not None else ()
            out.append(draw_faces(to_display(img, view), drawn, point_size, boxes, points))
        pics = torch.from_numpy(np.stack(out).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        return dataclasses.replace(chunk, images=pics.to(chunk.images.device))
    return step
