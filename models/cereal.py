"""A reader for the eos library's cereal binary model files (the Surrey Face Model), written from the file
layout; no eos dependency.

Layout (cereal ``BinaryOutputArchive``: raw little-endian values, no field names, no endianness byte),
worked out from ``sfm_shape_3448.bin`` / ``expression_blendshapes_3448.bin`` and checked against the
serialisation order in eos's public headers (MorphableModel.hpp, PcaModel.hpp, Blendshape.hpp,
io/eigen_cerealisation.hpp):

    std::uint32                 class version, written once before the first MorphableModel
    std::vector / std::string   uint64 element count, then the elements (strings: raw bytes)
    Eigen matrix (float)        int32 rows, int32 cols, rows x cols float32 in column-major order
    std::array<int, 3>          3 int32; std::array<double, 2>: 2 float64 (no count)

    MorphableModel, version 1:  shape PcaModel, colour PcaModel, texture coordinates
                                (vector<array<double, 2>>, one (u, v) per vertex or empty)
    PcaModel:                   mean (D x 1), orthonormal basis (D x K), eigenvalues (K x 1: variances),
                                triangle list (vector<array<int, 3>>); an absent colour model has an
                                empty mean (0 x 1), basis (0 x 0) and eigenvalues (0 x 1)
    Blendshapes:                vector<Blendshape>, each name (string), deformation (D x 1)

Versions 2-4 (which add an optional expression model, landmark definitions and texture triangles) are not
read: they raise ModelError. Every count is bounded by the bytes that remain before anything is allocated,
and a file with bytes left over, a negative or inconsistent size, an index out of range or a non-finite value
raises :class:`~facegraph.core.errors.ModelError` naming the file and the offset.

Convention: arrays come back as stored (float32 data widened to float64, eos's vertex order x, y, z per
vertex, texture coordinates as stored in [0, 1]); axis and v-direction conversions are the loader's
(models/morphable.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import ModelError

#: the MorphableModel class versions this reader understands (see the module docstring)
SUPPORTED_VERSIONS = (1,)


@dataclass(frozen=True)
class PcaModel:
    mean: np.ndarray          # (D,) float64, D = 3 V (x, y, z per vertex)
    basis: np.ndarray         # (D, K) float64, orthonormal columns
    eigenvalues: np.ndarray   # (K,) float64 variances
    triangles: np.ndarray     # (F, 3) int64

    @property
    def empty(self) -> bool:
        return self.mean.size == 0


@dataclass(frozen=True)
class CerealMorphableModel:
    version: int
    shape: PcaModel
    colour: PcaModel
    texture_coordinates: np.ndarray   # (V, 2) float64 or (0, 2)


@dataclass(frozen=True)
class Blendshape:
    name: str
    deformation: np.ndarray   # (D,) float64


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    def fail(self, what: str) -> ModelError:
        return ModelError(f"malformed cereal model file: {what} (at byte {self.pos} of {len(self.data)})",
                          file=self.where)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > self.remaining:
            raise self.fail(f"{what} needs {n} bytes, {self.remaining} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self._take(struct.calcsize(fmt), what))[0]

    def count(self, item_bytes: int, what: str) -> int:
        n = self.scalar("Q", f"{what} count")
        if n * item_bytes > self.remaining:
            raise self.fail(f"{what} count {n} x {item_bytes} bytes exceeds the {self.remaining} bytes left")
        return int(n)

    def array(self, dtype: str, n: int, what: str) -> np.ndarray:
        item = np.dtype(dtype).itemsize
        return np.frombuffer(self._take(n * item, what), dtype, n).copy()

    def string(self, what: str) -> str:
        n = self.count(1, what)
        try:
            return bytes(self._take(n, what)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def matrix(self, what: str) -> np.ndarray:
        rows = self.scalar("i", f"{what} rows")
        cols = self.scalar("i", f"{what} cols")
        if rows < 0 or cols < 0:
            raise self.fail(f"{what} has a negative size {rows} x {cols}")
        if rows * cols * 4 > self.remaining:
            raise self.fail(f"{what} of {rows} x {cols} floats exceeds the {self.remaining} bytes left")
        flat = self.array("<f4", rows * cols, what).astype(np.float64)
        if not np.isfinite(flat).all():
            raise self.fail(f"{what} holds non-finite values")
        return flat.reshape(cols, rows).T  # column-major

    def end(self) -> None:
        if self.remaining:
            raise self.fail(f"{self.remaining} bytes left over after the last field")


def _pca(r: _Reader, what: str) -> PcaModel:
    mean = r.matrix(f"{what} mean")
    basis = r.matrix(f"{what} basis")
    eig = r.matrix(f"{what} eigenvalues")
    n = r.count(12, f"{what} triangle list")
    tri = r.array("<i4", 3 * n, f"{what} triangle list").astype(np.int64).reshape(n, 3)
    if mean.size == 0:  # an absent model: everything empty
        if basis.size or eig.size or n:
            raise r.fail(f"{what} has an empty mean but a basis, eigenvalues or triangles")
        return PcaModel(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 3), np.int64))
    if mean.shape[1] != 1 or mean.shape[0] % 3:
        raise r.fail(f"{what} mean must be (3 V) x 1, got {mean.shape}")
    d = mean.shape[0]
    k = basis.shape[1]
    if basis.shape[0] != d:
        raise r.fail(f"{what} basis has {basis.shape[0]} rows for a mean of {d}")
    if eig.shape != (k, 1) and not (k == 0 and eig.size == 0):
        raise r.fail(f"{what} eigenvalues must be {k} x 1, got {eig.shape}")
    if (eig < 0).any():
        raise r.fail(f"{what} eigenvalues (variances) must be >= 0")
    if n and (tri.min() < 0 or tri.max() >= d // 3):
        raise r.fail(f"{what} triangle indices must lie in [0, {d // 3})")
    return PcaModel(mean[:, 0].copy(), basis, eig.reshape(-1).copy(), tri)


def parse_morphable_model(data: bytes, where: str = "<bytes>") -> CerealMorphableModel:
    """Parse an eos MorphableModel (class version 1) from ``data``; ModelError on anything malformed."""
    r = _Reader(data, where)
    version = r.scalar("I", "class version")
    if version not in SUPPORTED_VERSIONS:
        raise r.fail(f"MorphableModel version {version} is not supported (only {SUPPORTED_VERSIONS})")
    shape = _pca(r, "shape model")
    if shape.empty:
        raise r.fail("the shape model is empty")
    colour = _pca(r, "colour model")
    if not colour.empty and colour.mean.shape != shape.mean.shape:
        raise r.fail(f"colour model has {colour.mean.size} values for {shape.mean.size} shape values")
    n = r.count(16, "texture coordinates")
    uv = r.array("<f8", 2 * n, "texture coordinates").reshape(n, 2)
    if n not in (0, shape.mean.size // 3):
        raise r.fail(f"{n} texture coordinates for {shape.mean.size // 3} vertices")
    if not np.isfinite(uv).all():
        raise r.fail("texture coordinates hold non-finite values")
    r.end()
    return CerealMorphableModel(version=int(version), shape=shape, colour=colour, texture_coordinates=uv)


def parse_blendshapes(data: bytes, where: str = "<bytes>") -> list[Blendshape]:
    """Parse an eos ``std::vector<Blendshape>``; every deformation must be a D x 1 vector of the same D."""
    r = _Reader(data, where)
    n = r.count(8 + 8, "blendshape")  # each needs at least a string count and a matrix header
    out: list[Blendshape] = []
    for i in range(n):
        name = r.string(f"blendshape {i} name")
        m = r.matrix(f"blendshape {i} ({name!r}) deformation")
        if m.ndim != 2 or m.shape[1] != 1 or m.shape[0] == 0 or m.shape[0] % 3:
            raise r.fail(f"blendshape {name!r} deformation must be (3 V) x 1, got {m.shape}")
        if out and m.shape[0] != out[0].deformation.shape[0]:
            raise r.fail(f"blendshape {name!r} has {m.shape[0]} values, {out[0].name!r} has "
                         f"{out[0].deformation.shape[0]}")
        out.append(Blendshape(name=name, deformation=m[:, 0].copy()))
    r.end()
    return out


def read_morphable_model(path: Path | str) -> CerealMorphableModel:
    """:func:`parse_morphable_model` of a file (e.g. ``sfm_shape_3448.bin``)."""
    return parse_morphable_model(_read(path), str(path))


def read_blendshapes(path: Path | str) -> list[Blendshape]:
    """:func:`parse_blendshapes` of a file (e.g. ``expression_blendshapes_3448.bin``)."""
    return parse_blendshapes(_read(path), str(path))


def _read(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read cereal model file: {exc}", file=str(path)) from None
