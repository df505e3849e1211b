"""Mesh files: Wavefront OBJ with texture coordinates, one file per frame (a mesh sequence that Nuke's
ReadGeo and Blender's OBJ importer read as ``face.####.obj``).

Convention:
    Vertices come in facegraph's screen space (x, y display-window pixels, origin top-left, y down; z depth in
    pixels, larger = further: core/render) and are written in a right-handed y-up space of the same units:
    (x, H - y, -z) with H the plate height, so the mesh lines up with the plate seen through an orthographic
    camera looking down -z whose frame is the plate (x right, y up). Texture coordinates are written v-up as
    OBJ expects (vt = (u, 1 - v) of facegraph's v-down layout). Faces are 1-based ``f v/vt``.
"""
from __future__ import annotations

import io
import os

import numpy as np

from ..errors import InputError
from ..fsutil import atomic_write


def obj_text(vertices: np.ndarray, triangles: np.ndarray, uv: np.ndarray | None = None,
             uv_triangles: np.ndarray | None = None, *, plate_height: float, comment: str = "") -> str:
    """The OBJ text of one mesh (see the module Convention). vertices (V, 3), triangles (F, 3) int, uv (V|Vt, 2)
    in [0, 1] v-down with uv_triangles (F, 3) where seams split vertices."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(triangles, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
        raise InputError(f"OBJ vertices must be finite (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise InputError("OBJ triangles must be (F, 3) indices into the vertices")
    out = io.StringIO()
    if comment:
        out.write(f"# {comment}\n")
    xyz = np.stack([v[:, 0], plate_height - v[:, 1], -v[:, 2]], 1)
    np.savetxt(out, xyz, fmt="v %.4f %.4f %.4f")
    if uv is not None:
        t = np.asarray(uv, np.float64)
        np.savetxt(out, np.stack([t[:, 0], 1.0 - t[:, 1]], 1), fmt="vt %.6f %.6f")
        ft = np.asarray(uv_triangles if uv_triangles is not None else f, np.int64) + 1
        fv = f + 1
        np.savetxt(out, np.concatenate([fv[:, :1], ft[:, :1], fv[:, 1:2], ft[:, 1:2], fv[:, 2:], ft[:, 2:]], 1),
                   fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(out, f + 1, fmt="f %d %d %d")
    return out.getvalue()


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray, uv: np.ndarray | None = None,
              uv_triangles: np.ndarray | None = None, *, plate_height: float, comment: str = "") -> str:
    """Write one OBJ atomically (temp + rename; never over an input). Returns the path."""
    atomic_write(path, obj_text(vertices, triangles, uv, uv_triangles, plate_height=plate_height, comment=comment))
    return os.fspath(path)


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices (V, 3) as written, triangles (F, 3) 0-based, vt (Vt, 2) as written or None): for round trips."""
    vs, vts, fs = [], [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                vs.append([float(x) for x in parts[1:4]])
            elif parts[0] == "vt":
                vts.append([float(x) for x in parts[1:3]])
            elif parts[0] == "f":
                fs.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    return np.asarray(vs), np.asarray(fs, np.int64), (np.asarray(vts) if vts else None)
