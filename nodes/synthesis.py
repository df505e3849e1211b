"""Shot-level synthesis jobs as nodes: face replace, face paint, paste a processed crop sequence back. Each
streams the plate from disk and writes an EXR sequence (like Analyse Shot reads one), so a shot of any length
runs in bounded memory in the editor too. Thin: all work is in models/pipeline/synthesis.py."""
from __future__ import annotations

from ..core.errors import InputError
from ..core.io.frames import WRITE_MODES
from ..core.io.images import PIXEL_TYPES, read_image, write_display_png
from ..core.io.sequence import MISSING_POLICIES, parse_frames
from ..core.io.source import open_source
from ..core.paths import INPUT_TIP, OUTPUT_TIP
from ..core.shot import ShotResult
from .io import files_changed, prompt_inputs, run_hash
from .types import BOOLEAN, CATEGORY, FLOAT, IMAGE, INT, STRING, TRACKS, in_path, numpy_to_image, out_path, widget

MODEL_CHOICES = ("mediapipe_canonical", "bfm_3ddfa", "sfm_3448")
MODEL_TOOLTIP = ("UV layout / topology: mediapipe_canonical (Apache-2.0, the mesh landmarks themselves), "
                 "bfm_3ddfa or sfm_3448 (NON-COMMERCIAL licences: fitted 3DMMs)")


def _plate_inputs():
    return {
        "tracks": widget(TRACKS, "tracks of the plate (Analyse Shot / Import Tracking Data)"),
        "plate": widget(STRING, "the plate: plate.####.exr, a movie or a still (the one the tracks are of)"
                        + INPUT_TIP,
                        default=""),
        "frames": widget(STRING, "frame range (empty: all)", default=""),
        "missing": widget(MISSING_POLICIES, "frames missing from the range", default="error"),
        "output": widget(STRING, "output EXR pattern" + OUTPUT_TIP, default="facegraph/replace/replace.####.exr"),
        "mode": widget(WRITE_MODES, "existing frames: error, overwrite, or resume (keep this graph's)",
                       default="error"),
        "pixel_type": widget(PIXEL_TYPES, "half or float EXR", default="half"),
    }


def _hash(prompt) -> str:
    return run_hash(prompt, prompt_inputs(prompt)) if prompt else ""


def _result(report, preview_path: str):
    from ..models.pipeline.synthesis import before_after_sheet

    sheet = before_after_sheet(report) if report.tiles else None
    if sheet is not None and preview_path.strip():
        write_display_png(preview_path.strip(), sheet)
    image = numpy_to_image((sheet.astype("float32") / 255.0)[None]) if sheet is not None else None
    text = report.summary() + (f"; passed through: {report.passed_through}" if report.passed_through else "")
    return text, image


def _guarded(method):
    """Run a node that reads and writes files as one input-guard job (core.fsutil.job): inside ComfyUI, where
    no run wraps the node, what it reads is still never written over by what it writes."""
    import functools

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        from ..core.fsutil import job

        with job():
            return method(self, *args, **kwargs)
    return run


class _ShotJob:
    """What the streamed shot jobs share: category, outputs, the change check on the files they read."""
    CATEGORY = f"{CATEGORY}/synthesis"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING, IMAGE, STRING)
    RETURN_NAMES = ("paths", "before_after", "summary")
    OUTPUT_TOOLTIPS = ("the output pattern", "a before / after contact sheet (display-referred)",
                       "frames written, passed through, ms per stage")
    READS = ""  # the input naming the job's own file besides the plate

    @classmethod
    def IS_CHANGED(cls, plate="", **inputs):
        own = inputs.pop(cls.READS, "")
        return files_changed(own, {"plate": files_changed(plate, {}), **inputs})

    @staticmethod
    def _inputs(reads: tuple[str, str], output: str, preview: str, optional: dict) -> dict:
        req = _plate_inputs()
        req["output"] = widget(STRING, "output EXR pattern" + OUTPUT_TIP, default=output)
        track = {"track_id": widget(INT, "which track (-1: the one seen in most frames); chain jobs for more "
                                         "faces", default=-1, min=-1, max=1 << 16)}
        return {"required": {reads[0]: widget(STRING, reads[1] + INPUT_TIP, default=""), **req},
                # new inputs go last: the editor stores widget values by position
                "optional": {**optional, "preview_path": widget(STRING, "PNG of the before / after sheet "
                                                                    "(empty: none)" + OUTPUT_TIP, default=preview),
                             **track},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}


class FaceReplace(_ShotJob):
    DESCRIPTION = ("Face replace: the face of a source photo is extracted to a UV texture (linear float, "
                   "visibility-weighted), colour-matched once for the shot to the plate's face, rendered onto "
                   "the tracked face of every frame with that frame's pose and expression, Poisson-blended in "
                   "the gradient domain (log guidance: robust to exposure changes) inside a feathered region "
                   "mask, and written as EXR. Frames without the face pass the plate through.")
    FUNCTION = "replace"
    READS = "source"

    @classmethod
    def INPUT_TYPES(cls):
        return cls._inputs(("source", "the photo whose face goes onto the plate (largest face is used)"),
                           "facegraph/replace/replace.####.exr", "facegraph/replace_before_after.png", {
            "model": widget(MODEL_CHOICES, MODEL_TOOLTIP, default="mediapipe_canonical"),
            "texture_size": widget(INT, "UV texture size in texels", default=1024, min=64, max=8192, step=64),
            "colour_method": widget(("mkl", "meanstd", "histogram"), "colour match of the source to the plate",
                                    default="mkl"),
            "colour_strength": widget(FLOAT, "0 = no colour match, 1 = full", default=1.0, min=0.0, max=1.0,
                                      step=0.05),
            "blend": widget(("poisson", "over"), "gradient-domain blend, or a feathered 'over'", default="poisson"),
            "guidance": widget(("log", "source", "mixed"), "Poisson guidance", default="log"),
            "feather_px": widget(FLOAT, "soft edge of the face mask in pixels", default=6.0, min=0.0, max=200.0),
            "mouth_interior": widget(BOOLEAN, "also replace the mouth interior (default: keep the plate's)",
                                     default=False)})

    @_guarded
    def replace(self, source, tracks: ShotResult, plate, frames="", missing="error",
                output="facegraph/replace/replace.####.exr", mode="error", pixel_type="half",
                model="mediapipe_canonical", texture_size=1024, colour_method="mkl", colour_strength=1.0,
                blend="poisson", guidance="log", feather_px=6.0, mouth_interior=False,
                preview_path="facegraph/replace_before_after.png", track_id=-1, prompt=None, unique_id=None):
        from ..models.pipeline.synthesis import REPLACE_REGIONS, ReplaceOptions, face_replace
        from ..models.shot import AnalysisOptions, ShotAnalyser

        if not source.strip():
            raise InputError("no source photo given", hint="set 'source' to an image with a face")
        source = in_path(source)
        output, preview_path = out_path(output), (out_path(preview_path) if preview_path.strip() else "")
        px, _ = read_image(source)
        found = ShotAnalyser(AnalysisOptions()).analyse_frame(px, 0)
        if not found.faces:
            raise InputError("no face found in the source photo", file=source.strip(),
                             hint="use a photo with a clearly visible face")
        src = open_source(in_path(plate), parse_frames(frames), missing=missing)
        opts = ReplaceOptions(model=model, texture_size=int(texture_size), colour_method=colour_method,
                              colour_strength=float(colour_strength), blend=blend, guidance=guidance,
                              feather_px=float(feather_px),
                              regions=REPLACE_REGIONS + (("mouth_interior",) if mouth_interior else ()))
        _check_prompt_inputs(prompt, unique_id, output)
        report = face_replace(px, found, src, tracks, output.strip(), options=opts, mode=mode,
                              pixel_type=pixel_type, graph_hash=_hash(prompt), track_id=int(track_id))
        text, image = _result(report, preview_path)
        return {"ui": {"text": [text]}, "result": (output.strip(), image, text)}


class FacePaint(_ShotJob):
    DESCRIPTION = ("Face paint: a UV-space decal or texture edit (EXR, or PNG/TIFF with alpha, in the face "
                   "model's UV layout) rendered onto the tracked face of every frame and composited over the "
                   "plate inside the visible face. Frames without the face pass the plate through.")
    FUNCTION = "paint"
    READS = "decal"

    @classmethod
    def INPUT_TYPES(cls):
        return cls._inputs(("decal", "the UV-space decal (square image)"), "facegraph/paint/paint.####.exr",
                           "facegraph/paint_before_after.png", {
                               "model": widget(MODEL_CHOICES, MODEL_TOOLTIP, default="mediapipe_canonical"),
                               "opacity": widget(FLOAT, "scales the decal's alpha", default=1.0, min=0.0, max=1.0,
                                                 step=0.05),
                               "feather_px": widget(FLOAT, "soft edge of the face region", default=2.0, min=0.0,
                                                    max=200.0)})

    @_guarded
    def paint(self, decal, tracks: ShotResult, plate, frames="", missing="error",
              output="facegraph/paint/paint.####.exr", mode="error", pixel_type="half",
              model="mediapipe_canonical", opacity=1.0, feather_px=2.0,
              preview_path="facegraph/paint_before_after.png", track_id=-1, prompt=None, unique_id=None):
        from ..models.pipeline.synthesis import PaintOptions, face_paint, read_decal

        output, preview_path = out_path(output), (out_path(preview_path) if preview_path.strip() else "")
        texture = read_decal(in_path(decal))
        src = open_source(in_path(plate), parse_frames(frames), missing=missing)
        _check_prompt_inputs(prompt, unique_id, output)
        report = face_paint(texture, src, tracks, output.strip(),
                            options=PaintOptions(model=model, opacity=float(opacity), feather_px=float(feather_px)),
                            mode=mode, pixel_type=pixel_type, graph_hash=_hash(prompt), track_id=int(track_id))
        text, image = _result(report, preview_path)
        return {"ui": {"text": [text]}, "result": (output.strip(), image, text)}


class PasteBackSequence(_ShotJob):
    DESCRIPTION = ("Unstabilise: paste a processed stabilised crop sequence (from Track Crops or facegraph "
                   "analyse, then painted or graded) back into the plate through each frame's inverse "
                   "alignment, feathered, in float. Frames without a crop pass the plate through.")
    FUNCTION = "paste"
    READS = "crops"

    @classmethod
    def INPUT_TYPES(cls):
        return cls._inputs(("crops", "the processed crop sequence, crop.####.exr"),
                           "facegraph/unstabilised/plate.####.exr",
                           "facegraph/unstabilise_before_after.png", {
                               "feather_px": widget(FLOAT, "soft edge of the crop in crop pixels", default=16.0,
                                                    min=0.0, max=500.0),
                               "blend": widget(("over", "poisson"), "feathered over, or gradient-domain",
                                               default="over")})

    @_guarded
    def paste(self, crops, tracks: ShotResult, plate, frames="", missing="error",
              output="facegraph/unstabilised/plate.####.exr", mode="error", pixel_type="half",
              feather_px=16.0, blend="over", preview_path="facegraph/unstabilise_before_after.png",
              track_id=-1, prompt=None, unique_id=None):
        from ..models.pipeline.synthesis import unstabilise

        output, preview_path = out_path(output), (out_path(preview_path) if preview_path.strip() else "")
        crop_src = open_source(in_path(crops), missing="skip")
        src = open_source(in_path(plate), parse_frames(frames), missing=missing)
        _check_prompt_inputs(prompt, unique_id, output)
        report = unstabilise(crop_src, src, tracks, output.strip(), feather_px=float(feather_px), mode=mode,
                             pixel_type=pixel_type, graph_hash=_hash(prompt), blend=blend, track_id=int(track_id))
        text, image = _result(report, preview_path)
        return {"ui": {"text": [text]}, "result": (output.strip(), image, text)}


class ExportFaceFit:
    DESCRIPTION = ("Export the 3D face of a track: one identity for the shot, expression and camera per frame "
                   "(fit.json), a mesh per frame with UVs (mesh/face.####.obj, for Nuke's ReadGeo and Blender) "
                   "lined up with the plate, and the face's UV texture accumulated over the shot (texture.exr, "
                   "linear). bfm_3ddfa and sfm_3448 are NON-COMMERCIAL models.")
    CATEGORY = f"{CATEGORY}/synthesis"
    FUNCTION = "export"
    OUTPUT_NODE = True
    RETURN_TYPES = (STRING, TRACKS, STRING)
    RETURN_NAMES = ("folder", "tracks", "summary")
    OUTPUT_TOOLTIPS = ("where the files went", "the tracks with the fit attached (Export Tracking Data writes "
                       "it into tracking.json, schema version 2)", "frames exported, identity size")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tracks": widget(TRACKS, "tracks of the plate (Analyse Shot / Import Tracking Data)"),
            "plate": widget(STRING, "the plate the tracks are of" + INPUT_TIP, default=""),
            "frames": widget(STRING, "frame range (empty: all)", default=""),
            "missing": widget(MISSING_POLICIES, "frames missing from the range", default="error"),
            "folder": widget(STRING, "output folder" + OUTPUT_TIP, default="facegraph/face3d"),
        }, "optional": {
            "model": widget(MODEL_CHOICES, MODEL_TOOLTIP, default="mediapipe_canonical"),
            "texture_size": widget(INT, "UV texture size", default=1024, min=64, max=8192, step=64),
            "track_id": widget(INT, "which track (-1: the one seen in most frames)", default=-1, min=-1,
                               max=1 << 16),
            "overwrite": widget(BOOLEAN, "replace an existing export in the folder", default=True),
        }}

    @classmethod
    def IS_CHANGED(cls, plate="", **inputs):
        return files_changed(plate, inputs)

    @_guarded
    def export(self, tracks: ShotResult, plate, frames="", missing="error", folder="facegraph/face3d",
               model="mediapipe_canonical", texture_size=1024, track_id=-1, overwrite=True):
        from ..models.pipeline.synthesis import export_face_fit

        src = open_source(in_path(plate), parse_frames(frames), missing=missing)
        folder = out_path(folder)
        doc = export_face_fit(src, tracks, folder, model=model, texture_size=int(texture_size),
                              track_id=int(track_id), overwrite=bool(overwrite))
        text = (f"{len(doc['frames'])} frame(s): fit.json, mesh/face.####.obj, texture.exr in {folder.strip()} "
                f"({doc['model']}, licence {doc['licence']})")
        import dataclasses

        return {"ui": {"text": [text]}, "result": (folder.strip(), dataclasses.replace(tracks, fit=doc), text)}


def _check_prompt_inputs(prompt, unique_id, output: str) -> None:
    """Refuse, before any work, an output pattern (resolved) that names a file some node of this prompt reads."""
    from ..core.fsutil import check_disjoint, pattern_files

    inputs = prompt_inputs(prompt, unique_id)
    if inputs:
        check_disjoint(pattern_files(output), inputs)


NODES = {
    "FacegraphFaceReplace": (FaceReplace, "Face Replace (facegraph)"),
    "FacegraphFacePaint": (FacePaint, "Face Paint (facegraph)"),
    "FacegraphPasteBackSequence": (PasteBackSequence, "Paste Back Sequence / Unstabilise (facegraph)"),
    "FacegraphExportFaceFit": (ExportFaceFit, "Export Face Fit: OBJ sequence, UV texture (facegraph)"),
}
