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
        "path": "plate/plate.####.exr", "frames": "", "missing": "hold", "smoothing": "rts",
        "strength": 0.0, "cache": True, "recrop": 1, "eyes": "auto", "start_frame": 1001, "fps": 24.0}},
    "2": {"class_type": "FacegraphExportTracking", "inputs": {
        "tracks": ["1", 1], "folder": "facegraph/tracking", "crop_size": 512, "overwrite": True}},
    "3": {"class_type": "FacegraphLoadImageSequence", "inputs": {
        "path": "plate/plate.####.exr", "frames": "", "first": 0, "count": 0, "missing": "hold",
        "channels": "auto", "layer": "", "nonfinite": "error"}},
    "4": {"class_type": "FacegraphTrackCrops", "inputs": {
        "images": ["3", 0], "sequence": ["3", 2], "tracks": ["1", 1], "track_id": -1, "size": 512, "feather": 0.1}},
    "5": {"class_type": "FacegraphSaveEXRSequence", "inputs": {
        "images": ["4", 0], "sequence": ["4", 3], "path": "facegraph/crops/crop.####.exr",
        "pixel_type": "half", "compression": "zip", "mode": "overwrite", "start_frame": 1001}},
    "6": {"class_type": "FacegraphDrawLandmarks", "inputs": {
        "images": ["3", 0], "faces": ["1", 0], "point_size": 1, "boxes": True, "stops": 0.0, "points": "auto"}},
    "7": {"class_type": "FacegraphSaveContactSheet", "inputs": {
        "previews": ["6", 0], "sequence": ["3", 2], "path": "facegraph/contact_sheet.png", "count": 8,
        "columns": 4, "tile_width": 320}},
}

PLATE = "plate/plate.####.exr"
_ANALYSE = {"class_type": "FacegraphAnalyseShot", "inputs": {
    "path": PLATE, "frames": "", "missing": "hold", "smoothing": "rts", "strength": 0.0, "cache": True,
    "recrop": 1, "eyes": "auto", "start_frame": 1001, "fps": 24.0}}

FACE_REPLACE = {
    "1": _ANALYSE,
    "2": {"class_type": "FacegraphExportTracking", "inputs": {
        "tracks": ["4", 1], "folder": "facegraph/tracking", "crop_size": 512, "overwrite": True}},
    "4": {"class_type": "FacegraphExportFaceFit", "inputs": {
        "tracks": ["1", 1], "plate": PLATE, "frames": "", "missing": "hold", "folder": "facegraph/face3d",
        "model": "mediapipe_canonical", "texture_size": 1024, "track_id": -1}},
    "3": {"class_type": "FacegraphFaceReplace", "inputs": {
        "source": "source.png", "tracks": ["1", 1], "plate": PLATE, "frames": "", "missing": "hold",
        "output": "facegraph/replace/replace.####.exr", "mode": "resume", "pixel_type": "half",
        "model": "mediapipe_canonical", "texture_size": 1024, "colour_method": "mkl", "colour_strength": 1.0,
        "blend": "poisson", "guidance": "log", "feather_px": 6.0, "mouth_interior": False,
        "preview_path": "facegraph/replace_before_after.png"}},
}

FACE_PAINT = {
    "1": _ANALYSE,
    "2": {"class_type": "FacegraphFacePaint", "inputs": {
        "decal": "decal_uv.png", "tracks": ["1", 1], "plate": PLATE, "frames": "", "missing": "hold",
        "output": "facegraph/paint/paint.####.exr", "mode": "resume", "pixel_type": "half",
        "model": "mediapipe_canonical", "opacity": 1.0, "feather_px": 2.0,
        "preview_path": "facegraph/paint_before_after.png"}},
}

UNSTABILISE = {
    "1": {"class_type": "FacegraphImportTracking", "inputs": {"path": "facegraph/tracking [output]"}},
    "2": {"class_type": "FacegraphPasteBackSequence", "inputs": {
        "crops": "facegraph/crops/crop.####.exr [output]", "tracks": ["1", 1], "plate": PLATE, "frames": "",
        "missing": "hold", "output": "facegraph/unstabilised/plate.####.exr", "mode": "resume",
        "pixel_type": "half", "feather_px": 16.0, "blend": "over",
        "preview_path": "facegraph/unstabilise_before_after.png"}},
}

WORKFLOWS = {
    "analyse_shot": (ANALYSE_SHOT, "facegraph: analyse a shot (track, smooth, export, stabilised crops)"),
    "face_replace": (FACE_REPLACE, "facegraph: face replace (source photo -> UV -> every frame, Poisson)"),
    "face_paint": (FACE_PAINT, "facegraph: face paint (a UV-space decal tracked onto every frame)"),
    "unstabilise": (UNSTABILISE, "facegraph: unstabilise (paste processed crops back into the plate)"),
}

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, (graph, title) in WORKFLOWS.items():
        doc = api_to_ui(graph, NODE_CLASSES, title=title)
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(OUT / f"{name}.json")
