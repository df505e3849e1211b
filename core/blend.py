"""Masks' feathering, gradient-domain (Poisson) blending and paste-back of face crops into frames.

Convention (every function here):
    images  (B, C, H, W) float32 (float64 accepted), any device, scene-linear, premultiplied where C == 4,
            never clamped and never quantised: HDR values (say 0 .. 100 and beyond, and negatives) go in and
            come out as they are.
    masks   (B, 1, H, W) float in [0, 1] (values outside are clipped to [0, 1]: a mask is a weight).
    matrices (N, 2, 3) affines, source -> destination, pixel-area coordinates (core/conventions.py).
    Inputs are never modified; every result is a new tensor on the inputs' device.

Poisson blend (``poisson_blend``), the discrete system
    Pixels p, q are 4-neighbours. The edge weight is w_pq = max(m_p, m_q) (Perez et al. 2003, "Poisson Image
    Editing", eq. 7-8: an edge from the region to its boundary carries the source gradient). The guidance of an
    edge is g_pq = w_pq * G_pq + (1 - w_pq) * (t_p - t_q), with G = source differences (s_p - s_q) for
    "source", per edge the larger of the source and target difference vectors (L2 over the colour channels,
    Perez eq. 13) for "mixed", and source differences of log(max(x, eps)) for "log". We solve for the
    correction d = u - t:  sum_q (d_p - d_q) = sum_q w_pq (G_pq - (t_p - t_q))  on a region R, d = 0 on R's
    outer ring (Dirichlet: the boundary values are the target's), and the result is t + m * d (the
    composite u * m + t * (1 - m)). Solving for the correction keeps the right-hand side small (zero wherever
    the mask is off), which is what makes float32 enough: measured (bench/blend.py) on HDR data up to 100,
    float32 "dst" is within 4e-5 (relative, |ref| >= 1) of a float64 sparse LU of the same system on a small
    box and within 1.1e-4 of float64 on 1080p and 4K face boxes, against a 1e-3 target, at half float64's
    time. So "auto" is float32 for "dst"; "cg" (the exact option) runs float64.
    solver "dst" (and "auto"): R = the mask's bounding box grown by ``margin_px``, clipped to the frame (and
        grown by a few pixels to a fast FFT length where the frame allows); one direct solve with sine
        transforms (DST-I: scipy.fft on numpy views for CPU tensors; on other devices torch.fft.rfft of the
        odd extension). The
        ring outside the box is Dirichlet (target); pixels between the mask and the box follow the target's
        gradients, so they stay within a smooth, decaying correction of the target.
    solver "cg": R = the pixels with m > 0 exactly (Dirichlet = target on the mask's boundary, Perez's
        formulation), solved by conjugate gradients preconditioned with the box's sine-transform solve, to a
        relative residual ``tol``.
    Frame edges: where R touches the frame edge there is no target outside to take boundary values from; the
        condition there is Neumann (zero flux: a pixel on the frame edge has only its in-frame neighbours), done
        exactly by mirroring the box across that edge (and a cosine transform when both sides of an axis are
        frame edges). A box that covers the whole frame has no boundary at all: its free constant is chosen so
        that the correction has zero mean.
    log guidance: colour channels are solved on log(max(x, eps)) and exponentiated; inside the mask values
        <= eps (zero, negatives) come back as positive values near eps (their sign is not kept: use "source"
        for data with meaningful negatives); outside the mask the target is kept exactly.
    RGBA (C == 4, premultiplied): the same operator, the same mask and the same per-edge choice (for "mixed",
        decided from the colour channels) are applied to all four channels, so colour and alpha move together;
        in "log" mode alpha is solved linearly (it is not HDR). Alpha is not clamped either.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Literal

import cv2
import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from .errors import InputError
from .tensors import check_images, check_masks
from .warp import SUPPORT_PX, Interpolation, INTERPOLATIONS, as_matrices, roi_of_warp, warp_affine, warp_scale

log = logging.getLogger(__name__)

Guidance = Literal["source", "mixed", "log"]
Solver = Literal["auto", "dst", "cg"]
Precision = Literal["auto", "float32", "float64"]
FeatherMode = Literal["blur", "erode_blur"]
PasteMode = Literal["over", "poisson"]

GUIDANCES: tuple[str, ...] = ("source", "mixed", "log")
SOLVERS: tuple[str, ...] = ("auto", "dst", "cg")
PRECISIONS: tuple[str, ...] = ("auto", "float32", "float64")
FEATHER_MODES: tuple[str, ...] = ("blur", "erode_blur")
FftBackend = Literal["auto", "torch", "scipy"]
FFT_BACKENDS: tuple[str, ...] = ("auto", "torch", "scipy")
PASTE_MODES: tuple[str, ...] = ("over", "poisson")

_IMAGE_DTYPES = (torch.float32, torch.float64)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} must be one of {allowed}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PoissonOptions:
    """guidance: "source" | "mixed" | "log" (see the module docstring). margin_px: pixels of target around the
    mask's bounding box inside the solve ("dst"), >= 1. solver: "auto" (= "dst") | "dst" | "cg". tol: relative
    residual at which "cg" stops. max_iter: "cg" iteration cap (a warning is logged if reached). precision:
    "auto" (float32 for the "dst" correction solve, float64 for "cg"; float32 on devices without float64) |
    "float32" | "float64". log_eps: the floor of the "log" guidance, in the data's units (1e-6: far below any
    visible scene-linear value, well above float32's smallest normal number). "cg" preconditions in float32
    in every precision (the preconditioner only steers; the residual is computed in the working precision).
    backend: the CPU path: "auto" (numpy views + scipy.fft for CPU tensors, torch elsewhere) | "torch" (any
    device) | "scipy" (CPU only). On CPU, scipy's DST-I is 2.7x faster than the odd-extension rfft, and
    single-threaded numpy elementwise work stays steady on a loaded host where a 2-thread torch pool
    spends most of its time waiting (bench/blend.py); the tests hold both paths to the same numbers."""

    guidance: Guidance = "source"
    margin_px: int = 16
    solver: Solver = "auto"
    tol: float = 1e-6
    max_iter: int = 300
    precision: Precision = "auto"
    log_eps: float = 1e-6
    backend: FftBackend = "auto"

    def __post_init__(self) -> None:
        _choice("guidance", self.guidance, GUIDANCES)
        _choice("backend", self.backend, FFT_BACKENDS)
        _choice("solver", self.solver, SOLVERS)
        _choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.margin_px, int) or self.margin_px < 1:
            raise InputError(f"margin_px must be an int >= 1, got {self.margin_px!r}")
        if not (0 < self.tol < 1):
            raise InputError(f"tol must be in (0, 1), got {self.tol}")
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise InputError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if not (self.log_eps > 0 and math.isfinite(self.log_eps)):
            raise InputError(f"log_eps must be > 0, got {self.log_eps}")


@dataclasses.dataclass(frozen=True)
class PasteOptions:
    """mode: "over" (premultiplied over with the warped, feathered mask) | "poisson" (gradient-domain blend
    inside the face's ROI with ``poisson``). feather_px: feather radius in crop pixels (0 = none).
    feather_mode: see ``feather_mask`` ("erode_blur" keeps the mask inside the original, so no crop edge
    shows). interpolation: for the crop ("linear" | "cubic" | "nearest"); the mask always goes through
    "linear" ("nearest" if the crop does), so it stays in [0, 1]."""

    mode: PasteMode = "over"
    feather_px: float = 8.0
    feather_mode: FeatherMode = "erode_blur"
    interpolation: Interpolation = "linear"
    poisson: PoissonOptions = PoissonOptions()

    def __post_init__(self) -> None:
        _choice("mode", self.mode, PASTE_MODES)
        _choice("feather_mode", self.feather_mode, FEATHER_MODES)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        if not (math.isfinite(self.feather_px) and self.feather_px >= 0):
            raise InputError(f"feather_px must be a finite number >= 0, got {self.feather_px}")
        if not isinstance(self.poisson, PoissonOptions):
            raise InputError(f"poisson must be PoissonOptions, got {type(self.poisson).__name__}")


# ------------------------------------------------------------------------------------------------ masks


def _gaussian_taps(radius_px: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, int]:
    """Normalised 1-D Gaussian with sigma = radius / 3, truncated at +-ceil(radius) (3 sigma: 99.7 % of the
    mass, the usual truncation, e.g. scipy.ndimage.gaussian_filter's default truncate=4 keeps slightly more)."""
    k = int(math.ceil(radius_px))
    sigma = max(radius_px / 3.0, 1e-6)
    x = torch.arange(-k, k + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype), k


def _blur(m: torch.Tensor, taps: torch.Tensor, k: int) -> torch.Tensor:
    """Separable blur of (B, 1, H, W) with zeros outside the frame."""
    x = F.pad(m, (k, k, k, k))
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    return F.conv2d(x, taps.view(1, 1, -1, 1))


def _erode(m: torch.Tensor, k: int) -> torch.Tensor:
    """Grey erosion of (B, 1, H, W) by a (2k+1)^2 square, zeros outside the frame (separable min filter)."""
    x = F.pad(-m, (k, k, k, k), value=0.0)  # outside = 0 -> -0 = 0 is the max candidate for m in [0, 1]
    x = F.max_pool2d(x, (1, 2 * k + 1), stride=1)
    x = F.max_pool2d(x, (2 * k + 1, 1), stride=1)
    return -x


def _feather_cv2(m: torch.Tensor, radius_px: float, mode: str) -> torch.Tensor:
    """The CPU path of feather_mask: cv2.erode (square) and cv2.sepFilter2D (the same taps), zeros outside."""
    taps, k = _gaussian_taps(radius_px, torch.float64, torch.device("cpu"))
    kern = taps.numpy()
    mn = m.detach().numpy()
    out = np.empty(mn.shape, mn.dtype)
    square = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
    for i in range(mn.shape[0]):
        plane = np.clip(mn[i, 0], 0.0, 1.0)
        if mode == "erode_blur":
            plane = cv2.erode(plane, square, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        out[i, 0] = cv2.sepFilter2D(plane, -1, kern, kern, borderType=cv2.BORDER_CONSTANT)
    return torch.from_numpy(out)


def feather_mask(masks: torch.Tensor, radius_px: float, *, mode: FeatherMode = "erode_blur",
                 backend: Literal["auto", "torch", "cv2"] = "auto") -> torch.Tensor:
    """Soften a mask's edges with a separable Gaussian (no box-filter look).

    Convention:
        masks: (B, 1, H, W) float32/float64 in [0, 1], any device; outside the frame counts as 0, so a mask
            that touches the frame edge fades out there too (what a crop's mask needs for paste-back).
        radius_px: feather radius in pixels, >= 0: Gaussian sigma = radius / 3, taps to +-ceil(radius).
        mode: "blur" (the edge ramps across the original edge, half in and half out) or "erode_blur" (grey
            erosion by a (2 ceil(radius) + 1) square first, then the blur: the result is <= the original
            everywhere, so it never leaves it).
        backend: "auto" (cv2.erode + cv2.sepFilter2D for CPU tensors without autograd, torch conv2d /
            max_pool2d elsewhere) | "torch" | "cv2"; the tests hold both to the same numbers (1e-6).
        Returns (B, 1, H, W), same dtype/device; the input is not modified.
    """
    check_images(masks, "masks", channels=(1,), dtypes=_IMAGE_DTYPES)
    _choice("mode", mode, FEATHER_MODES)
    _choice("backend", backend, ("auto", "torch", "cv2"))
    if not (math.isfinite(float(radius_px)) and radius_px >= 0):
        raise InputError(f"radius_px must be a finite number >= 0, got {radius_px}")
    if radius_px == 0:
        return masks.clamp(0.0, 1.0)  # a new tensor: never the caller's
    on_cpu = masks.device.type == "cpu"
    if backend == "cv2" and not on_cpu:
        raise InputError(f"backend='cv2' needs CPU tensors, masks are on {masks.device}")
    if backend == "cv2" or (backend == "auto" and on_cpu and not masks.requires_grad):
        return _feather_cv2(masks, float(radius_px), mode)
    m = masks.clamp(0.0, 1.0)
    taps, k = _gaussian_taps(float(radius_px), m.dtype, m.device)
    if mode == "erode_blur":
        m = _erode(m, k)
    return _blur(m, taps, k)


def combine_masks(*masks: torch.Tensor) -> torch.Tensor:
    """Intersection of soft masks: the elementwise minimum (how FaceFusion combines its face masks).

    Convention: each (B, 1, H, W) (or broadcastable to a common shape) float in [0, 1] on one device.
    Returns a new tensor of the broadcast shape."""
    if not masks:
        raise InputError("combine_masks needs at least one mask")
    out = None
    for i, m in enumerate(masks):
        check_images(m, f"masks[{i}]", channels=(1,), dtypes=_IMAGE_DTYPES)
        if out is None:
            out = m.clone()
            continue
        if m.device != out.device:
            raise InputError(f"masks[{i}] is on {m.device}, masks[0] on {out.device}: move one of them")
        try:
            out = torch.minimum(out, m)
        except RuntimeError:
            raise InputError(f"masks[{i}] {tuple(m.shape)} does not broadcast with {tuple(out.shape)}") from None
    return out


# ----------------------------------------------------------------------------------------- transforms


class _Torch:
    """Array ops on torch tensors (any device)."""

    numpy = False

    @staticmethod
    def cat(xs, axis):
        return torch.cat(xs, axis)

    @staticmethod
    def flip(x, axis):
        return torch.flip(x, (axis,))

    log, exp, maximum = staticmethod(torch.log), staticmethod(torch.exp), staticmethod(torch.maximum)

    @staticmethod
    def floor(x, eps):
        return x.clamp_min(eps)

    @staticmethod
    def clip01(x):
        return x.clamp(0.0, 1.0)

    @staticmethod
    def zeros(like, shape=None):
        return like.new_zeros(like.shape if shape is None else shape)

    @staticmethod
    def scalar(x) -> float:
        return float(x)


class _Numpy:
    """The same ops on numpy arrays: the CPU path. Single-threaded elementwise numpy and scipy.fft run
    steadily on a loaded 2-core host where a 2-thread torch pool loses most of its time in barriers
    (measured: bench/blend.py)."""

    numpy = True

    @staticmethod
    def cat(xs, axis):
        return np.concatenate(xs, axis)

    @staticmethod
    def flip(x, axis):
        return np.flip(x, axis)

    log, exp, maximum = staticmethod(np.log), staticmethod(np.exp), staticmethod(np.maximum)

    @staticmethod
    def floor(x, eps):
        return np.maximum(x, eps)

    @staticmethod
    def clip01(x):
        return np.clip(x, 0.0, 1.0)

    @staticmethod
    def zeros(like, shape=None):
        return np.zeros(like.shape if shape is None else shape, like.dtype)

    @staticmethod
    def scalar(x) -> float:
        return float(x)


def _take(x, axis: int, start: int, length: int):
    """x[..., start:start + length, ...] along ``axis`` (negative), for numpy and torch alike."""
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, start + length)
    return x[tuple(idx)]


def _dst1(x, axis: int, xp=_Torch):
    """Unnormalised DST-I along ``axis``, scipy's scaling: 2 sum_j x_j sin(pi (j+1)(k+1) / (n+1)); applying it
    twice multiplies by 2(n+1). numpy: scipy.fft.dst type 1. torch: minus the imaginary part of the FFT of the
    odd extension [0, x, 0, -reverse(x)] of length 2(n+1) (Press et al., Numerical Recipes, 3rd ed., 12.4.1)."""
    if xp.numpy:
        return scipy.fft.dst(x, type=1, axis=axis, workers=_workers())
    x = x.movedim(axis, -1)
    n = x.shape[-1]
    z = x.new_zeros(x.shape[:-1] + (1,))
    y = torch.cat([z, x, z, -x.flip(-1)], dim=-1)
    return torch.fft.rfft(y, dim=-1).imag[..., 1:n + 1].neg().movedim(-1, axis)


def _dct2(x, axis: int, xp=_Torch):
    """Unnormalised DCT-II along ``axis``, scipy's scaling: 2 sum_j x_j cos(pi k (j + 1/2) / n). numpy:
    scipy.fft.dct type 2. torch: the FFT of the even extension [x, reverse(x)] is exp(i pi k / 2n) times it
    (Makhoul 1980, IEEE Trans. ASSP 28(1))."""
    if xp.numpy:
        return scipy.fft.dct(x, type=2, axis=axis, workers=_workers())
    x = x.movedim(axis, -1)
    n = x.shape[-1]
    y = torch.fft.rfft(torch.cat([x, x.flip(-1)], dim=-1), dim=-1)[..., :n]
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    return (y * torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))).real.movedim(-1, axis)


def _idct2(c, axis: int, xp=_Torch):
    """Exact inverse of :func:`_dct2` (numpy: scipy.fft.idct type 2; torch: through irfft of length 2n)."""
    if xp.numpy:
        return scipy.fft.idct(c, type=2, axis=axis, workers=_workers())
    c = c.movedim(axis, -1)
    n = c.shape[-1]
    k = torch.arange(n, device=c.device, dtype=c.dtype)
    z = c * torch.polar(torch.ones_like(k), math.pi * k / (2 * n))
    z = torch.cat([z, z.new_zeros(z.shape[:-1] + (1,))], dim=-1)
    return torch.fft.irfft(z, n=2 * n, dim=-1)[..., :n].movedim(-1, axis)


def _workers() -> int:
    """scipy.fft threads: as many as torch uses (benches and hosts set torch's thread count)."""
    return max(1, torch.get_num_threads())


class _Axis:
    """One axis of the box solve: how it is extended (mirror across frame edges), which transform it uses
    and the eigenvalues of the 1-D negative Laplacian -u[j-1] + 2u[j] - u[j+1] under that transform."""

    def __init__(self, n: int, lo_edge: bool, hi_edge: bool, xp) -> None:
        self.n, self.lo_edge, self.hi_edge, self.xp = n, lo_edge, hi_edge, xp
        self.neumann_both = lo_edge and hi_edge
        self.mirror = lo_edge != hi_edge  # one Neumann side: mirror there -> Dirichlet on both ends, length 2n
        m = 2 * n if self.mirror else n
        self.m = m
        k = np.arange(m, dtype=np.float64)
        if self.neumann_both:  # DCT-II eigenvectors cos(pi k (j + 1/2) / n)
            self.lam = 2.0 - 2.0 * np.cos(np.pi * k / m)
        else:  # DST-I eigenvectors sin(pi (k + 1)(j + 1) / (m + 1))
            self.lam = 2.0 - 2.0 * np.cos(np.pi * (k + 1) / (m + 1))
        #: transform, divide, inverse-transform multiplies by this (folded into the division)
        self.round_trip = 1.0 if self.neumann_both else 2.0 * (m + 1)

    def extend(self, x, axis: int):
        if not self.mirror:
            return x
        f = self.xp.flip(x, axis)
        return self.xp.cat([f, x] if self.lo_edge else [x, f], axis)

    def restrict(self, x, axis: int):
        if not self.mirror:
            return x
        return _take(x, axis, self.n if self.lo_edge else 0, self.n)

    def forward(self, x, axis: int):
        return _dct2(x, axis, self.xp) if self.neumann_both else _dst1(x, axis, self.xp)

    def inverse(self, x, axis: int):
        return _idct2(x, axis, self.xp) if self.neumann_both else _dst1(x, axis, self.xp)


class _BoxSolver:
    """Direct solve of the 5-point negative Laplacian on a (h, w) box: zero Dirichlet values on the ring
    around the box where the box is inside the frame, Neumann (zero flux) where it lies on the frame edge.
    ``edges`` = (top, bottom, left, right) booleans: True where that side is the frame edge. Works on numpy
    arrays (xp=_Numpy, transforms by scipy.fft) or torch tensors (xp=_Torch, torch.fft, any device)."""

    def __init__(self, h: int, w: int, edges: tuple[bool, bool, bool, bool], dtype: torch.dtype,
                 device: torch.device, use_scipy: bool = False) -> None:
        self.xp = _Numpy if use_scipy else _Torch
        self.ay = _Axis(h, edges[0], edges[1], self.xp)
        self.ax = _Axis(w, edges[2], edges[3], self.xp)
        lam = self.ay.lam[:, None] + self.ax.lam[None, :]
        self.singular = self.ay.neumann_both and self.ax.neumann_both
        if self.singular:
            lam[0, 0] = 1.0  # the constant mode: set to zero after the division (zero-mean correction)
        inv = 1.0 / (lam * (self.ay.round_trip * self.ax.round_trip))
        if use_scipy:
            self.inv_lam = inv.astype(np.float32 if dtype == torch.float32 else np.float64)
        else:
            self.inv_lam = torch.from_numpy(inv).to(device=device, dtype=dtype)
        self._inv32 = None
        self.edges = edges

    def solve(self, rhs):
        """rhs (C, h, w) -> solution (C, h, w), a new array."""
        x = self.ax.extend(self.ay.extend(rhs, -2), -1)
        x = self.ax.forward(self.ay.forward(x, -2), -1)
        x *= self.inv_lam
        if self.singular:
            x[..., 0, 0] = 0.0
        x = self.ax.inverse(self.ay.inverse(x, -2), -1)
        return self.ax.restrict(self.ay.restrict(x, -2), -1)

    def precondition(self, r):
        """The CG preconditioner: the same solve in float32 whatever the working precision (it only steers
        the iteration; CG's accuracy comes from the residual, computed in the working precision)."""
        if r.dtype in (np.float32, torch.float32):
            return self.solve(r)
        if self._inv32 is None:
            self._inv32 = self.inv_lam.astype(np.float32) if self.xp.numpy else self.inv_lam.float()
        inv, self.inv_lam = self.inv_lam, self._inv32
        try:
            z = self.solve(r.astype(np.float32) if self.xp.numpy else r.float())
        finally:
            self.inv_lam = inv
        return z.astype(r.dtype) if self.xp.numpy else z.to(r.dtype)

    def apply(self, x):
        """The operator on (C, h, w): 4 x_p minus the neighbours; the ring is 0, a frame-edge neighbour is the
        pixel itself (Neumann)."""
        top, bottom, left, right = self.edges
        out = 4.0 * x
        out[..., 1:, :] -= x[..., :-1, :]
        out[..., :-1, :] -= x[..., 1:, :]
        out[..., :, 1:] -= x[..., :, :-1]
        out[..., :, :-1] -= x[..., :, 1:]
        if top:
            out[..., 0, :] -= x[..., 0, :]
        if bottom:
            out[..., -1, :] -= x[..., -1, :]
        if left:
            out[..., :, 0] -= x[..., :, 0]
        if right:
            out[..., :, -1] -= x[..., :, -1]
        return out


def _smooth_length(n: int) -> int:
    """Smallest m >= n with m + 1 a product of 2, 3, 5 (fast FFT lengths for the DST's 2(m + 1))."""
    m = n
    while True:
        v = m + 1
        for p in (2, 3, 5):
            while v % p == 0:
                v //= p
        if v == 1:
            return m
        m += 1


def _grow(lo: int, hi: int, size: int, want: int) -> tuple[int, int]:
    """Grow [lo, hi) to length ``want`` (split both sides) without leaving [0, size)."""
    extra = want - (hi - lo)
    lo2 = max(0, lo - extra // 2)
    hi2 = min(size, lo2 + want)
    lo2 = max(0, hi2 - want)
    return lo2, hi2


# ------------------------------------------------------------------------------------------------ Poisson


def _box_of(m, margin: int) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of m > 0 (numpy or torch, (H, W)) grown by ``margin`` and clipped, or None if empty."""
    on = m > 0
    if isinstance(on, np.ndarray):
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    else:
        rows = torch.nonzero(on.any(dim=1)).flatten()
        cols = torch.nonzero(on.any(dim=0)).flatten() if rows.numel() else rows
    if len(rows) == 0:
        return None
    h, w = m.shape
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)


def _work_precision(options: PoissonOptions, solver: str, device: torch.device) -> torch.dtype:
    if device.type == "mps":
        return torch.float32
    if options.precision == "float64":
        return torch.float64
    if options.precision == "float32":
        return torch.float32
    return torch.float32 if solver == "dst" else torch.float64


def _correction_rhs(s, t, m, guidance: str, n_colour: int, xp):
    """Right-hand side sum_q w_pq (G_pq - (t_p - t_q)) on a region (C, h, w) whose outside has no edges.

    s, t: (C, h, w) (already in log space for the "log" channels), m: (h, w)."""
    if guidance == "mixed":  # per edge the larger gradient vector over the colour channels (Perez eq. 13)
        dsx, dtx = s[..., :, 1:] - s[..., :, :-1], t[..., :, 1:] - t[..., :, :-1]
        dsy, dty = s[..., 1:, :] - s[..., :-1, :], t[..., 1:, :] - t[..., :-1, :]
        use_x = (dsx[:n_colour] ** 2).sum(axis=0) > (dtx[:n_colour] ** 2).sum(axis=0)
        use_y = (dsy[:n_colour] ** 2).sum(axis=0) > (dty[:n_colour] ** 2).sum(axis=0)
        gx = (dsx - dtx) * use_x
        gy = (dsy - dty) * use_y
    else:  # G - dt is the gradient of s - t
        d = s - t
        gx = d[..., :, 1:] - d[..., :, :-1]
        gy = d[..., 1:, :] - d[..., :-1, :]
    gx *= xp.maximum(m[:, 1:], m[:, :-1])
    gy *= xp.maximum(m[1:], m[:-1])
    # d_j - d_{j-1} should be g[j-1] (the edge between j-1 and j): sum_q (d_p - d_q) = g_left - g_right,
    # with no flux through the region's outer sides
    rhs = xp.zeros(s)
    rhs[..., :, 1:] += gx
    rhs[..., :, :-1] -= gx
    rhs[..., 1:, :] += gy
    rhs[..., :-1, :] -= gy
    return rhs


def _pcg(op: _BoxSolver, omega, b, tol: float, max_iter: int):
    """Conjugate gradients on the pixels ``omega`` (h, w) of the box (1 there, 0 elsewhere), zero elsewhere;
    preconditioner: the box's direct solve restricted to omega (symmetric positive definite). The channels
    are solved together, each with its own step lengths."""
    xp = op.xp

    def dot(u, v):
        return (u * v).sum(axis=(-2, -1))

    def safe_div(a, b):
        ok = b > 0
        return a / (b + ~ok) * ok  # a / b where b > 0, else 0

    b = b * omega
    bnorm = dot(b, b) ** 0.5
    bnorm = bnorm + (bnorm == 0)
    x = xp.zeros(b)
    r = b.copy() if xp.numpy else b.clone()
    z = op.precondition(r)
    z *= omega
    p = z.copy() if xp.numpy else z.clone()
    rz = dot(r, z)
    it = 0
    for it in range(1, max_iter + 1):
        ap = op.apply(p)
        ap *= omega
        alpha = safe_div(rz, dot(p, ap))
        x += alpha[:, None, None] * p
        r -= alpha[:, None, None] * ap
        if xp.scalar((dot(r, r) ** 0.5 / bnorm).max()) <= tol:
            break
        z = op.precondition(r)
        z *= omega
        rz_new = dot(r, z)
        beta = safe_div(rz_new, rz)
        rz = rz_new
        p = z + beta[:, None, None] * p
    else:
        log.warning("poisson_blend: CG stopped at max_iter=%d before reaching tol=%g", max_iter, tol)
    log.debug("poisson_blend: CG %d iterations", it)
    return x


def _blend_one(s: torch.Tensor, t: torch.Tensor, m: torch.Tensor, options: PoissonOptions, use_numpy: bool
               ) -> tuple[tuple[int, int, int, int], torch.Tensor] | None:
    """One image: s, t (C, H, W), m (H, W). Returns ((y0, y1, x0, x1), values (C, y1-y0, x1-x0)) for the
    solved box, or None for an empty mask. ``use_numpy``: the CPU path on zero-copy numpy views (nothing is
    written into them: every array below is derived)."""
    xp = _Numpy if use_numpy else _Torch
    solver = "dst" if options.solver == "auto" else options.solver
    h_img, w_img = m.shape
    mm = m.numpy() if use_numpy else m
    box = _box_of(mm, options.margin_px if solver == "dst" else 1)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    # fast FFT lengths: grow the box a little where the frame allows (for "cg" only the preconditioner sees
    # the box: the unknowns stay the mask's pixels)
    if y0 > 0 and y1 < h_img:
        y0, y1 = _grow(y0, y1, h_img, _smooth_length(y1 - y0))
    if x0 > 0 and x1 < w_img:
        x0, x1 = _grow(x0, x1, w_img, _smooth_length(x1 - x0))
    edges = (y0 == 0, y1 == h_img, x0 == 0, x1 == w_img)
    # the region plus its ring (where the ring is inside the frame)
    ey0, ey1, ex0, ex1 = max(0, y0 - 1), min(h_img, y1 + 1), max(0, x0 - 1), min(w_img, x1 + 1)
    wd = _work_precision(options, solver, s.device)
    if use_numpy:
        nd = np.float32 if wd == torch.float32 else np.float64
        se = s[:, ey0:ey1, ex0:ex1].numpy().astype(nd, copy=False)
        te = t[:, ey0:ey1, ex0:ex1].numpy().astype(nd, copy=False)
        me = np.clip(mm[ey0:ey1, ex0:ex1].astype(nd, copy=False), 0.0, 1.0)
    else:
        se = s[:, ey0:ey1, ex0:ex1].to(wd)
        te = t[:, ey0:ey1, ex0:ex1].to(wd)
        me = m[ey0:ey1, ex0:ex1].to(wd).clamp(0.0, 1.0)
    c = s.shape[0]
    n_colour = 3 if c == 4 else c
    use_log = options.guidance == "log"
    if use_log:
        eps = options.log_eps
        sl = xp.cat([xp.log(xp.floor(se[:n_colour], eps)), se[n_colour:]], 0)
        tl = xp.cat([xp.log(xp.floor(te[:n_colour], eps)), te[n_colour:]], 0)
    else:
        sl, tl = se, te
    rhs = _correction_rhs(sl, tl, me, options.guidance, n_colour, xp)
    iy, ix, bh, bw = y0 - ey0, x0 - ex0, y1 - y0, x1 - x0
    rhs = rhs[:, iy:iy + bh, ix:ix + bw]
    op = _BoxSolver(bh, bw, edges, wd, s.device, use_numpy)
    mb = me[iy:iy + bh, ix:ix + bw]
    tb = te[:, iy:iy + bh, ix:ix + bw]
    if solver == "dst":
        d = op.solve(rhs)  # a box without any Dirichlet side comes back with zero mean (its free constant)
    else:
        omega = (mb > 0).astype(mb.dtype) if use_numpy else (mb > 0).to(mb.dtype)
        d = _pcg(op, omega, rhs, options.tol, options.max_iter)
    if use_log:
        tlb = tl[:, iy:iy + bh, ix:ix + bw]
        u = xp.cat([xp.exp(tlb[:n_colour] + d[:n_colour]), tb[n_colour:] + d[n_colour:]], 0)
        out = u * mb + tb * (1 - mb)
    else:
        out = tb + d * mb
    if use_numpy:
        return (y0, y1, x0, x1), torch.from_numpy(np.ascontiguousarray(out)).to(t.dtype)
    return (y0, y1, x0, x1), out.to(t.dtype)


def _all_finite(x: torch.Tensor) -> bool:
    """One reduction (a NaN or Inf anywhere makes the sum non-finite); the exact test only if it is not."""
    if x.device.type == "cpu":
        a = x.detach().numpy()
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def poisson_blend(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                  options: PoissonOptions = PoissonOptions()) -> torch.Tensor:
    """Gradient-domain blend of ``source`` into ``target`` where ``mask`` is on (the discrete system, the
    solvers, the frame-edge condition, "log" and RGBA are in the module docstring).

    Convention:
        source, target: (B, C, H, W) float32 (float64 accepted), same shape, dtype and device; scene-linear
            (or any linear data), premultiplied where C == 4; any range, never clamped. ``source`` is already
            in the target's pixel grid (warp it first: ``paste_back`` does).
        mask: (B, 1, H, W) or (1, 1, H, W), float in [0, 1] (clipped), soft allowed; same H, W and device.
        Returns (B, C, H, W), a new tensor: the target outside each mask's solve region, bit-identical; a
        copy of the target where the mask is empty or all zero. Inputs are not modified.
    Only the mask's bounding box (+ margin) is solved, never the whole frame. CPU tensors go through numpy
    views and scipy.fft (PoissonOptions.backend "auto"/"scipy"), others through torch.fft; the tests hold
    the two to the same numbers. Work precision: see PoissonOptions.precision (float32 keeps the "dst"
    correction solve within 1e-4 relative of a float64 sparse direct solve on HDR data up to 100: measured
    in bench/blend.py, held by tests/core/test_blend.py).
    Raises InputError for NaN / Inf in source or target (naming which), shape / device mismatches and a mask
    of another size.
    """
    if not isinstance(options, PoissonOptions):
        raise InputError(f"options must be PoissonOptions, got {type(options).__name__}")
    check_images(source, "source", dtypes=_IMAGE_DTYPES)
    check_images(target, "target", dtypes=_IMAGE_DTYPES)
    if source.shape != target.shape or source.dtype != target.dtype:
        raise InputError(f"source {tuple(source.shape)} {source.dtype} and target {tuple(target.shape)} "
                         f"{target.dtype} must have the same shape and dtype", hint="warp the source into the "
                         "target's frame first (core.warp.warp_affine or paste_back)")
    if source.device != target.device:
        raise InputError(f"source is on {source.device} but target on {target.device}: move one of them")
    check_masks(mask, target, "mask")
    use_numpy = options.backend == "scipy" or (options.backend == "auto" and target.device.type == "cpu")
    if use_numpy and target.device.type != "cpu":
        raise InputError(f"PoissonOptions.backend='scipy' needs CPU tensors, got {target.device}",
                         hint="use backend='torch' or 'auto'")
    for name, x in (("source", source), ("target", target), ("mask", mask)):
        if not _all_finite(x):
            raise InputError(f"{name} contains NaN or Inf", hint=f"clean the {name} (e.g. torch.nan_to_num) first")
    source, target, mask = source.detach(), target.detach(), mask.detach()
    out = torch.from_numpy(target.numpy().copy()) if use_numpy else target.clone()
    for i in range(target.shape[0]):
        m = mask[i if mask.shape[0] > 1 else 0, 0]
        res = _blend_one(source[i], target[i], m, options, use_numpy)
        if res is None:
            continue
        (y0, y1, x0, x1), vals = res
        out[i, :, y0:y1, x0:x1] = vals
    return out


# ------------------------------------------------------------------------------------------------ paste-back


def _over_inplace(region: torch.Tensor, src: torch.Tensor, m: torch.Tensor, use_numpy: bool) -> None:
    """region <- src * m + region * (1 - a * m), premultiplied over with coverage m (a: src alpha or 1).
    Written into ``region`` (a view of paste_back's own output); numpy in place on CPU."""
    if use_numpy:
        r, sn, mn = region.numpy(), src.numpy(), m.numpy()
        am = sn[:, 3:4] * mn if sn.shape[1] == 4 else mn
        r *= 1.0 - am
        r += sn * mn
    else:
        am = src[:, 3:4] * m if src.shape[1] == 4 else m
        region.mul_(1.0 - am).add_(src * m)


def paste_back(frames: torch.Tensor, crops: torch.Tensor, frame_from_crop: torch.Tensor, masks: torch.Tensor,
               frame_index: torch.Tensor, *, options: PasteOptions = PasteOptions()) -> torch.Tensor:
    """Composite N processed face crops back into B frames, each only inside its own ROI.

    Convention:
        frames: (B, C, H, W) float32 (float64 accepted), scene-linear, premultiplied where C == 4, any device.
        crops: (N, C, h, w) same dtype/device and C as frames. masks: (N, 1, h, w) in [0, 1], crop space.
        frame_from_crop: (N, 2, 3) (or (1, 2, 3)) crop -> frame, pixel-area coordinates.
        frame_index: (N,) integer, which frame each crop belongs to (repeats allowed: many faces per frame,
            composited in order). Returns (B, C, H, W), a new tensor; frames that no crop names are
            bit-identical copies, and pixels outside every ROI are untouched.
    Each crop and its mask are warped (core.warp.warp_affine) only into roi_of_warp's box. The crop is warped
    with "replicate" borders (an edge colour, not black, so a mask edge never darkens) and the mask with zero
    borders after feathering in crop space. "over": out = crop * m + frame * (1 - a * m), premultiplied, with
    a = the crop's alpha (C == 4) or 1, so for RGBA the alpha is a_crop * m + a_frame * (1 - a_crop * m).
    "poisson": poisson_blend of the warped crop into the frame's ROI (grown by the Poisson margin).
    """
    if not isinstance(options, PasteOptions):
        raise InputError(f"options must be PasteOptions, got {type(options).__name__}")
    check_images(frames, "frames", dtypes=_IMAGE_DTYPES)
    check_images(crops, "crops", dtypes=_IMAGE_DTYPES)
    n = crops.shape[0]
    if crops.shape[1] != frames.shape[1] or crops.dtype != frames.dtype:
        raise InputError(f"crops {tuple(crops.shape)} {crops.dtype} must have the frames' channels and dtype "
                         f"({frames.shape[1]}, {frames.dtype})")
    if crops.device != frames.device:
        raise InputError(f"crops are on {crops.device} but frames on {frames.device}: move one of them")
    check_masks(masks, crops, "masks")
    if masks.shape[0] != n:
        raise InputError(f"masks must have one mask per crop ({n}), got {masks.shape[0]}")
    mats = as_matrices(frame_from_crop, n, "frame_from_crop")
    if not isinstance(frame_index, torch.Tensor) or frame_index.ndim != 1 or frame_index.shape[0] != n \
            or frame_index.dtype.is_floating_point or frame_index.dtype == torch.bool:
        got = tuple(frame_index.shape) if isinstance(frame_index, torch.Tensor) else type(frame_index).__name__
        raise InputError(f"frame_index must be an integer tensor of shape ({n},), got {got}")
    idx = [int(v) for v in frame_index.detach().cpu().tolist()]
    nb = frames.shape[0]
    if any(v < 0 or v >= nb for v in idx):
        raise InputError(f"frame_index values must be in [0, {nb}), got {idx}")
    on_cpu = frames.device.type == "cpu"
    frames_d = frames.detach()
    out = torch.from_numpy(frames_d.numpy().copy()) if on_cpu else frames_d.clone()
    if n == 0:
        return out
    m_all = feather_mask(masks.to(crops.dtype), options.feather_px, mode=options.feather_mode)
    hf, wf = frames.shape[2:]
    hc, wc = crops.shape[2:]
    mask_interp = "nearest" if options.interpolation == "nearest" else "linear"
    mats64 = mats.detach().cpu().to(torch.float64)
    for k in range(n):
        mk = mats64[k if mats64.shape[0] > 1 else 0]
        pad = SUPPORT_PX[options.interpolation] * max(1.0, warp_scale(mk)) + 1.0
        if options.mode == "poisson":
            pad += options.poisson.margin_px + 2
        x0, y0, x1, y1 = roi_of_warp(mk, (wc, hc), (wf, hf), pad)
        if x1 <= x0 or y1 <= y0:
            continue  # the crop lands outside the frame
        roi_from_crop = mk.clone()
        roi_from_crop[0, 2] -= x0
        roi_from_crop[1, 2] -= y0
        rw, rh = x1 - x0, y1 - y0
        src = warp_affine(crops[k:k + 1], roi_from_crop[None], (rw, rh), interpolation=options.interpolation,
                          border="replicate")
        mw = warp_affine(m_all[k:k + 1], roi_from_crop[None], (rw, rh), interpolation=mask_interp,
                         border="constant")
        if on_cpu:
            np.clip(mw.numpy(), 0.0, 1.0, out=mw.numpy())
        else:
            mw.clamp_(0.0, 1.0)
        b = idx[k]
        region = out[b:b + 1, :, y0:y1, x0:x1]  # a view of our own copy: written in place
        if options.mode == "over":
            _over_inplace(region, src.detach(), mw, on_cpu)
        else:
            region.copy_(poisson_blend(src.detach(), region, mw, options=options.poisson))
    return out
