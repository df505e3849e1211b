"""Rendering in plain torch: a triangle rasteriser (``raster``), UV texture extraction and re-rendering (``uv``) and
region masks (``masks``). Frame kernels in the sense of DESIGN.md "Frames on any device"."""
from .raster import Raster, interpolate, rasterise, vertex_normals

__all__ = ["Raster", "interpolate", "rasterise", "vertex_normals"]
