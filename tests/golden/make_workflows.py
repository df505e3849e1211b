"""Generate example_workflows/*.json (ComfyUI's template browser shows them; `facegraph run` and the demo run
the same files headless). Edit the graphs here, then:

    .venv/bin/python tests/golden/make_workflows.py
"""
import json
from pathlib import Path

from facegraph.nodes import NODE_CLASSES
from facegraph.plugin.workflow import api_to_ui

OUT = Path(__file__).resolve().parents[2] / "example_workflows"

ANALYSE_SHOT = {
    "1": {"class_type": "FacegraphAnalyseShot", "inputs": {
        "path": "output/facegraph/plate/plate.####.exr", "frames": "", "missing": "hold", "smoothing": "rts",
        "strength": 0.0, "cache": True, "recrop": 1, "eyes": "auto", "start_frame": 1001, "fps": 24.0}},
    "2": {"class_type": "FacegraphExportTracking", "inputs": {
        "tracks": ["1", 1], "folder": "output/facegraph/tracking", "crop_size": 512, "overwrite": True}},
    "3": {"class_type": "FacegraphLoadImageSequence", "inputs": {
        "path": "output/facegraph/plate/plate.####.exr", "frames": "", "first": 0, "count": 0, "missing": "hold",
        "channels": "auto", "layer": "", "nonfinite": "error"}},
    "4": {"class_type": "FacegraphTrackCrops", "inputs": {
        "images": ["3", 0], "sequence": ["3", 2], "tracks": ["1", 1], "track_id": -1, "size": 512, "feather": 0.1}},
    "5": {"class_type": "FacegraphSaveEXRSequence", "inputs": {
        "images": ["4", 0], "sequence": ["4", 3], "path": "output/facegraph/crops/crop.####.exr",
        "pixel_type": "half", "compression": "zip", "mode": "overwrite", "start_frame": 1001}},
    "6": {"class_type": "FacegraphDrawLandmarks", "inputs": {
        "images": ["3", 0], "faces": ["1", 0], "point_size": 1, "boxes": True, "stops": 0.0, "points": "auto"}},
    "7": {"class_type": "FacegraphSaveContactSheet", "inputs": {
        "previews": ["6", 0], "sequence": ["3", 2], "path": "output/facegraph/contact_sheet.png", "count": 8,
        "columns": 4, "tile_width": 320}},
}

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    doc = api_to_ui(ANALYSE_SHOT, NODE_CLASSES, title="facegraph: analyse a shot (track, smooth, export, crops)")
    (OUT / "analyse_shot.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(OUT / "analyse_shot.json")
