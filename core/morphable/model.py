"""The in-memory linear morphable model every loader produces and every fitter consumes.

Convention:
    Model space is right-handed: x towards the image's right for a frontal face (the subject's left), y up,
    z out of the face towards the camera. Units are the model's own (``unit``: "mm" for SFM, "cm" for the
    MediaPipe canonical mesh, "um" (micrometre-scaled) for BFM); fitting solves a scale, so nothing
    downstream assumes a unit.
    A shape is ``mean + identity_basis . alpha + expression_basis . beta`` with the bases as (K, V, 3) arrays
    of *unit-variance* directions (each basis vector already multiplied by its standard deviation), so the
    prior on every coefficient is N(0, 1) and a regulariser ``lambda * |alpha|^2`` means the same for every
    model. A model without an identity basis (MediaPipe canonical) has K_id == 0; one with blendshapes stores
    them as expression directions with ``expression_kind == "blendshapes"`` (coefficients in [0, 1], not
    Gaussian).
    ``landmarks`` maps a scheme ("ibug68", "mediapipe478", ...) to (K,) int vertex indices, -1 where the
    scheme's point has no fixed vertex (the jaw's contour points in a contour-aware fit).
    ``contours`` maps "left" / "right" to candidate vertex lines (lists of indices ordered top to bottom) that
    the jaw's silhouette points (ibug68 0-7 on the subject's right = the image's left = model -x; 9-16 on the
    subject's left) are matched against.
    ``uv`` is (V, 2) in [0, 1], u right, v *down* (image-row order, origin at the texture's top-left corner),
    or None where the model has none; ``uv_triangles`` (F, 3) index ``uv`` when UV seams split vertices
    (else None: ``triangles`` index both).
    ``regions`` is (V,) int8 labels into ``region_names`` (skin, eyes, brows, lips, mouth, nose, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

REGION_NAMES = ("skin", "left_eye", "right_eye", "left_brow", "right_brow", "nose", "lips", "mouth_interior")


@dataclass(frozen=True, eq=False)
class MorphableModel:
    name: str
    mean: np.ndarray                       # (V, 3) float64
    identity_basis: np.ndarray             # (K_id, V, 3) float64, unit-variance directions
    expression_basis: np.ndarray           # (K_exp, V, 3) float64
    triangles: np.ndarray                  # (F, 3) int64, counter-clockwise seen from the front (+z)
    expression_kind: str = "pca"           # "pca" (N(0,1) coefficients) | "blendshapes" ([0, 1] weights)
    expression_names: tuple[str, ...] = ()
    uv: np.ndarray | None = None           # (V, 2) or (V_uv, 2) float64 in [0, 1], v down
    uv_triangles: np.ndarray | None = None  # (F, 3) int64 into uv, when seams split vertices
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    contours: dict[str, list[np.ndarray]] = field(default_factory=dict)
    regions: np.ndarray | None = None      # (V,) int8 into region_names
    region_names: tuple[str, ...] = REGION_NAMES
    unit: str = ""
    licence: str = ""
    restricted: bool = False               # non-commercial / copyleft: never a default
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        v = self.mean.shape[0]
        if self.mean.ndim != 2 or self.mean.shape[1] != 3:
            raise InputError(f"morphable model {self.name}: mean must be (V, 3), got {self.mean.shape}")
        for what, basis in (("identity", self.identity_basis), ("expression", self.expression_basis)):
            if basis.ndim != 3 or basis.shape[1:] != (v, 3):
                raise InputError(f"morphable model {self.name}: {what} basis must be (K, {v}, 3), got {basis.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or (
                self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= v)):
            raise InputError(f"morphable model {self.name}: triangles must be (F, 3) indices < {v}")
        if self.uv is not None and (self.uv.ndim != 2 or self.uv.shape[1] != 2):
            raise InputError(f"morphable model {self.name}: uv must be (N, 2), got {self.uv.shape}")
        if self.uv is not None and self.uv_triangles is None and self.uv.shape[0] != v:
            raise InputError(f"morphable model {self.name}: uv has {self.uv.shape[0]} rows for {v} vertices "
                             "and no uv_triangles")
        if self.regions is not None and self.regions.shape != (v,):
            raise InputError(f"morphable model {self.name}: regions must be ({v},), got {self.regions.shape}")

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_identity(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def n_expression(self) -> int:
        return int(self.expression_basis.shape[0])

    @property
    def has_uv(self) -> bool:
        return self.uv is not None

    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) float64 model-space vertices for coefficients (K_id,) and (K_exp,) (None = zeros)."""
        out = self.mean.copy()
        if identity is not None and self.n_identity:
            out += np.tensordot(np.asarray(identity, np.float64), self.identity_basis, axes=1)
        if expression is not None and self.n_expression:
            out += np.tensordot(np.asarray(expression, np.float64), self.expression_basis, axes=1)
        return out

    def landmark_indices(self, scheme: str) -> np.ndarray:
        """(K,) vertex indices for ``scheme`` (-1 = no fixed vertex); InputError naming what the model has."""
        if scheme not in self.landmarks:
            raise InputError(f"morphable model {self.name} has no {scheme!r} correspondences "
                             f"(it has: {', '.join(sorted(self.landmarks)) or 'none'})")
        return self.landmarks[scheme]
