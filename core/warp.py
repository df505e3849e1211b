"""Affine warps of image batches on any device (the frame kernel behind crops and paste-back).

Convention:
    images      (B, C, H, W) float32 (float64 accepted), any device, scene-linear, premultiplied where C == 4,
                never clamped (cubic may overshoot, as every cubic does).
    dst_from_src (B, 2, 3) or (1, 2, 3) affine, source -> destination, pixel-area coordinates
                (core/conventions.py: origin at the top-left corner of the top-left pixel, centres at +0.5).
                A torch tensor (any float dtype, any device: it is 48 bytes and follows the images) or a numpy
                array.
    out_size    (w, h) of the destination, in pixels.

Two paths, one set of numbers:
    torch  torch.nn.functional.grid_sample with align_corners=False. With align_corners=False, grid -1 and +1
           are the outer *edges* of the image, which is exactly the pixel-area convention, so the only change of
           coordinates is a scale by 2 / size and a shift by -1. The matrix is inverted in float64 (float32 on
           devices without float64). Runs on any device and is differentiable.
    cv2    cv2.warpAffine on zero-copy numpy views of CPU tensors (the whole image when it is channels-last in
           memory and has <= 4 channels, else one plane at a time), with WARP_INVERSE_MAP and the inverse
           converted to cv2's pixel-centre convention by core.conventions.affine_index_from_area.
    ``backend="auto"`` takes cv2 for CPU tensors that need no gradient and torch otherwise.

How close the two paths are (tests/core/test_warp.py holds them to this), measured with OpenCV 5.0 on
random values in [0, 100] (the hardest case: gradients of 100 per pixel): <= 2e-3 absolute (2e-5 of the
range) for linear and cubic, any matrix and border. Both compute source positions to about 1e-5 pixel (torch:
a float32 grid; cv2: fixed point), which is all the difference there is. OpenCV 4.x quantised sub-pixel
positions to 1/32 pixel (INTER_BITS = 5) and would differ by up to (local gradient) / 64; the parity test
would flag such a build.
    Cubic: both use Keys' cubic convolution with a = -0.75 (OpenCV imgproc interpolateCubic ``A = -0.75f``;
    PyTorch aten GridSampler ``cubic_convolution`` with ``A = -0.75``).
    Nearest: both round the source position; exact half-pixel ties may differ.

Whole-pixel translations (the identity included) are done by indexing on every path: exact, and cheap.

Borders: "constant" (``fill`` outside), "replicate" (edge pixel), "reflect" (mirror about the image edge,
"abc|cba": cv2.BORDER_REFLECT, which is what grid_sample's "reflection" does with align_corners=False). More
than one source size outside the source, cv2's cubic "reflect" stops reflecting (it repeats one value) while
torch keeps mirroring; warps that reach that far with "reflect" should ask for backend="torch".
Note: core.geometry.warp_affine (numpy, one frame) maps "reflect" to BORDER_REFLECT_101 ("abc|b") instead.
"""
from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .conventions import affine_index_from_area
from .errors import InputError
from .tensors import check_images, check_matrices

Interpolation = Literal["linear", "cubic", "nearest"]
Border = Literal["constant", "replicate", "reflect"]
Backend = Literal["auto", "torch", "cv2"]

INTERPOLATIONS: tuple[str, ...] = ("linear", "cubic", "nearest")
BORDERS: tuple[str, ...] = ("constant", "replicate", "reflect")
BACKENDS: tuple[str, ...] = ("auto", "torch", "cv2")

_TORCH_MODE = {"linear": "bilinear", "cubic": "bicubic", "nearest": "nearest"}
_TORCH_PAD = {"constant": "zeros", "replicate": "border", "reflect": "reflection"}
_CV2_INTER = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
_CV2_BORDER = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT}
#: cv2's remap stores coordinates as 16-bit integers (OpenCV imgproc: maps are CV_16SC2), so sizes stay below.
_CV2_MAX_SIZE = 32767
#: How far (source pixels) each interpolation reaches beyond a sample position: used to pad ROIs.
SUPPORT_PX = {"nearest": 0.5, "linear": 1.0, "cubic": 2.0}


def _work_dtype(device: torch.device) -> torch.dtype:
    """float64 for matrix arithmetic, except on devices without it (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def as_matrices(m: torch.Tensor | np.ndarray, batch: int | None = None, name: str = "dst_from_src") -> torch.Tensor:
    """A (2, 3) / (B, 2, 3) torch tensor or numpy array -> validated (B, 2, 3) torch tensor (not copied if it
    already is one)."""
    if isinstance(m, np.ndarray):
        m = torch.from_numpy(np.asarray(m, dtype=np.float64))
    if isinstance(m, torch.Tensor) and m.ndim == 2:
        m = m[None]
    if isinstance(m, torch.Tensor) and not m.dtype.is_floating_point:
        raise InputError(f"{name} must be a float matrix, got {m.dtype}")
    return check_matrices(m, batch, name)


def invert_affines(m: torch.Tensor) -> torch.Tensor:
    """Inverse of (B, 2, 3) affines in the working precision (float64 where the device has it).

    Raises InputError for a singular matrix (a warp that collapses the image to a line)."""
    m = m.to(_work_dtype(m.device))
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    scale = torch.maximum(torch.abs(a) + torch.abs(b), torch.abs(d) + torch.abs(e)).clamp_min(1e-300)
    if bool((torch.abs(det) <= 1e-12 * scale * scale).any()):
        raise InputError("dst_from_src is singular (its 2x2 part has zero determinant)",
                         hint="a warp must not collapse the image; check the matrix direction and scale")
    inv = torch.stack([torch.stack([e, -b, b * f - c * e], -1),
                       torch.stack([-d, a, c * d - a * f], -1)], 1) / det[:, None, None]
    return inv


def _check_common(images: torch.Tensor, out_size, interpolation: str, border: str, backend: str) -> tuple[int, int]:
    check_images(images, "images", dtypes=(torch.float32, torch.float64))
    if interpolation not in INTERPOLATIONS:
        raise InputError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if border not in BORDERS:
        raise InputError(f"border must be one of {BORDERS}, got {border!r}")
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    try:
        w, h = (int(v) for v in out_size)
    except (TypeError, ValueError):
        raise InputError(f"out_size must be (w, h), got {out_size!r}") from None
    if w < 1 or h < 1:
        raise InputError(f"out_size must be positive (w, h), got {out_size!r}")
    return w, h


def warp_affine(images: torch.Tensor, dst_from_src: torch.Tensor | np.ndarray, out_size: tuple[int, int], *,
                interpolation: Interpolation = "linear", border: Border = "constant", fill: float = 0.0,
                backend: Backend = "auto") -> torch.Tensor:
    """Warp each image of a batch through its affine into an (h, w) destination.

    Convention:
        images: (B, C, H, W) float32 (or float64), any device, any range (scene-linear stays linear, nothing
            is clamped), premultiplied where C == 4.
        dst_from_src: (B, 2, 3) or (1, 2, 3) (broadcast) affine, source -> destination pixel-area coordinates.
        out_size: (w, h) in pixels.
        Returns (B, C, h, w), same dtype and device as ``images``, a new tensor (inputs are never modified).
        Destination pixel (i, j) samples the source at src_from_dst @ (i + 0.5, j + 0.5, 1).

    interpolation: "linear" | "cubic" (Keys a = -0.75) | "nearest". border: "constant" (``fill``),
    "replicate", "reflect" (edge-symmetric). backend: "auto" (cv2 for CPU tensors without autograd, else torch),
    "torch", "cv2" (CPU only). See the module docstring for how close the two are.
    """
    w, h = _check_common(images, out_size, interpolation, border, backend)
    b = images.shape[0]
    mats = as_matrices(dst_from_src, b)
    if not math.isfinite(float(fill)):
        raise InputError(f"fill must be finite, got {fill}")
    shifts = _integer_shifts(mats)
    if shifts is not None:
        return _shift(images, shifts, w, h, border, float(fill))
    use_cv2 = backend == "cv2" or (backend == "auto" and images.device.type == "cpu" and not images.requires_grad)
    if use_cv2:
        if images.device.type != "cpu":
            raise InputError(f"backend='cv2' needs CPU tensors, images are on {images.device}",
                             hint="use backend='torch' or 'auto' for other devices")
        if max(w, h, images.shape[2], images.shape[3]) >= _CV2_MAX_SIZE:
            if backend == "cv2":
                raise InputError(f"cv2 warps images below {_CV2_MAX_SIZE} pixels a side", hint="use backend='torch'")
        else:
            return _warp_cv2(images, mats, w, h, interpolation, border, float(fill))
    return _warp_torch(images, mats, w, h, interpolation, border, float(fill))


def _integer_shifts(mats: torch.Tensor) -> list[tuple[int, int]] | None:
    """[(dx, dy)] when every matrix is a pure whole-pixel translation, else None."""
    m = mats.detach().cpu().to(torch.float64)
    lin = m[:, :, :2]
    t = m[:, :, 2]
    if not bool((lin == torch.eye(2, dtype=torch.float64)).all()) or not bool((t == t.round()).all()):
        return None
    if bool((t.abs() > 2**30).any()):
        return None
    return [(int(a), int(b)) for a, b in t.tolist()]


def _border_index(n_src: int, idx: torch.Tensor, border: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices for integer positions ``idx`` under ``border``, and which of them are inside."""
    inside = (idx >= 0) & (idx < n_src)
    if border == "replicate":
        idx = idx.clamp(0, n_src - 1)
    elif border == "reflect":  # "abc|cba": period 2n, mirrored halves
        r = torch.remainder(idx, 2 * n_src)
        idx = torch.where(r < n_src, r, 2 * n_src - 1 - r)
    else:
        idx = idx.clamp(0, n_src - 1)
    return idx, inside


def _shift(images: torch.Tensor, shifts: list[tuple[int, int]], w: int, h: int, border: str,
           fill: float) -> torch.Tensor:
    """Whole-pixel translations, done by indexing: exact for every interpolation (all of them reproduce the
    samples at integer positions) and much cheaper than resampling."""
    b, c, hs, ws = images.shape
    dev = images.device
    outs = []
    for i in range(b):
        dx, dy = shifts[i if len(shifts) > 1 else 0]
        ix, in_x = _border_index(ws, torch.arange(w, device=dev) - dx, border)
        iy, in_y = _border_index(hs, torch.arange(h, device=dev) - dy, border)
        o = images[i].index_select(1, iy).index_select(2, ix)
        if border == "constant":
            keep = in_y[:, None] & in_x[None, :]
            o = torch.where(keep, o, torch.full((), fill, dtype=o.dtype, device=dev))
        outs.append(o)
    return torch.stack(outs)


def _sampling_grid(src_from_dst: torch.Tensor, src_hw: tuple[int, int], w: int, h: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """(B, h, w, 2) grid_sample grid (align_corners=False) for destination pixel centres.

    Normalised source x = 2 * x_src / W_src - 1 (pixel-area -> [-1, 1] edge to edge). The affine is split into
    a row term and a column term computed in the working precision, rounded once each, and summed in the
    output dtype, so positions are good to a few ulp of the normalised coordinate."""
    wd = src_from_dst.dtype
    dev = src_from_dst.device
    hs, ws = src_hw
    sx = torch.tensor([2.0 / ws, 2.0 / hs], dtype=wd, device=dev)
    m = src_from_dst * sx[None, :, None]  # rows scaled into normalised units
    m[:, :, 2] -= 1.0
    qx = torch.arange(w, dtype=wd, device=dev) + 0.5
    qy = torch.arange(h, dtype=wd, device=dev) + 0.5
    # per output axis: (B, 2 coords, w) from x and (B, 2 coords, h) from y
    from_x = (m[:, :, 0:1] * qx + m[:, :, 2:3]).to(dtype)
    from_y = (m[:, :, 1:2] * qy).to(dtype)
    grid = from_x[:, :, None, :] + from_y[:, :, :, None]  # (B, 2, h, w)
    return grid.permute(0, 2, 3, 1)


def _warp_torch(images: torch.Tensor, mats: torch.Tensor, w: int, h: int, interpolation: str, border: str,
                fill: float) -> torch.Tensor:
    b = images.shape[0]
    src_from_dst = invert_affines(mats.to(images.device))
    grid = _sampling_grid(src_from_dst, tuple(images.shape[2:]), w, h, images.dtype)
    if grid.shape[0] != b:
        grid = grid.expand(b, -1, -1, -1)
    src = images
    shift = border == "constant" and fill != 0.0
    if shift:  # grid_sample pads with zeros only; the weights sum to 1, so warp (x - fill) and add fill back
        src = images - fill
    out = F.grid_sample(src, grid, mode=_TORCH_MODE[interpolation], padding_mode=_TORCH_PAD[border],
                        align_corners=False)
    if shift:
        out = out.add_(fill)
    return out


def _warp_cv2(images: torch.Tensor, mats: torch.Tensor, w: int, h: int, interpolation: str, border: str,
              fill: float) -> torch.Tensor:
    b, c = images.shape[:2]
    inv = invert_affines(mats.detach().cpu()).numpy()
    flags = _CV2_INTER[interpolation] | cv2.WARP_INVERSE_MAP
    mode = _CV2_BORDER[border]
    value = (fill,) * 4
    x = images.detach()
    # channels-last per image (e.g. a ComfyUI IMAGE seen through bchw): warp all channels in one call
    hwc = x.permute(0, 2, 3, 1)
    whole = c <= 4 and hwc[0].is_contiguous() if b else False
    if whole:
        out_hwc = torch.empty((b, h, w, c), dtype=x.dtype)
        out = out_hwc.permute(0, 3, 1, 2)
    else:
        out = torch.empty((b, c, h, w), dtype=x.dtype)
    src_np = hwc.numpy() if whole else x.numpy()
    dst_np = out_hwc.numpy() if whole else out.numpy()
    for i in range(b):
        m = affine_index_from_area(inv[i if inv.shape[0] > 1 else 0])
        if whole:
            src_i, dst_i = src_np[i], dst_np[i]
            if c == 1:  # cv2 returns (h, w) for one channel: write through a 2-D view instead
                src_i, dst_i = src_i[..., 0], dst_i[..., 0]
            res = cv2.warpAffine(src_i, m, (w, h), dst=dst_i, flags=flags, borderMode=mode, borderValue=value)
            if res is not dst_i and not np.shares_memory(res, dst_i):
                dst_i[...] = res.reshape(dst_i.shape)
        else:
            for k in range(c):
                plane = src_np[i, k]
                if not plane.flags.c_contiguous:
                    plane = np.ascontiguousarray(plane)
                dst_p = dst_np[i, k]
                res = cv2.warpAffine(plane, m, (w, h), dst=dst_p, flags=flags, borderMode=mode,
                                     borderValue=value)
                if not np.shares_memory(res, dst_p):
                    dst_p[...] = res
    return out


def roi_of_warp(dst_from_src: torch.Tensor | np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int],
                pad: float = 0.0) -> tuple[int, int, int, int]:
    """Integer box of the destination that covers the warped source rectangle, grown by ``pad`` and clipped.

    Convention:
        dst_from_src: (2, 3) or (1, 2, 3) affine, source -> destination, pixel-area coordinates (numpy or torch).
        src_size, dst_size: (w, h) in pixels. pad: destination pixels added on every side (>= 0); add the
        interpolation's reach (SUPPORT_PX times the warp's scale) to cover every pixel a warp can touch.
        Returns (x0, y0, x1, y1) ints, x1/y1 exclusive, 0 <= x0 <= x1 <= dst_w (likewise y). An empty box
        (x0 == x1 or y0 == y1) means the source lands outside the destination.
    """
    m = as_matrices(dst_from_src, None).detach().cpu().to(torch.float64).numpy()
    if m.shape[0] != 1:
        raise InputError(f"roi_of_warp takes one matrix, got {m.shape[0]}")
    if not (math.isfinite(float(pad)) and pad >= 0):
        raise InputError(f"pad must be a finite number >= 0, got {pad}")
    sw, sh = (float(v) for v in src_size)
    dw, dh = (int(v) for v in dst_size)
    if sw <= 0 or sh <= 0 or dw <= 0 or dh <= 0:
        raise InputError(f"src_size and dst_size must be positive (w, h), got {src_size} and {dst_size}")
    corners = np.array([[0, 0, 1], [sw, 0, 1], [0, sh, 1], [sw, sh, 1]], dtype=np.float64)
    q = corners @ m[0].T
    x0 = int(math.floor(q[:, 0].min() - pad))
    y0 = int(math.floor(q[:, 1].min() - pad))
    x1 = int(math.ceil(q[:, 0].max() + pad))
    y1 = int(math.ceil(q[:, 1].max() + pad))
    x0, x1 = min(max(x0, 0), dw), min(max(x1, 0), dw)
    y0, y1 = min(max(y0, 0), dh), min(max(y1, 0), dh)
    return x0, y0, max(x0, x1), max(y0, y1)


def warp_scale(dst_from_src: torch.Tensor | np.ndarray) -> float:
    """Largest stretch of a (2, 3) / (1, 2, 3) affine (its 2x2 part's largest singular value)."""
    m = as_matrices(dst_from_src, None).detach().cpu().to(torch.float64).numpy()
    return float(np.linalg.svd(m[0, :, :2], compute_uv=False).max())
