"""Generate example_workflows/*.json (ComfyUI's template browser shows them; `facegraph run` and the demo run
the same files headless). Edit the graphs here, then:

    .venv/bin/python tests/golden/make_workflows.py

Each template declares its named parameters once (``extra.facegraph.parameters``: type, help, the node inputs
they feed; the default is the fed widget's value), so ``facegraph run TEMPLATE --set input=... --set
output=...`` sets every input at once and ``--help-params`` lists them. Node ids are public: callers set
``NODE.INPUT`` too, so keep them when editing a graph.
"""
import json
from pathlib import Path

from facegraph.core.io.sequence import MISSING_POLICIES
from facegraph.core.temporal import SMOOTH_METHODS
from facegraph.nodes import NODE_CLASSES
from facegraph.plugin.workflow import api_to_ui

OUT = Path(__file__).resolve().parents[2] / "example_workflows"

# Templates that walk a shot pass its frames as a lazy stream (nodes/stream.py): Open Sequence reads nothing,
# the sinks read a chunk at a time, so memory stays bounded whatever the shot length.
ANALYSE_SHOT = {
    "1": {"class_type": "FacegraphAnalyseShot", "inputs": {
        "path": "plate/plate.####.exr", "frames": "", "missing": "hold", "smoothing": "rts",
        "strength": 0.0, "cache": True, "recrop": 1, "eyes": "auto", "start_frame": 1001, "fps": 24.0}},
    "2": {"class_type": "FacegraphExportTracking", "inputs": {
        "tracks": ["1", 1], "folder": "facegraph/tracking", "crop_size": 512, "overwrite": True}},
    "3": {"class_type": "FacegraphOpenSequence", "inputs": {
        "path": "plate/plate.####.exr", "frames": "", "missing": "hold", "layer": "", "nonfinite": "error"}},
    "4": {"class_type": "FacegraphStreamTrackCrops", "inputs": {
        "frames": ["3", 0], "tracks": ["1", 1], "track_id": -1, "size": 512, "feather": 0.1}},
    "5": {"class_type": "FacegraphSaveFrameStream", "inputs": {
        "frames": ["4", 0], "path": "facegraph/crops/crop.####.exr", "pixel_type": "half", "compression": "zip",
        "mode": "overwrite"}},
    "6": {"class_type": "FacegraphStreamDrawLandmarks", "inputs": {
        "frames": ["3", 0], "faces": ["1", 0], "point_size": 1, "boxes": True, "stops": 0.0, "points": "auto"}},
    "7": {"class_type": "FacegraphSaveStreamContactSheet", "inputs": {
        "frames": ["6", 0], "path": "facegraph/contact_sheet.png", "count": 8, "columns": 4, "tile_width": 320}},
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

STABILISE = {  # stabilised crops from a tracking export (the render step after analyse shot / facegraph merge)
    "1": {"class_type": "FacegraphImportTracking", "inputs": {"path": "facegraph/tracking [output]"}},
    "2": {"class_type": "FacegraphOpenSequence", "inputs": {
        "path": PLATE, "frames": "", "missing": "hold", "layer": "", "nonfinite": "error"}},
    "3": {"class_type": "FacegraphStreamTrackCrops", "inputs": {
        "frames": ["2", 0], "tracks": ["1", 1], "track_id": -1, "size": 512, "feather": 0.1}},
    "4": {"class_type": "FacegraphSaveFrameStream", "inputs": {
        "frames": ["3", 0], "path": "facegraph/stabilised/crop.####.exr", "pixel_type": "half",
        "compression": "zip", "mode": "resume"}},
}

LANDMARK_PREVIEW = {  # per frame: detect, landmarks, refine (cached), drawn over the plate; streamed, no tracking
    "1": {"class_type": "FacegraphOpenSequence", "inputs": {
        "path": PLATE, "frames": "", "missing": "hold", "layer": "", "nonfinite": "error"}},
    "2": {"class_type": "FacegraphStreamAnalyseFrames", "inputs": {
        "frames": ["1", 0], "cache": True, "recrop": 1, "eyes": "auto", "score_threshold": 0.6, "max_faces": 0}},
    "5": {"class_type": "FacegraphStreamDrawLandmarks", "inputs": {
        "frames": ["1", 0], "faces": ["2", 0], "point_size": 1, "boxes": True, "stops": 0.0, "points": "auto"}},
    "6": {"class_type": "FacegraphSaveFrameStream", "inputs": {
        "frames": ["5", 0], "path": "facegraph/landmarks/preview.####.exr", "pixel_type": "half",
        "compression": "zip", "mode": "resume"}},
    "7": {"class_type": "FacegraphSaveStreamContactSheet", "inputs": {
        "frames": ["5", 0], "path": "facegraph/landmarks_contact_sheet.png", "count": 8, "columns": 4,
        "tile_width": 320}},
}


def param(type_, help_, *feeds):
    """A parameter declaration (plugin/runner.py): the default is the first fed widget's value."""
    return {"type": list(type_) if isinstance(type_, (list, tuple)) else type_, "help": help_, "feeds": list(feeds)}


_IN = "the plate: plate.####.exr (relative: under --input-dir)"
_FRAMES = "the shot's frame range, e.g. 1001-1100 (empty: every frame on disk); --frames A-B runs a chunk of it"
_MISSING = "frames missing from the range: " + ", ".join(MISSING_POLICIES)
_TRACKS = "tracking export folder (tracking.json, .npz, .chan)"
PARAMETERS = {
    "analyse_shot": {
        "input": param("STRING", _IN, "1.path", "3.path"),
        "frames": param("STRING", _FRAMES, "1.frames", "3.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "1.missing", "3.missing"),
        "smoothing": param(SMOOTH_METHODS, "temporal smoothing of the tracks", "1.smoothing"),
        "strength": param("FLOAT", "smoothing strength: 0 calibrated, > 0 smoother, < 0 follows faster", "1.strength"),
        "fps": param("FLOAT", "frame rate of a sequence", "1.fps"),
        "output": param("STRING", "stabilised crop sequence (EXR pattern)", "5.path"),
        "crop_size": param("INT", "crop size in pixels (the crops and the exported transforms)", "2.crop_size",
                           "4.size"),
        "tracking": param("STRING", _TRACKS, "2.folder"),
        "contact_sheet": param("STRING", "contact sheet PNG of the landmarks", "7.path"),
    },
    "stabilise": {
        "tracking": param("STRING", "the tracking export to stabilise with (analyse shot / facegraph merge)",
                          "1.path"),
        "input": param("STRING", _IN, "2.path"),
        "frames": param("STRING", _FRAMES, "2.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "2.missing"),
        "output": param("STRING", "stabilised crop sequence (EXR pattern)", "4.path"),
        "crop_size": param("INT", "crop size in pixels", "3.size"),
        "track_id": param("INT", "which track (-1: the one seen in most frames)", "3.track_id"),
    },
    "landmark_preview": {
        "input": param("STRING", _IN, "1.path"),
        "frames": param("STRING", _FRAMES, "1.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "1.missing"),
        "output": param("STRING", "preview sequence (EXR pattern, display-referred pictures)", "6.path"),
        "contact_sheet": param("STRING", "contact sheet PNG", "7.path"),
        "score_threshold": param("FLOAT", "detector score threshold", "2.score_threshold"),
    },
    "face_replace": {
        "input": param("STRING", _IN, "1.path", "3.plate", "4.plate"),
        "frames": param("STRING", _FRAMES, "1.frames", "3.frames", "4.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "1.missing", "3.missing", "4.missing"),
        "source": param("STRING", "the photo whose face goes onto the plate", "3.source"),
        "output": param("STRING", "face-replaced plate (EXR pattern)", "3.output"),
        "model": param(NODE_CLASSES["FacegraphFaceReplace"].INPUT_TYPES()["optional"]["model"][0],
                       "UV layout / topology (bfm_3ddfa, sfm_3448: non-commercial)", "3.model", "4.model"),
        "colour_strength": param("FLOAT", "0 = no colour match, 1 = full", "3.colour_strength"),
        "blend": param(("poisson", "over"), "gradient-domain blend or a feathered over", "3.blend"),
        "tracking": param("STRING", _TRACKS, "2.folder"),
        "face3d": param("STRING", "face fit export folder (fit.json, meshes, texture)", "4.folder"),
        "preview": param("STRING", "before / after PNG (empty: none)", "3.preview_path"),
    },
    "face_paint": {
        "input": param("STRING", _IN, "1.path", "2.plate"),
        "frames": param("STRING", _FRAMES, "1.frames", "2.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "1.missing", "2.missing"),
        "decal": param("STRING", "the UV-space decal (square image, in the model's UV layout)", "2.decal"),
        "output": param("STRING", "painted plate (EXR pattern)", "2.output"),
        "opacity": param("FLOAT", "scales the decal's alpha", "2.opacity"),
        "preview": param("STRING", "before / after PNG (empty: none)", "2.preview_path"),
    },
    "unstabilise": {
        "tracking": param("STRING", "the tracking export the crops were made with", "1.path"),
        "crops": param("STRING", "the processed crop sequence (EXR pattern)", "2.crops"),
        "input": param("STRING", _IN, "2.plate"),
        "frames": param("STRING", _FRAMES, "2.frames"),
        "missing": param(MISSING_POLICIES, _MISSING, "2.missing"),
        "output": param("STRING", "the plate with the crops pasted back (EXR pattern)", "2.output"),
        "feather_px": param("FLOAT", "soft edge of the crop in crop pixels", "2.feather_px"),
        "preview": param("STRING", "before / after PNG (empty: none)", "2.preview_path"),
    },
}

WORKFLOWS = {
    "analyse_shot": (ANALYSE_SHOT, "facegraph: analyse a shot (track, smooth, export, stabilised crops)"),
    "stabilise": (STABILISE, "facegraph: stabilise (crops of a tracked face from a tracking export)"),
    "landmark_preview": (LANDMARK_PREVIEW, "facegraph: landmark preview (detect, landmarks, refine per frame)"),
    "face_replace": (FACE_REPLACE, "facegraph: face replace (source photo -> UV -> every frame, Poisson)"),
    "face_paint": (FACE_PAINT, "facegraph: face paint (a UV-space decal tracked onto every frame)"),
    "unstabilise": (UNSTABILISE, "facegraph: unstabilise (paste processed crops back into the plate)"),
}

if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, (graph, title) in WORKFLOWS.items():
        doc = api_to_ui(graph, NODE_CLASSES, title=title, parameters=PARAMETERS[name])
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(OUT / f"{name}.json")
