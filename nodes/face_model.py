"""3DMM nodes: load a face model, fit it to landmarks, extract / render UV textures, face region masks.

Thin: meshes, textures and fits come from models.pipeline.synthesis (FaceMesh, face_vertices,
texture_from_frame) and core.morphable / core.render; this module unpacks the graph's values, loops over the
frames and faces of a batch, and packs the results.

Convention:
    IMAGE (B, H, W, C) scene-linear becomes (B, C, H, W) by a permuted view (nodes.blend.image_in); MASK
    (B, H, W) in [0, 1]. FACEGRAPH_FACE_MODEL is a FaceMesh whose topology lives on the device chosen in Load
    Face Model: the kernels run there, and outputs come back on the input images' device. Face coordinates are
    the images' pixels (pixel-area, core/conventions.py). A face without landmarks (or whose mesh cannot be
    placed) is skipped with a note in its notes / the ui text and its frame passes through; an empty mask
    passes the target through; a mask of another size or NaN in a source raise InputError naming the input.
Licences: mediapipe_canonical is Apache-2.0 (the default); bfm_3ddfa (Basel Face Model) and sfm_3448 (Surrey
Face Model) are for non-commercial use only: Load Face Model says so in its ui text.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..core import progress
from ..core.errors import EstimationError, InputError
from ..core.morphable.fit import CAMERAS, INNER_FALLBACK, FitOptions, FitResult, fit, is_free_form
from ..core.morphable.shot import ShotSmoothing, fit_shot
from ..core.render.masks import REGION_FEATHER_PX, combine_with_user_mask, feather, polygon_mask, region_masks
from ..core.render.raster import rasterise
from ..core.render.uv import TextureAccumulator, render_uv_texture
from ..core.temporal import SMOOTH_METHODS
from ..core.types import Face, FrameFaces
from ..models.devices import DEVICE_CHOICES, resolve_device
from ..models.morphable import MORPHABLE_MODEL_IDS, load_morphable_model
from ..models.pipeline.synthesis import MESH_SCHEMES, FaceMesh, Texture, face_vertices, texture_from_frame
from ..models.registry import registry
from .blend import check_finite, image_in, image_out, mask_in, mask_out, with_notes
from .types import (BOOLEAN, CATEGORY, FACE_MODEL, FACES, FIT, FLOAT, IMAGE, INT, MASK, TEXTURE, widget)

#: the default first: the licence-clean MediaPipe canonical mesh
MODEL_CHOICES: tuple[str, ...] = ("mediapipe_canonical",) + tuple(m for m in MORPHABLE_MODEL_IDS
                                                                 if m != "mediapipe_canonical")
FIT_MODES: tuple[str, ...] = ("per frame", "shot")
#: Texture alpha reaches 1 at this accumulated texel weight: models.pipeline.synthesis.texture_from_frame's
#: choice (|n_z|^2 = 0.25, 60 degrees from the view axis), repeated here for a batch-wide accumulator
FULL_WEIGHT = 0.25
#: iBUG-68 inner lip points 60-67 (the mouth opening; the mesh leaves it as a hole)
INNER_LIP = tuple(range(60, 68))


def _licence(model_id: str) -> str:
    spec = registry().get(model_id)
    flag = f"{spec.licence_flag}: " if spec.restricted else ""
    return f"{model_id}: {flag}{spec.licence}"


def _check_faces(faces: Any, images: torch.Tensor) -> list[FrameFaces]:
    """The faces of these (B, C, H, W) images: one entry per image, found in images of this size."""
    n, (h, w) = images.shape[0], images.shape[2:]
    if not isinstance(faces, list) or len(faces) != n:
        raise InputError(f"faces hold {len(faces) if isinstance(faces, list) else '?'} frames for {n} images",
                         hint="connect the faces made from these same images", input="faces")
    for ff in faces:
        if tuple(ff.size) not in ((0, 0), (w, h)):
            raise InputError(f"the faces of frame {ff.frame} were found in a {ff.size[0]}x{ff.size[1]} image, "
                             f"these images are {w}x{h}", hint="connect the faces made from these same images "
                             "(a data window differing from the display window shifts them too)", input="faces")
    return faces


def _check_mesh(face_model: Any) -> FaceMesh:
    if not isinstance(face_model, FaceMesh):
        raise InputError(f"face_model must come from Load Face Model, got {type(face_model).__name__}",
                         input="face_model")
    return face_model


def _picked(ff: FrameFaces, face_index: int) -> list[tuple[int, Face]]:
    """(index, face) pairs of a frame: all faces for face_index -1, else that one (none when absent)."""
    if face_index < 0:
        return list(enumerate(ff.faces))
    return [(face_index, ff.faces[face_index])] if face_index < len(ff.faces) else []


def _vertices(face: Face, mesh: FaceMesh, size: tuple[int, int]) -> torch.Tensor:
    """(1, V, 3) float32 screen vertices on the mesh's device (models.pipeline.synthesis.face_vertices)."""
    v = np.array(face_vertices(face, mesh, size), np.float32)  # a writable copy: landmarks are read-only
    return torch.from_numpy(v).to(mesh.device)[None]


# ------------------------------------------------------------------------------------------------- load
class LoadFaceModel:
    DESCRIPTION = ("Load a face model (topology, UVs, face regions) for fitting, UV textures and region masks. "
                   "mediapipe_canonical (Apache-2.0, the default) takes MediaPipe's 478 mesh landmarks as its "
                   "vertices. bfm_3ddfa (Basel Face Model) and sfm_3448 (Surrey Face Model) are fitted to the "
                   "landmarks and are for NON-COMMERCIAL use only.")
    CATEGORY = f"{CATEGORY}/3dmm"
    FUNCTION = "load"
    RETURN_TYPES = (FACE_MODEL,)
    RETURN_NAMES = ("face_model",)
    OUTPUT_TOOLTIPS = ("the model with its topology on the chosen device",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": widget(MODEL_CHOICES, "mediapipe_canonical: Apache-2.0; bfm_3ddfa, sfm_3448: "
                                           "NON-COMMERCIAL licences", default=MODEL_CHOICES[0]),
            "device": widget(DEVICE_CHOICES, "where the rasteriser and texture kernels run (auto: the host's "
                                             "device; cuda falls back to the CPU without a GPU)", default="auto"),
        }}

    def load(self, model="mediapipe_canonical", device="auto"):
        mesh = FaceMesh.of(load_morphable_model(model), resolve_device(device))
        text = f"{_licence(model)} ({mesh.model.n_vertices} vertices, {len(mesh.triangles)} triangles, " \
               f"on {mesh.device})"
        return {"ui": {"text": [text]}, "result": (mesh,)}


# -------------------------------------------------------------------------------------------------- fit
def _fit_points(face: Face, mesh: FaceMesh) -> tuple[np.ndarray, str]:
    """The points and scheme a fit of ``face`` uses (EstimationError when it has none the model knows):
    a basis-free model takes mesh landmarks with their depth (3D Procrustes), others (K, 2)."""
    lm = face.landmarks
    if lm is None:
        raise EstimationError("no landmarks")
    m = mesh.model
    known = lm.scheme in m.landmarks or (lm.scheme == "mediapipe468" and "mediapipe478" in m.landmarks)
    if not known:
        raise EstimationError(f"model {m.name} has no correspondences for landmark scheme {lm.scheme!r}")
    pts = np.asarray(lm.points, np.float64)
    if lm.scheme == "mediapipe478" and pts.shape[0] != 478 or lm.scheme == "mediapipe468" and pts.shape[0] < 468:
        raise EstimationError(f"{pts.shape[0]} points for scheme {lm.scheme}")
    if lm.scheme == "mediapipe468":
        pts = pts[:468]
    use_depth = is_free_form(m) and lm.scheme in MESH_SCHEMES and pts.shape[1] == 3
    return (pts if use_depth else pts[:, :2]), lm.scheme


class FitFaceModel:
    DESCRIPTION = ("Fit the face model to every face's landmarks (core.morphable.fit): pose, identity and "
                   "expression, in frame pixels. 'shot' mode fits one identity per person over the batch "
                   "(core.morphable.shot.fit_shot; faces grouped by track id, else by index). Each face gets its "
                   "morphable parameters; faces without landmarks are skipped with a note.")
    CATEGORY = f"{CATEGORY}/3dmm"
    FUNCTION = "fit"
    RETURN_TYPES = (FACES, FIT)
    RETURN_NAMES = ("faces", "fit")
    OUTPUT_TOOLTIPS = ("the faces with morphable parameters (model, identity, expression, 3x4 camera)",
                       "the fits per image, per face (None where a face could not be fitted)")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "faces": widget(FACES, "faces with landmarks (ibug68 or a MediaPipe mesh)"),
            "face_model": widget(FACE_MODEL, "from Load Face Model"),
            "camera": widget(CAMERAS, "orthographic (scaled orthographic) or perspective", default="orthographic"),
            "identity_prior": widget(FLOAT, "weight of the identity prior (1: MAP under the model's prior; "
                                            "larger: closer to the mean face)", default=1.0, min=0.0, max=1000.0,
                                     step=0.1),
            "expression_prior": widget(FLOAT, "weight of the expression prior", default=1.0, min=0.0, max=1000.0,
                                       step=0.1),
            "use_contour": widget(BOOLEAN, "iBUG jaw points follow the face's silhouette", default=True),
            "mode": widget(FIT_MODES, "per frame: independent fits; shot: one identity for the batch",
                           default="per frame"),
        }, "optional": {
            "focal_px": widget(FLOAT, "perspective focal length in pixels (0: 35 mm on a 36 mm-wide sensor)",
                               default=0.0, min=0.0, max=1e6),
            "smoothing": widget(SMOOTH_METHODS, "shot mode: temporal smoothing of pose and expression over the "
                                                "batch (none: raw fits with the shared identity)", default="none"),
            "fps": widget(FLOAT, "shot mode: frame rate for the smoothing", default=24.0, min=1.0, max=240.0),
        }}

    def fit(self, faces, face_model, camera="orthographic", identity_prior=1.0, expression_prior=1.0,
            use_contour=True, mode="per frame", focal_px=0.0, smoothing="none", fps=24.0):
        mesh = _check_mesh(face_model)
        if not isinstance(faces, list):
            raise InputError("faces must be a list of frames' faces (from Face Landmarks)", input="faces")
        if mode not in FIT_MODES:
            raise InputError(f"mode must be one of {FIT_MODES}, got {mode!r}", input="mode")
        base = FitOptions(camera=camera, focal_px=float(focal_px) if focal_px > 0 else None,
                          identity_prior=float(identity_prior), expression_prior=float(expression_prior),
                          use_contour=bool(use_contour))
        fits: list[list[FitResult | None]] = [[None] * len(ff.faces) for ff in faces]
        why: dict[tuple[int, int], str] = {}
        points: dict[tuple[int, int], tuple[np.ndarray, str]] = {}
        for t, ff in enumerate(faces):
            for i, face in enumerate(ff.faces):
                try:
                    points[t, i] = _fit_points(face, mesh)
                except EstimationError as exc:
                    why[t, i] = exc.message
        m = mesh.model
        with progress.task(len(points), f"fit {m.name}") as bar:
            if mode == "per frame":
                for (t, i), (pts, scheme) in points.items():
                    try:
                        fits[t][i] = fit(m, pts, options=dataclasses.replace(base, scheme=scheme),
                                         frame_size=tuple(faces[t].size))
                    except EstimationError as exc:
                        why[t, i] = exc.message
                    bar.advance()
            else:
                self._shot(faces, mesh, base, points, fits, why, ShotSmoothing(method=smoothing, fps=float(fps)))
                bar.advance(len(points))
        out = []
        for t, ff in enumerate(faces):
            new = []
            for i, face in enumerate(ff.faces):
                r = fits[t][i]
                if r is None:
                    note = f"fit={m.name}:skipped:{why.get((t, i), '?')}"
                    new.append(face.replace(notes=tuple(face.notes) + (note,)))
                else:
                    note = f"fit={m.name}:{mode}:rms={r.rms:.2f}px"
                    new.append(face.replace(morphable=r.morphable_params(), notes=tuple(face.notes) + (note,)))
            out.append(ff.replace(faces=tuple(new)))
        done = [r for row in fits for r in row if r is not None]
        text = [f"{len(done)} face(s) fitted ({mode}), {len(why)} skipped" +
                (f", median rms {float(np.median([r.rms for r in done])):.2f} px" if done else "")]
        text += [f"frame {faces[t].frame} face {i}: {w}" for (t, i), w in sorted(why.items())][:20]
        if m.restricted:
            text.append(_licence(m.name))
        return {"ui": {"text": ["\n".join(text)]}, "result": (out, fits)}

    @staticmethod
    def _shot(faces, mesh, base, points, fits, why, smoothing: ShotSmoothing) -> None:
        """One fit_shot per person: faces grouped by track id (else by face index), their most common scheme."""
        groups: dict[Any, list[tuple[int, int]]] = {}
        for (t, i) in points:
            face = faces[t].faces[i]
            key = ("track", face.track_id) if face.track_id is not None else ("index", i)
            groups.setdefault(key, []).append((t, i))
        for members in groups.values():
            schemes = [points[k][1] for k in members]
            scheme = max(set(schemes), key=schemes.count)
            per_frame: list[np.ndarray | None] = [None] * len(faces)
            where: dict[int, tuple[int, int]] = {}
            for (t, i) in members:
                if points[t, i][1] != scheme:
                    why[t, i] = f"scheme {points[t, i][1]} differs from the shot's {scheme}"
                elif t in where:
                    why[t, i] = "a second face of the same track in one frame"
                else:
                    per_frame[t], where[t] = points[t, i][0], (t, i)
            try:
                res = fit_shot(mesh.model, per_frame, options=dataclasses.replace(base, scheme=scheme),
                               smoothing=smoothing, frame_size=tuple(faces[min(where)].size))
            except EstimationError as exc:
                for k in where.values():
                    why[k] = exc.message
                continue
            for t, (tt, i) in where.items():
                if res.frames[t] is None:
                    why[tt, i] = "no fit in the shot"
                else:
                    fits[tt][i] = res.frames[t]


# ------------------------------------------------------------------------------------------ UV texture
class ExtractUVTexture:
    DESCRIPTION = ("The face's UV texture from the frames (scene-linear, visibility- and view-angle-weighted; "
                   "models.pipeline.synthesis.texture_from_frame): accumulated over the batch into one texture, "
                   "or one per frame. Frames without the face (or without landmarks) are skipped with a note.")
    CATEGORY = f"{CATEGORY}/3dmm"
    FUNCTION = "extract"
    RETURN_TYPES = (TEXTURE, IMAGE)
    RETURN_NAMES = ("texture", "preview")
    OUTPUT_TOOLTIPS = ("straight colour + alpha in the model's UV layout",
                       "the texture's colour x alpha over black (linear)")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces with landmarks, one entry per image"),
            "face_model": widget(FACE_MODEL, "from Load Face Model (its UV layout)"),
            "texture_size": widget(INT, "texels per side", default=1024, min=16, max=8192, step=16),
            "face_index": widget(INT, "which face of each frame (0: the first, the best detected)", default=0,
                                 min=0, max=256),
            "accumulate": widget(BOOLEAN, "one texture from the whole batch (weighted mean); off: one per frame",
                                 default=True),
        }}

    def extract(self, images, faces, face_model, texture_size=1024, face_index=0, accumulate=True):
        mesh = _check_mesh(face_model)
        img = check_finite(image_in(images, "images"), "images")
        faces = _check_faces(faces, img)
        size = int(texture_size)
        host = img.permute(0, 2, 3, 1)[..., :3].detach().cpu()  # what texture_from_frame reads: (H, W, 3) numpy
        acc = TextureAccumulator(full_weight=FULL_WEIGHT) if accumulate else None
        colours, alphas, notes = [], [], []
        with progress.task(img.shape[0], "extract UV texture") as bar:
            for b, ff in enumerate(faces):
                picked = _picked(ff, int(face_index))
                tex = None
                if not picked:
                    notes.append(f"frame {ff.frame}: no face {face_index}, skipped")
                else:
                    try:
                        tex = texture_from_frame(host[b].numpy(), picked[0][1], mesh, size, accumulator=acc)
                    except EstimationError as exc:
                        notes.append(f"frame {ff.frame}: {exc.message}, skipped")
                if not accumulate:
                    colours.append(tex.colour if tex else torch.zeros((1, 3, size, size), device=mesh.device))
                    alphas.append(tex.alpha if tex else torch.zeros((1, 1, size, size), device=mesh.device))
                bar.advance()
        if accumulate:
            if acc.frames == 0:
                raise InputError(f"no frame has a face {face_index} with landmarks to take a texture from",
                                 hint="check the faces (Face Landmarks) and face_index", input="faces")
            colour, alpha = acc.texture()
        else:
            if len(notes) == len(faces):
                raise InputError(f"no frame has a face {face_index} with landmarks to take a texture from",
                                 hint="check the faces (Face Landmarks) and face_index", input="faces")
            colour, alpha = torch.cat(colours), torch.cat(alphas)
        texture = Texture(colour=colour, alpha=alpha)
        preview = image_out((colour * alpha).to(img.device))
        cover = float((alpha > 0).float().mean())
        return with_notes((texture, preview), notes, f"{size}x{size} texture from {len(faces) - len(notes)} "
                                                     f"frame(s), {100 * cover:.0f}% of the texels seen")


def _texture_input(texture, texture_image, texture_mask, mesh: FaceMesh) -> Texture:
    """The TEXTURE, or an IMAGE (premultiplied, with an optional MASK as its alpha) used as one."""
    if texture is not None and texture_image is not None:
        raise InputError("connect either texture or texture_image, not both", input="texture_image")
    if texture is not None:
        if not isinstance(texture, Texture):
            raise InputError(f"texture must come from Extract UV Texture, got {type(texture).__name__}",
                             input="texture")
        return Texture(colour=texture.colour.to(mesh.device), alpha=texture.alpha.to(mesh.device))
    if texture_image is None:
        raise InputError("connect a texture (Extract UV Texture) or a texture_image (a UV decal)",
                         input="texture")
    rgba = check_finite(image_in(texture_image, "texture_image"), "texture_image").to(mesh.device)
    if rgba.shape[2] != rgba.shape[3]:
        raise InputError(f"a UV texture must be square, got {rgba.shape[3]}x{rgba.shape[2]}", input="texture_image")
    rgb = rgba[:, :3]
    a = mask_in(texture_mask, "texture_mask", rgba)
    if a is None:
        a = rgba[:, 3:4] if rgba.shape[1] == 4 else torch.ones_like(rgb[:, :1])
    # premultiplied -> straight where alpha > 1e-6 (core.colour.unpremultiply's threshold), 0 where unseen
    straight = torch.where(a > 1e-6, rgb / a.clamp_min(1e-6), torch.zeros_like(rgb))
    return Texture(colour=straight.expand(max(a.shape[0], rgb.shape[0]), -1, -1, -1),
                   alpha=a.expand(max(a.shape[0], rgb.shape[0]), -1, -1, -1).clamp(0, 1))


class RenderUVTexture:
    DESCRIPTION = ("Render a UV texture (from Extract UV Texture, or an image used as a UV decal with an "
                   "optional mask as its alpha) onto each frame's face mesh (core.render.render_uv_texture), "
                   "composited premultiplied 'over' the frames. Frames without the face pass through.")
    CATEGORY = f"{CATEGORY}/3dmm"
    FUNCTION = "render"
    RETURN_TYPES = (IMAGE, MASK, IMAGE)
    RETURN_NAMES = ("images", "alpha", "render")
    OUTPUT_TOOLTIPS = ("the render over the frames", "the render's alpha (coverage x texture alpha x opacity)",
                       "the render alone, premultiplied")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "linear frames"),
            "faces": widget(FACES, "faces with landmarks, one entry per image"),
            "face_model": widget(FACE_MODEL, "from Load Face Model (the texture's UV layout)"),
            "face_index": widget(INT, "which face of each frame (-1: every face)", default=0, min=-1, max=256),
            "opacity": widget(FLOAT, "scales the texture's alpha", default=1.0, min=0.0, max=1.0, step=0.05),
        }, "optional": {
            "texture": widget(TEXTURE, "from Extract UV Texture (one, or one per frame)"),
            "texture_image": widget(IMAGE, "or: a square image in the model's UV layout (linear, premultiplied)"),
            "texture_mask": widget(MASK, "the texture_image's alpha (default: its own, or opaque)"),
        }}

    def render(self, images, faces, face_model, face_index=0, opacity=1.0, texture=None, texture_image=None,
               texture_mask=None):
        mesh = _check_mesh(face_model)
        img = image_in(images, "images")
        faces = _check_faces(faces, img)
        tex = _texture_input(texture, texture_image, texture_mask, mesh)
        if tex.colour.shape[0] not in (1, img.shape[0]):
            raise InputError(f"{tex.colour.shape[0]} textures for {img.shape[0]} images: connect 1 or one per image",
                             input="texture")
        alpha_all = (tex.alpha * float(opacity)).clamp(0, 1)
        h, w = img.shape[2:]
        frames = img.to(mesh.device)
        comp, alphas, renders, notes = [], [], [], []
        with progress.task(img.shape[0], "render UV texture") as bar:
            for b, ff in enumerate(faces):
                k = b if tex.colour.shape[0] > 1 else 0
                colour = torch.zeros((1, 3, h, w), device=mesh.device)
                alpha = torch.zeros((1, 1, h, w), device=mesh.device)
                picked = _picked(ff, int(face_index))
                if not picked:
                    notes.append(f"frame {ff.frame}: no face {face_index}, passed through")
                for i, face in picked:
                    try:
                        verts = _vertices(face, mesh, (w, h))
                    except EstimationError as exc:
                        notes.append(f"frame {ff.frame} face {i}: {exc.message}, passed through")
                        continue
                    rr = render_uv_texture(tex.colour[k:k + 1], verts, mesh.triangles, mesh.uv, (w, h),
                                           uv_triangles=mesh.uv_triangles, texture_alpha=alpha_all[k:k + 1])
                    colour = rr.colour + colour * (1 - rr.alpha)  # later faces over earlier ones
                    alpha = rr.alpha + alpha * (1 - rr.alpha)
                f = frames[b:b + 1]
                out = f.clone()
                out[:, :3] = colour + f[:, :3] * (1 - alpha)
                if f.shape[1] == 4:
                    out[:, 3:] = alpha + f[:, 3:] * (1 - alpha)
                comp.append(out)
                alphas.append(alpha)
                renders.append(torch.cat([colour, alpha], 1) if f.shape[1] == 4 else colour)
                bar.advance()
        dev = img.device
        return with_notes((image_out(torch.cat(comp).to(dev)), mask_out(torch.cat(alphas).to(dev)),
                           image_out(torch.cat(renders).to(dev))), notes,
                          f"rendered onto {img.shape[0]} frame(s)")


# ------------------------------------------------------------------------------------------ region mask
REGION_TOGGLES: dict[str, tuple[str, ...]] = {
    "skin": ("skin",), "eyes": ("left_eye", "right_eye"), "brows": ("left_brow", "right_brow"),
    "nose": ("nose",), "lips": ("lips",), "mouth_interior": ("mouth_interior",)}


def _inner_lip_vertices(mesh: FaceMesh) -> list[int] | None:
    """Vertex ids of iBUG 60-67 on the model (unmapped inner corners take core.morphable.fit.INNER_FALLBACK)."""
    lm = mesh.model.landmarks.get("ibug68")
    if lm is None:
        return None
    ids = [int(lm[INNER_FALLBACK.get(j, j)] if lm[j] < 0 else lm[j]) for j in INNER_LIP]
    return ids if min(ids) >= 0 else None


class FaceRegionMask:
    DESCRIPTION = ("A soft mask of chosen face regions as seen in each frame (visible parts only; "
                   "core.render.region_masks on the face's mesh), the mouth interior from the inner lip outline "
                   "(the mesh leaves it open), feathered once over the union, restricted by an optional user "
                   "mask (minimum). Faces without landmarks add nothing, with a note.")
    CATEGORY = f"{CATEGORY}/3dmm"
    FUNCTION = "mask"
    RETURN_TYPES = (MASK,)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("the regions' mask per frame, in [0, 1]",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": widget(IMAGE, "the frames (for their size)"),
            "faces": widget(FACES, "faces with landmarks, one entry per image"),
            "face_model": widget(FACE_MODEL, "from Load Face Model (its region labels)"),
            "skin": widget(BOOLEAN, "skin (forehead, cheeks, chin)", default=True),
            "eyes": widget(BOOLEAN, "both eyes", default=True),
            "brows": widget(BOOLEAN, "both brows", default=True),
            "nose": widget(BOOLEAN, "nose", default=True),
            "lips": widget(BOOLEAN, "lips", default=True),
            "mouth_interior": widget(BOOLEAN, "inside the inner lip outline (teeth, tongue)", default=False),
            "feather_px": widget(FLOAT, "10-90 % edge ramp in pixels", default=REGION_FEATHER_PX, min=0.0,
                                 max=256.0, step=0.5),
            "face_index": widget(INT, "which face of each frame (-1: every face)", default=-1, min=-1, max=256),
        }, "optional": {
            "mask": widget(MASK, "a user mask (1 = the face shows) combined by minimum, e.g. an occlusion matte"),
        }}

    def mask(self, images, faces, face_model, skin=True, eyes=True, brows=True, nose=True, lips=True,
             mouth_interior=False, feather_px=REGION_FEATHER_PX, face_index=-1, mask=None):
        mesh = _check_mesh(face_model)
        img = image_in(images, "images")
        faces = _check_faces(faces, img)
        user = mask_in(mask, "mask", img)
        flags = {"skin": skin, "eyes": eyes, "brows": brows, "nose": nose, "lips": lips,
                 "mouth_interior": mouth_interior}
        names = [n for k, on in flags.items() if on for n in REGION_TOGGLES[k]]
        if not names:
            raise InputError("no region chosen: turn on at least one of skin, eyes, brows, nose, lips, "
                             "mouth_interior", input="skin")
        ids = mesh.region_ids(names)
        lip = _inner_lip_vertices(mesh) if mouth_interior else None
        h, w = img.shape[2:]
        out, notes = [], []
        with progress.task(img.shape[0], "face region mask") as bar:
            for ff in faces:
                m = torch.zeros((1, 1, h, w), device=mesh.device)
                picked = _picked(ff, int(face_index))
                if not picked:
                    notes.append(f"frame {ff.frame}: no face {face_index}, empty mask")
                for i, face in picked:
                    try:
                        verts = _vertices(face, mesh, (w, h))
                    except EstimationError as exc:
                        notes.append(f"frame {ff.frame} face {i}: {exc.message}, not in the mask")
                        continue
                    ras = rasterise(verts, mesh.triangles, (w, h))
                    regions = region_masks(verts, mesh.triangles, mesh.labels, ids, (w, h), feather_px=0.0,
                                           raster=ras)
                    m = torch.maximum(m, regions.amax(dim=1, keepdim=True))
                    if lip is not None:
                        m = torch.maximum(m, polygon_mask(verts[:, lip, :2].contiguous(), (w, h)))
                out.append(feather(m, float(feather_px)) if feather_px > 0 else m)
                bar.advance()
        result = torch.cat(out)
        if user is not None:
            result = combine_with_user_mask(result, user.to(mesh.device))
        cover = float((result > 0.5).float().mean())
        return with_notes((mask_out(result.to(img.device)),), notes,
                          f"{', '.join(k for k, on in flags.items() if on)}: {100 * cover:.1f}% of the pixels")


NODES = {
    "FacegraphLoadFaceModel": (LoadFaceModel, "Load Face Model (facegraph)"),
    "FacegraphFitFaceModel": (FitFaceModel, "Fit Face Model (facegraph)"),
    "FacegraphExtractUVTexture": (ExtractUVTexture, "Extract UV Texture (facegraph)"),
    "FacegraphRenderUVTexture": (RenderUVTexture, "Render UV Texture (facegraph)"),
    "FacegraphFaceRegionMask": (FaceRegionMask, "Face Region Mask (facegraph)"),
}
