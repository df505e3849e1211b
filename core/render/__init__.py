"""Rendering in plain torch (CPU and CUDA, one code path): a triangle rasteriser (``raster``), UV texture
extraction, accumulation and re-rendering (``uv``), and region / polygon masks (``masks``). All are frame kernels
in the sense of DESIGN.md "Frames on any device"; screen-space vertices follow core/conventions.py."""
from .masks import combine_with_user_mask, feather, polygon_mask, region_masks, triangle_labels
from .raster import Raster, interpolate, rasterise, vertex_normals
from .uv import RenderResult, TextureAccumulator, extract_uv_texture, render_uv_texture, uv_raster

__all__ = ["Raster", "RenderResult", "TextureAccumulator", "combine_with_user_mask", "extract_uv_texture",
           "feather", "interpolate", "polygon_mask", "rasterise", "region_masks", "render_uv_texture",
           "triangle_labels", "uv_raster", "vertex_normals"]
