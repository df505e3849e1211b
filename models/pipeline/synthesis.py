"""Synthesis over shots: face meshes in frames, UV textures, face replace, face paint, and paste-back of a
processed crop sequence (unstabilise). Every line of maths is in core/ (render, blend, colour_match,
morphable); this module only decides what runs on which frame, streams the frames and writes them.

Convention:
    Frames are read and written as (H, W, C) float32 scene-linear arrays at IO (core.io), and become
    (1, C, H, W) torch views for the kernels, on ``device``. Coordinates are display-window pixels
    (core/conventions.py); a frame's array covers its data window, so meshes are shifted by the window offset
    before they meet the array. A frame whose face is missing (not detected, not filled) is passed through
    unchanged and listed in the report; nothing is half-written (core.io.frames.SequenceWriter).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from ...core import progress
from ...core.blend import PoissonOptions, paste_back, poisson_blend
from ...core.colour_match import apply_colour_transfer, colour_stats, fit_colour_transfer
from ...core.errors import EstimationError, ImageIOError, InputError
from ...core.frame_window import no_window
from ...core.io.frames import SequenceWriter
from ...core.io.images import read_image
from ...core.io.source import Source
from ...core.morphable.fit import FitOptions, fit, is_free_form, vertices_frame
from ...core.morphable.model import MorphableModel
from ...core.preview import to_display
from ...core.render.masks import region_masks
from ...core.render.raster import Raster, rasterise
from ...core.render.uv import TextureAccumulator, extract_uv_texture, render_uv_texture
from ...core.shot import ShotResult, scaled_alignment
from ...core.types import Face, FrameFaces
from ..morphable import load_morphable_model
from ..threads import small_stage

log = logging.getLogger(__name__)

BlendMode = Literal["poisson", "over"]
BLEND_MODES: tuple[str, ...] = ("poisson", "over")
#: the regions a face replace takes from the source by default: the whole face but the mouth interior (the
#: plate's teeth and tongue belong to the plate's own performance)
REPLACE_REGIONS: tuple[str, ...] = ("skin", "left_eye", "right_eye", "left_brow", "right_brow", "nose", "lips")
MESH_SCHEMES = ("mediapipe478", "mediapipe468")


# ------------------------------------------------------------------------------------------------ meshes
@dataclasses.dataclass(frozen=True)
class FaceMesh:
    """A topology with UVs and region labels, as torch tensors on one device (built once per shot)."""

    model: MorphableModel
    triangles: torch.Tensor          # (F, 3) int64
    uv: torch.Tensor                 # (V|Vt, 2) float32, v down
    uv_triangles: torch.Tensor | None
    labels: torch.Tensor             # (V,) int64 region labels
    device: torch.device

    @classmethod
    def of(cls, model: MorphableModel | str, device: str | torch.device = "cpu") -> "FaceMesh":
        m = load_morphable_model(model) if isinstance(model, str) else model
        if m.uv is None:
            raise InputError(f"morphable model {m.name} has no UV coordinates: it cannot carry a texture",
                             hint="choose mediapipe_canonical, bfm_3ddfa or sfm_3448")
        dev = torch.device(device)
        labels = m.regions if m.regions is not None else np.zeros(m.n_vertices, np.int8)
        return cls(model=m, triangles=torch.tensor(np.asarray(m.triangles, np.int64), device=dev),
                   uv=torch.tensor(np.asarray(m.uv, np.float32), device=dev),
                   uv_triangles=None if m.uv_triangles is None else
                   torch.tensor(np.asarray(m.uv_triangles, np.int64), device=dev),
                   labels=torch.tensor(np.asarray(labels, np.int64), device=dev), device=dev)

    def region_ids(self, names: Sequence[str]) -> list[int]:
        out = []
        for n in names:
            if n not in self.model.region_names:
                raise InputError(f"unknown face region {n!r}", hint=f"regions: {', '.join(self.model.region_names)}")
            out.append(self.model.region_names.index(n))
        return out


def face_vertices(face: Face, mesh: FaceMesh, frame_size: tuple[int, int],
                  fit_options: FitOptions | None = None) -> np.ndarray:
    """(V, 3) float32 screen-space vertices of ``face`` on ``mesh`` (display-window pixels, z larger =
    further). MediaPipe's canonical topology takes the face's 478/468 mesh landmarks as its vertices (the
    network's own per-vertex estimate, smoothed by the track); other models are fitted to the landmarks
    (core.morphable.fit). Raises EstimationError when the face has no usable landmarks."""
    lm = face.landmarks
    if lm is None:
        raise EstimationError("the face has no landmarks to place a mesh")
    m = mesh.model
    if is_free_form(m) and lm.scheme in MESH_SCHEMES and m.n_vertices <= len(lm.points):
        pts = np.array(lm.points[:m.n_vertices], np.float32)  # a writable copy (records are frozen)
        if pts.shape[1] < 3:
            raise EstimationError("mesh landmarks without depth cannot place a textured mesh")
        if not np.isfinite(pts).all():
            raise EstimationError("the face's mesh landmarks contain NaN")
        return pts
    scheme = lm.scheme if lm.scheme in m.landmarks else None
    if scheme is None:
        raise EstimationError(f"model {m.name} has no correspondences for landmark scheme {lm.scheme!r}")
    opts = fit_options or FitOptions(scheme=scheme)
    init = None
    mp = face.morphable
    if mp is not None and mp.model == m.name and mp.camera is not None:  # 3DDFA_V2's regression: warm start
        from ...core.morphable.fit import init_from_camera

        try:
            init = init_from_camera(m, mp.shape, mp.expression, mp.camera, scheme)
        except EstimationError:
            init = None
    res = fit(m, np.asarray(lm.points[:, :2], np.float64), options=opts, init=init, frame_size=frame_size)
    return np.asarray(vertices_frame(m, res), np.float32)


def _to_tensor(px: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, C) numpy -> (1, C, H, W) torch (a view on the CPU)."""
    t = torch.from_numpy(np.ascontiguousarray(px)).permute(2, 0, 1)[None]
    return t.to(device) if t.device != device else t


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).detach().cpu().contiguous().numpy()


def _frame_vertices(face: Face, mesh: FaceMesh, frame, size: tuple[int, int]) -> torch.Tensor:
    """(1, V, 3) vertices in the frame *array's* pixels (data window), on the mesh's device."""

    return _in_array(face_vertices(face, mesh, size), frame, mesh.device)


def _in_array(verts: np.ndarray, frame, device: torch.device) -> torch.Tensor:
    """(V, 3) display-window vertices -> (1, V, 3) in the frame array's (data window's) pixels, on ``device``."""
    from ..shot import window_offset

    v = torch.tensor(verts, dtype=torch.float32, device=device)[None]
    dx, dy = window_offset(frame)
    v[..., 0] -= dx
    v[..., 1] -= dy
    return v


# ----------------------------------------------------------------------------------------------- texture
@dataclasses.dataclass(frozen=True)
class Texture:
    """A face texture in a mesh's UV layout: straight colour (1, C, T, T) scene-linear and alpha (1, 1, T, T)."""

    colour: torch.Tensor
    alpha: torch.Tensor


def texture_from_frame(pixels: np.ndarray, face: Face, mesh: FaceMesh, size: int = 1024,
                       accumulator: TextureAccumulator | None = None) -> Texture:
    """The UV texture of ``face`` seen in one linear frame (visibility- and view-angle-weighted), or this
    frame added to ``accumulator`` (a shot's running weighted mean) and its current texture."""
    img = _to_tensor(pixels[..., :3], mesh.device)
    h, w = pixels.shape[:2]
    verts = torch.tensor(face_vertices(face, mesh, (w, h)), device=mesh.device)[None]
    tex, weight = extract_uv_texture(img, verts, mesh.triangles, mesh.uv, size, uv_triangles=mesh.uv_triangles)
    # alpha reaches 1 at a quarter of a frontal texel's weight (|n_z|^2 = 0.25: 60 degrees from the view axis),
    # so the cheeks of a frontal photo are opaque and only grazing texels fade
    acc = accumulator or TextureAccumulator(full_weight=0.25)
    acc.add(tex, weight)
    colour, alpha = acc.texture()
    return Texture(colour=colour, alpha=alpha)


# ------------------------------------------------------------------------------------------ face replace
@dataclasses.dataclass(frozen=True)
class ReplaceOptions:
    """model: the textured topology (mediapipe_canonical: licence-clean, exact per-frame mesh from the
    landmarks). texture_size: T texels. regions: what is taken from the source. feather_px: the mask's soft
    edge. colour_*: the shot-level colour match of the source texture to the plate's face (core.colour_match;
    strength 0 = off). blend: "poisson" (gradient domain: the plate's light at the mask's edge) or "over".
    guidance: Poisson guidance; "log" by default: the gradients of log colour do not change with exposure, so a
    texture matched once for the shot still blends into a frame that is a stop darker (with "source"
    guidance the absolute gradients of the brighter texture overshoot there, to negative values). keyframes: plate frames sampled for the colour fit. device: where the
    kernels run."""

    model: str = "mediapipe_canonical"
    texture_size: int = 1024
    regions: tuple[str, ...] = REPLACE_REGIONS
    feather_px: float = 6.0
    colour_method: str = "mkl"
    colour_space: str = "opponent"
    colour_strength: float = 1.0
    blend: BlendMode = "poisson"
    guidance: str = "log"
    keyframes: int = 8
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.blend not in BLEND_MODES:
            raise InputError(f"blend must be one of {BLEND_MODES}, got {self.blend!r}")
        if not (16 <= int(self.texture_size) <= 8192):
            raise InputError(f"texture_size must be in 16-8192, got {self.texture_size}")
        if not (0.0 <= self.colour_strength <= 1.0):
            raise InputError(f"colour_strength must be in [0, 1], got {self.colour_strength}")
        if not (self.feather_px >= 0 and np.isfinite(self.feather_px)):
            raise InputError(f"feather_px must be >= 0, got {self.feather_px}")
        PoissonOptions(guidance=self.guidance)


@dataclasses.dataclass
class SynthesisReport:
    written: int = 0
    kept: int = 0
    passed_through: list = dataclasses.field(default_factory=list)   # frame numbers without a face
    seconds: dict = dataclasses.field(default_factory=dict)          # stage -> total seconds
    tiles: list = dataclasses.field(default_factory=list)            # (label, before uint8, after uint8)
    notes: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        n = self.written + self.kept
        per = ", ".join(f"{k} {1000 * v / max(1, n):.0f} ms" for k, v in self.seconds.items())
        return (f"{self.written} frame(s) written, {self.kept} kept, {len(self.passed_through)} passed through "
                f"without a face" + (f"; per frame: {per}" if per else ""))


def largest_face(ff: FrameFaces) -> Face:
    if not ff.faces:
        raise EstimationError("no face found", frame=ff.frame)
    return max(ff.faces, key=lambda f: f.area)


def _region_mask(mesh: FaceMesh, verts: torch.Tensor, raster: Raster, size, regions, feather_px) -> torch.Tensor:
    """(1, 1, H, W) soft mask of the union of ``regions``: the wanted labels merged into one first, so a
    single mask is rasterised and feathered (not one per region)."""
    ids = torch.as_tensor(mesh.region_ids(regions), device=mesh.device)
    merged = torch.isin(mesh.labels, ids).to(torch.int64)
    return region_masks(verts, mesh.triangles, merged, [1], size, feather_px=feather_px, raster=raster)


def _shot_faces(result: ShotResult, track_id: int | None) -> dict[int, Face]:
    """frame -> the face of the chosen track (default: the main track)."""
    if not result.tracks:
        return {}
    tid = result.main_track().track_id if track_id is None or track_id < 0 else track_id
    t = result.track(tid)
    return dict(zip(t.frames, t.faces))


class _Timer:
    def __init__(self, report: SynthesisReport) -> None:
        self.report = report

    def __call__(self, name: str):
        import time

        timer = self

        class _T:
            def __enter__(self_):
                self_.t0 = time.perf_counter()

            def __exit__(self_, *exc):
                timer.report.seconds[name] = timer.report.seconds.get(name, 0.0) + time.perf_counter() - self_.t0
        return _T()


def _face_frames(faces: dict[int, Face], mesh: FaceMesh, colour: torch.Tensor, alpha: torch.Tensor,
                 regions: Sequence[str], feather_px: float, report: SynthesisReport, timer: "_Timer", composite):
    """The per-frame step of the texture jobs: the track's face meshed and rasterised, ``colour`` / ``alpha``
    (a UV texture) rendered there, the region mask made, then ``composite(plate, render, region)`` -> the new
    RGB (1, 3, H, W); frames without the face pass the plate through (listed in the report).

    On the CPU each frame runs in the thread policy's small stage (models/threads.py): one thread inside a host
    whose OpenMP workers spin (ComfyUI), where face replace on the demo plate beside two busy processes took
    4.0 s instead of 8.2 s with two spinning threads, and the same 2.2 s on a quiet machine; all threads
    where they sleep when idle (the command line)."""
    def render(frame, px: np.ndarray) -> np.ndarray:
        with small_stage(mesh.device):
            return _render(frame, px)

    def _render(frame, px: np.ndarray) -> np.ndarray:
        face = faces.get(frame.number)
        if face is None:
            report.passed_through.append(frame.number)
            return px
        size = (px.shape[1], px.shape[0])
        plate_t = _to_tensor(px[..., :3], mesh.device)
        with timer("mesh + raster"):
            verts = _frame_vertices(face, mesh, frame, size)
            ras = rasterise(verts, mesh.triangles, size)
        with timer("render"):
            rr = render_uv_texture(colour, verts, mesh.triangles, mesh.uv, size, uv_triangles=mesh.uv_triangles,
                                   texture_alpha=alpha, raster=ras)
        with timer("mask"):
            region = _region_mask(mesh, verts, ras, size, regions, feather_px)
        with timer("blend"):
            out = composite(plate_t, rr, region)
        res = px.copy()
        res[..., :3] = _to_numpy(out)
        return res
    return render


def colour_fit_for_shot(source_pixels: np.ndarray, source_face: Face, plate: Source,
                        faces: dict[int, Face], mesh: FaceMesh, options: ReplaceOptions):
    """One colour transfer for the whole shot (no flicker): the source photo's face region -> the plate's face
    region pooled over ``options.keyframes`` frames spread across the shot. None when strength is 0.

    In a chunk of a shot analysed as a whole (``plate.whole()``, ``faces`` of the whole shot's track) the
    keyframes are the whole shot's, read outside the chunk's window: every chunk fits the single run's
    transfer."""
    if options.colour_strength <= 0 or not faces:
        return None
    h, w = source_pixels.shape[:2]
    img = _to_tensor(source_pixels[..., :3], mesh.device)
    verts = torch.as_tensor(face_vertices(source_face, mesh, (w, h)), device=mesh.device)[None]
    ras = rasterise(verts, mesh.triangles, (w, h))
    src = colour_stats(img, _region_mask(mesh, verts, ras, (w, h), options.regions, 0.0), options.colour_space,
                       sketch=options.colour_method == "histogram", mask_name="source face region")
    plate = plate.whole() or plate
    in_plate = set(plate.frames)
    numbers = sorted(f for f in faces if f in in_plate)
    if not numbers:
        return None
    picks = set(np.unique(np.linspace(0, len(numbers) - 1, min(options.keyframes, len(numbers)))
                          .round().astype(int)).tolist())
    keys = {numbers[i] for i in picks}
    tgt = None
    with no_window():  # keyframes outside a chunk's window are read too; streamed, one frame held at a time
        for frame in plate.subset(keys).frames_iter():
            px = frame.pixels
            size = (px.shape[1], px.shape[0])
            verts = _frame_vertices(faces[frame.number], mesh, frame, size)
            ras = rasterise(verts, mesh.triangles, size)
            st = colour_stats(_to_tensor(px[..., :3], mesh.device),
                              _region_mask(mesh, verts, ras, size, options.regions, 0.0), options.colour_space,
                              sketch=options.colour_method == "histogram", allow_empty=True)
            tgt = st if tgt is None else tgt.merge(st)
    if tgt is None or float(tgt.weight) <= 0:
        return None
    return fit_colour_transfer(src, tgt, options.colour_method, options.colour_space)


def face_replace(source_pixels: np.ndarray, source_faces: FrameFaces, plate: Source, result: ShotResult,
                 out_pattern: str, *, options: ReplaceOptions = ReplaceOptions(), mode: str = "error",
                 pixel_type: str = "half", track_id: int | None = None, graph_hash: str = "",
                 preview_frames: int = 4) -> SynthesisReport:
    """Put the face of a source photo onto the tracked face of every frame of a plate.

    The source face's UV texture (visibility-weighted, linear float) is colour-matched once for the shot to
    the plate's face, rendered onto each frame's mesh (that frame's pose and expression, from the smoothed
    track), Poisson-blended (or "over") inside the feathered region mask, and written as ``out_pattern``.
    Frames where the track has no face pass the plate through. Streamed: one frame in memory at a time."""
    mesh = FaceMesh.of(options.model, options.device)
    report = SynthesisReport()
    timer = _Timer(report)
    src_face = largest_face(source_faces)
    h, w = source_pixels.shape[:2]
    with timer("texture"):
        texture = texture_from_frame(source_pixels, src_face, mesh, options.texture_size)
    faces = _shot_faces(result, track_id)
    with timer("colour fit"):
        transfer = colour_fit_for_shot(source_pixels, src_face, plate, _shot_faces(result.whole or result, track_id),
                                       mesh, options)
    colour = texture.colour
    if transfer is not None:
        colour = apply_colour_transfer(texture.colour, transfer, strength=options.colour_strength)
    poisson = PoissonOptions(guidance=options.guidance)

    def blend(plate_t, rr, region):
        mask = (region * rr.alpha.clamp(0, 1)).clamp(0, 1)
        straight = torch.where(rr.alpha > 1e-4, rr.colour / rr.alpha.clamp_min(1e-4), plate_t)
        if options.blend == "poisson":
            return poisson_blend(straight, plate_t, mask, options=poisson)
        return straight * mask + plate_t * (1 - mask)

    render = _face_frames(faces, mesh, colour, texture.alpha, options.regions, options.feather_px, report, timer,
                          blend)
    _stream(plate, out_pattern, render, report, mode=mode, pixel_type=pixel_type, graph_hash=graph_hash,
            preview_frames=preview_frames, what="face replace")
    return report


def _stream(plate: Source, out_pattern: str, render, report: SynthesisReport, *, mode: str, pixel_type: str,
            graph_hash: str, preview_frames: int, what: str) -> None:
    """Read every plate frame, render it, write it atomically (resume-aware), keep preview tiles."""
    inputs = plate.input_files()
    picks = set(np.unique(np.linspace(0, len(plate.frames) - 1, min(preview_frames, len(plate.frames)))
                          .round().astype(int)).tolist()) if preview_frames else set()
    writer = SequenceWriter(out_pattern, mode=mode, pixel_type=pixel_type, graph_hash=graph_hash, protect=inputs)
    writer.check_inputs(list(plate.frames), inputs)
    with writer, progress.task(len(plate.frames), what) as bar:
        for i, frame in enumerate(plate.frames_iter()):
            bar.check_interrupt()
            if mode == "resume" and i not in picks and writer.first_missing([frame.number]) is None:
                report.kept += 1  # written by this same graph before: not rendered again
                bar.advance()
                continue
            out = render(frame, frame.pixels)
            path = writer.write(frame.number, out)
            if path is None:
                report.kept += 1
            else:
                report.written += 1
            if i in picks:
                report.tiles.append((str(frame.number), to_display(frame.pixels), to_display(out)))
            bar.advance()


# -------------------------------------------------------------------------------------------- face paint
@dataclasses.dataclass(frozen=True)
class PaintOptions:
    """model: the UV layout the decal is painted in. regions: where the paint may land (all visible face by
    default). feather_px: the edge of that region. opacity: scales the decal's alpha."""

    model: str = "mediapipe_canonical"
    regions: tuple[str, ...] = ("skin", "left_eye", "right_eye", "left_brow", "right_brow", "nose", "lips")
    feather_px: float = 2.0
    opacity: float = 1.0
    device: str = "cpu"


def read_decal(path: str) -> Texture:
    """A UV-space decal or texture edit (EXR linear, or PNG/TIFF sRGB-decoded; alpha optional) as a straight
    colour + alpha texture. Square textures only (the UV layout is square)."""
    px, _ = read_image(path)
    if px.shape[0] != px.shape[1]:
        raise InputError(f"a UV texture must be square, got {px.shape[1]}x{px.shape[0]}", file=path)
    rgb = torch.from_numpy(np.ascontiguousarray(px[..., :3])).permute(2, 0, 1)[None]
    a = torch.from_numpy(np.ascontiguousarray(px[..., 3:4] if px.shape[2] == 4 else np.ones_like(px[..., :1])))
    a = a.permute(2, 0, 1)[None]
    straight = torch.where(a > 1e-6, rgb / a.clamp_min(1e-6), torch.zeros_like(rgb))
    return Texture(colour=straight.float(), alpha=a.float())


def face_paint(decal: Texture, plate: Source, result: ShotResult, out_pattern: str, *,
               options: PaintOptions = PaintOptions(), mode: str = "error", pixel_type: str = "half",
               track_id: int | None = None, graph_hash: str = "", preview_frames: int = 4) -> SynthesisReport:
    """Track a UV-space decal onto every frame: rendered on each frame's mesh, composited premultiplied
    "over" the plate inside the visible face region. Frames without the face pass through."""
    mesh = FaceMesh.of(options.model, options.device)
    report = SynthesisReport()
    timer = _Timer(report)
    faces = _shot_faces(result, track_id)
    colour = decal.colour.to(mesh.device)
    alpha = (decal.alpha.to(mesh.device) * float(options.opacity)).clamp(0, 1)

    def over(plate_t, rr, region):  # premultiplied "over" inside the visible face region
        return rr.colour * region + plate_t * (1 - rr.alpha * region)

    render = _face_frames(faces, mesh, colour, alpha, options.regions, options.feather_px, report, timer, over)
    _stream(plate, out_pattern, render, report, mode=mode, pixel_type=pixel_type, graph_hash=graph_hash,
            preview_frames=preview_frames, what="face paint")
    return report


# --------------------------------------------------------------------------------------------- unstabilise
def unstabilise(crops: Source, plate: Source, result: ShotResult, out_pattern: str, *, feather_px: float = 16.0,
                mode: str = "error", pixel_type: str = "half", track_id: int | None = None, graph_hash: str = "",
                blend: BlendMode = "over", preview_frames: int = 4) -> SynthesisReport:
    """Paste a processed stabilised crop sequence (what Track Crops / ``facegraph analyse`` wrote, then
    painted or graded) back into the plate through each frame's ``frame_from_crop``. Frames with no crop or no
    alignment pass the plate through. The crop's size gives the alignment's scale."""
    from ...core.blend import PasteOptions
    from ..shot import window_offset

    if not result.tracks:
        raise EstimationError("the tracking data has no track to paste back along")
    tid = result.main_track().track_id if track_id is None or track_id < 0 else track_id
    t = result.track(tid)
    where = dict(zip(t.frames, t.alignments))
    crop_frames = set(crops.frames)
    report = SynthesisReport()
    timer = _Timer(report)
    opts = PasteOptions(mode="poisson" if blend == "poisson" else "over", feather_px=float(feather_px))
    crop_iter = iter(crops.frames_iter())
    pending: dict[int, np.ndarray] = {}

    def crop_of(n: int) -> np.ndarray | None:
        if n not in crop_frames:
            return None
        while n not in pending:
            try:
                c = next(crop_iter)
            except StopIteration:
                return None
            pending.clear()
            pending[c.number] = c.pixels
        return pending.get(n)

    def render(frame, px: np.ndarray) -> np.ndarray:
        a = where.get(frame.number)
        crop = crop_of(frame.number) if a is not None else None
        if crop is None:
            report.passed_through.append(frame.number)
            return px
        ch, cw = crop.shape[:2]
        a = scaled_alignment(a, (cw, ch))
        dx, dy = window_offset(frame)
        m = np.linalg.inv(np.vstack([a.crop_from_frame, [0, 0, 1]]))[:2]
        m[:, 2] -= (dx, dy)
        with timer("paste"):
            c = min(px.shape[2], crop.shape[2], 3)
            out = paste_back(_to_tensor(px[..., :c], torch.device("cpu")),
                             _to_tensor(crop[..., :c], torch.device("cpu")),
                             torch.as_tensor(m[None], dtype=torch.float64),
                             torch.ones((1, 1, ch, cw), dtype=torch.float32),
                             torch.zeros(1, dtype=torch.long), options=opts)
        res = px.copy()
        res[..., :c] = _to_numpy(out)
        return res

    _stream(plate, out_pattern, render, report, mode=mode, pixel_type=pixel_type, graph_hash=graph_hash,
            preview_frames=preview_frames, what="paste back")
    return report


def before_after_sheet(report: SynthesisReport, tile_width: int = 320) -> np.ndarray:
    """A contact sheet a person can judge at a glance: each previewed frame before (top) and after (below)."""
    from ...core.preview import contact_sheet

    if not report.tiles:
        raise InputError("no frames were previewed")
    before = [b for _, b, _ in report.tiles]
    after = [a for _, _, a in report.tiles]
    labels = [f"{n} before" for n, _, _ in report.tiles] + [f"{n} after" for n, _, _ in report.tiles]
    return contact_sheet(before + after, columns=len(before), labels=labels, tile_width=tile_width)


# ------------------------------------------------------------------------------------------- 3D export
FIT_SCHEMA = "facegraph.fit"
FIT_VERSION = 1


def export_face_fit(plate: Source, result: ShotResult, out_dir: str | Path, *, model: str = "mediapipe_canonical",
                    texture_size: int = 1024, track_id: int | None = None, keyframes: int = 12,
                    device: str = "cpu", overwrite: bool = True) -> dict:
    """Export the 3D face of a track through a shot: one identity for the shot, expression and camera per
    frame (``fit.json``), a mesh per frame with UVs (``mesh/face.####.obj``: a sequence Nuke's ReadGeo and
    Blender import, lined up with the plate: core/io/mesh.py), and the face's UV texture accumulated over
    ``keyframes`` frames of the shot, visibility- and view-angle-weighted (``texture.exr``, linear,
    premultiplied RGBA). MediaPipe's canonical topology takes each frame's mesh landmarks as its vertices;
    3DMMs (bfm_3ddfa, sfm_3448) are fitted with a shared identity (core.morphable.fit_shot). Returns the
    fit document that was written."""
    import json

    from ...core.fsutil import atomic_write
    from ...core.io.images import write_image
    from ...core.io.mesh import write_obj
    from ...core.morphable.fit import FitOptions
    from ...core.morphable.shot import fit_shot
    from ...models.registry import registry

    out = Path(out_dir)
    if not overwrite and (out / "fit.json").exists():
        raise ImageIOError("a face fit export exists here", file=str(out), hint="set overwrite to replace it")
    mesh = FaceMesh.of(model, device)
    m = mesh.model
    faces = _shot_faces(result, track_id)
    numbers = [f for f in plate.frames if f in faces]
    if not numbers:
        raise EstimationError("the track has no face in these frames: nothing to export")
    scheme = faces[numbers[0]].landmarks.scheme if faces[numbers[0]].landmarks is not None else "ibug68"
    if scheme not in ("ibug68", "mediapipe478", "mediapipe468"):
        raise EstimationError(f"landmarks of scheme {scheme!r} cannot drive a {m.name} fit")
    free = is_free_form(m)
    pts = []
    for n in numbers:
        lm = faces[n].landmarks
        pts.append(None if lm is None else np.asarray(lm.points if free else lm.points[:, :2], np.float64))
    size = tuple(result.frames[0].size) if result.frames else None
    shot = fit_shot(m, pts, options=FitOptions(scheme=scheme, use_contour=False), frame_size=size)
    picks = set(np.unique(np.linspace(0, len(numbers) - 1, min(keyframes, len(numbers))).round().astype(int)))
    keys = {numbers[i] for i in picks}
    acc = TextureAccumulator(full_weight=0.25)
    frames_doc = []
    pos = {n: i for i, n in enumerate(numbers)}
    with progress.task(len(plate.frames), "export 3D face") as bar:
        for frame in plate.frames_iter():
            bar.check_interrupt()
            n = frame.number
            i = pos.get(n)
            fr = shot.frames[i] if i is not None else None
            if i is None or fr is None:
                bar.advance()
                continue
            h = frame.info.display_window[3] if frame.info is not None else frame.pixels.shape[0]
            verts = face_vertices(faces[n], mesh, (frame.pixels.shape[1], frame.pixels.shape[0])) if free else \
                np.asarray(vertices_frame(m, fr), np.float32)
            write_obj(out / "mesh" / f"face.{n:04d}.obj", verts, m.triangles, m.uv, m.uv_triangles, plate_height=h,
                      comment=f"facegraph {m.name} frame {n}")
            if n in keys:
                v = _in_array(verts, frame, mesh.device)
                tex, w = extract_uv_texture(_to_tensor(frame.pixels[..., :3], mesh.device), v, mesh.triangles,
                                            mesh.uv, texture_size, uv_triangles=mesh.uv_triangles)
                acc.add(tex, w)
            frames_doc.append({"frame": n, "expression": np.asarray(fr.expression, float).round(6).tolist(),
                               "camera": np.asarray(fr.camera, float).round(6).tolist(),
                               "rotation": np.asarray(fr.rotation, float).round(8).tolist(),
                               "rms_px": round(float(fr.rms), 4), "filled": bool(shot.filled[i]),
                               "angles": [round(float(a), 4) for a in fr.angles]})
            bar.advance()
    colour, alpha = acc.texture()
    rgba = torch.cat([colour * alpha, alpha], 1)
    write_image(out / "texture.exr", _to_numpy(rgba), pixel_type="half", half_overflow="clamp", overwrite=True)
    spec = registry().get(model)
    doc = {"schema": FIT_SCHEMA, "version": FIT_VERSION, "model": m.name, "licence": spec.licence,
           "restricted": bool(m.restricted), "track_id": result.main_track().track_id if track_id in (None, -1)
           else track_id, "scheme": scheme, "conventions": "camera: 3x4 model -> display-window pixels and depth; "
           "mesh/face.####.obj: (x, H - y, -z) in pixels (core/io/mesh.py); texture.exr: UV layout, v down, "
           "premultiplied linear RGBA",
           "identity": np.asarray(shot.identity, float).round(6).tolist(), "frames": frames_doc,
           "notes": list(shot.notes)}
    atomic_write(out / "fit.json", json.dumps(doc))
    return doc
