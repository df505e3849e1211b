"""Colour matching in linear light: make a pasted face's tone match the plate's, steadily over a shot.

Three methods, three working spaces, any combination:

``meanstd``   Reinhard-style: per channel, shift the mean and scale the standard deviation (Reinhard, Ashikhmin,
              Gooch & Shirley, "Color Transfer between Images", IEEE CG&A 21(5), 2001). A diagonal affine map
              in the working space; best in ``opponent``, whose channels are nearly decorrelated.
``mkl``       linear Monge-Kantorovich: the closed-form optimal-transport map between the two Gaussians
              N(mu_s, S_s) -> N(mu_t, S_t),  T = S_s^-1/2 (S_s^1/2 S_t S_s^1/2)^1/2 S_s^-1/2,  y = T (x - mu_s)
              + mu_t (Pitie & Kokaram, "The linear Monge-Kantorovitch linear colour mapping for example-based
              colour transfer", IET CVMP 2007; the formula is Olkin & Pukelsheim 1982 / Dowson & Landau 1982).
              Computed in float64 on the 3x3 covariances. It is equivariant under orthonormal changes of
              coordinates, so ``mkl`` in ``log`` and in ``opponent`` are the same map.
``histogram`` per-channel quantile (CDF) matching: a monotone LUT of K quantile pairs (source -> target),
              applied by piecewise-linear interpolation and extrapolated linearly past both ends, so HDR
              highlights beyond the face's range keep rising instead of clipping.

Spaces (``encode`` / ``decode``):

``linear``    the scene-linear RGB values themselves.
``log``       log2 per channel with a linear toe below 2^-7, the break and shape of ACEScct (Academy
              S-2016-001: log2 above 0.0078125, a straight line below it with the same value and slope at the
              break). It is C1, strictly increasing and invertible on the whole real line: zeros and negative
              values (noise, ringing of a resampling filter) are not floored but continue on the line, so
              ``decode(encode(x)) == x`` for every x (to float32 rounding), not only for x > 2^-7. The
              price: a map in log space that darkens pixels already below 2^-7 by more than 1.44 stops'
              worth of toe sends them through zero (bench: 0.1-0.4 % of face pixels, none for a log2 floor).
``opponent``  the orthonormal luminance / chroma rotation of ``log``: rows (1, 1, 1)/sqrt3, (1, 1, -2)/sqrt6,
              (1, -1, 0)/sqrt2 -- the l-alpha-beta matrix of Reinhard et al. 2001 (eq. 4, after Ruderman,
              Cronin & Chiao, JOSA A 15(8), 1998), applied to log RGB directly (we skip their RGB -> LMS step:
              our RGB is the plate's working space, whatever it is).

Statistics are weighted sums over the masked region (soft masks are weights) and accumulate over frames
(``stats_a + stats_b``, :meth:`ColourStats.merge`, ``sum(list_of_stats)``), so a shot-level fit from the
summed stats is exactly the fit on all frames at once: fit the mapping once per shot. For per-frame fits,
:func:`smooth_transfers` smooths the parameters over time.

Convention (every public function):
    images  (B, C, H, W) float32, C = 3 (RGB) or 4 (premultiplied RGBA), scene-linear, unclamped (HDR: values
            may exceed 1 and be slightly negative), on any device; outputs stay on the input's device, the
            code never moves data between devices. For RGBA the colour that is matched is the
            un-premultiplied RGB where alpha > 1e-6 (the threshold of ``core.colour.unpremultiply``), stats are
            weighted by mask x alpha, and alpha passes through unchanged.
    masks   (B, 1, H, W) or (1, 1, H, W) float in [0, 1], same size and device as the images; None = the whole
            frame. Soft values are weights.
    stats / transfers are small float64 tensors on the images' device.
No input is ever modified in place. Geometry is untouched (no coordinates, no matrices between frames).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Literal, Sequence, get_args

import torch

from .errors import EstimationError, InputError
from .tensors import check_images, check_masks

_log = logging.getLogger(__name__)

Method = Literal["meanstd", "mkl", "histogram"]
METHODS: tuple[str, ...] = get_args(Method)
Space = Literal["log", "opponent", "linear"]
SPACES: tuple[str, ...] = get_args(Space)
#: the space each method works best in (bench/colour_match.py): meanstd wants decorrelated channels
DEFAULT_SPACE: dict[str, str] = {"meanstd": "opponent", "mkl": "log", "histogram": "log"}
SmoothMode = Literal["centred", "ema"]
SMOOTH_MODES: tuple[str, ...] = get_args(SmoothMode)

#: log space: log2 above this value, a straight line below (ACEScct's break point, Academy S-2016-001)
LOG_BREAK = 2.0 ** -7
_LOG_BREAK_LOG2 = -7.0
_TOE_SLOPE = 1.0 / (LOG_BREAK * math.log(2.0))  # d/dx log2(x) at the break: the toe joins with the same slope

#: Reinhard et al. 2001 eq. 4 (l-alpha-beta, from Ruderman et al. 1998): orthonormal luminance / chroma rotation
_OPPONENT = (
    (1.0 / math.sqrt(3.0), 1.0 / math.sqrt(3.0), 1.0 / math.sqrt(3.0)),
    (1.0 / math.sqrt(6.0), 1.0 / math.sqrt(6.0), -2.0 / math.sqrt(6.0)),
    (1.0 / math.sqrt(2.0), -1.0 / math.sqrt(2.0), 0.0),
)
CHANNELS: dict[str, tuple[str, str, str]] = {
    "linear": ("R", "G", "B"), "log": ("log2 R", "log2 G", "log2 B"),
    "opponent": ("l (luminance)", "alpha (yellow-blue)", "beta (red-green)")}

#: alpha below this is "no coverage": the colour is not un-premultiplied there (same as core.colour.unpremultiply)
_ALPHA_EPS = 1e-6

#: histogram sketch: fixed bins so sketches of different frames add exactly. log / opponent: uniform bins over
#: [-64, 64] encoded units (2^-64 .. 2^64, beyond any float32 plate). linear: uniform bins in asinh(x / 2^-10),
#: i.e. absolute resolution below ~0.001 and a constant relative resolution (~0.25 %) above, over +-2.5e5.
#: Values outside the range fall in the end bins; the exact per-channel min / max are kept beside the bins.
SKETCH_BINS = 16384
_SKETCH_LOG_RANGE = 64.0
_SKETCH_LIN_SCALE = 2.0 ** -10
_SKETCH_LIN_RANGE = 20.0

#: histogram LUT: extrapolation slopes are measured over the outer 5 % of each tail (enough mass to be stable)
#: and kept within 2^-6 .. 2^6 (six stops of contrast change), a guard against a degenerate tail, not a fit
_TAIL_MASS = 0.05
_SLOPE_GUARD = 64.0

#: below these the source region has no spread (encoded units): meanstd matches only that channel's mean,
#: mkl raises EstimationError (its S_s^-1/2 does not exist)
_MIN_STD = 1e-6
_MIN_EIG = _MIN_STD ** 2


def _choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------- spaces
def _opponent(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(_OPPONENT, dtype=dtype, device=device)


def _log_encode(x: torch.Tensor) -> torch.Tensor:
    # log2(max(x, B)) + (min(x, B) - B) * slope: log2 above the break, the tangent line below (no branch)
    y = torch.clamp(x, min=LOG_BREAK).log2_()
    return y.add_(torch.clamp(x, max=LOG_BREAK), alpha=_TOE_SLOPE).sub_(LOG_BREAK * _TOE_SLOPE)


def _log_decode(y: torch.Tensor) -> torch.Tensor:
    # exp2(max(y, -7)) + (min(y, -7) + 7) / slope: the exact inverse of _log_encode, piece by piece
    x = torch.clamp(y, min=_LOG_BREAK_LOG2).exp2_()
    return x.add_(torch.clamp(y, max=_LOG_BREAK_LOG2), alpha=1.0 / _TOE_SLOPE).sub_(_LOG_BREAK_LOG2 / _TOE_SLOPE)


def _rotate(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """Apply a 3x3 matrix to the channel dimension ``dim`` (0 for (3, N), 1 for (B, 3, H, W))."""
    if dim == 0:
        return m @ x
    b, c, h, w = x.shape
    return torch.matmul(m, x.reshape(b, c, h * w)).reshape(b, c, h, w)


def _enc(x: torch.Tensor, space: str, dim: int = 1) -> torch.Tensor:
    """encode without the copy for ``linear`` (for intermediates that are never written to)."""
    if space == "linear":
        return x
    y = _log_encode(x)
    return _rotate(y, _opponent(x.device, x.dtype), dim) if space == "opponent" else y


def _dec(y: torch.Tensor, space: str, dim: int = 1) -> torch.Tensor:
    if space == "linear":
        return y
    if space == "opponent":
        y = _rotate(y, _opponent(y.device, y.dtype).T, dim)
    return _log_decode(y)


def encode(x: torch.Tensor, space: Space, *, dim: int = 1) -> torch.Tensor:
    """Scene-linear RGB -> working space ``space`` (module docstring). Returns a new tensor.

    Convention: x (B, 3, H, W) with ``dim=1`` or (3, N) with ``dim=0``, float32 (or float64), scene-linear,
    any value (negatives and zeros included: the log toe is linear, see LOG_BREAK). Same shape, dtype, device.
    """
    _choice(space, SPACES, "space")
    return x.clone() if space == "linear" else _enc(x, space, dim)


def decode(y: torch.Tensor, space: Space, *, dim: int = 1) -> torch.Tensor:
    """Working space ``space`` -> scene-linear RGB, the exact inverse of :func:`encode` (to float rounding)."""
    _choice(space, SPACES, "space")
    return y.clone() if space == "linear" else _dec(y, space, dim)


def _sketch_coord(v: torch.Tensor, space: str) -> tuple[torch.Tensor, float, float]:
    """Encoded values -> sketch coordinate, and the coordinate range [lo, hi] the bins cover."""
    if space == "linear":
        return torch.asinh(v / _SKETCH_LIN_SCALE), -_SKETCH_LIN_RANGE, _SKETCH_LIN_RANGE
    return v, -_SKETCH_LOG_RANGE, _SKETCH_LOG_RANGE


def _sketch_value(s: torch.Tensor, space: str) -> torch.Tensor:
    return torch.sinh(s) * _SKETCH_LIN_SCALE if space == "linear" else s


# ----------------------------------------------------------------------------------------------- stats
@dataclasses.dataclass(frozen=True, eq=False)
class ColourStats:
    """Weighted sums of a region's colours in one working space; they add over frames exactly.

    space:   the working space the sums are in.
    weight:  () float64, sum of the weights w (mask x alpha) over the region.
    sum:     (3,) float64, sum of w * x (x the encoded colour).
    outer:   (3, 3) float64, sum of w * x x^T.
    hist:    (3, SKETCH_BINS) float64 weighted histogram sketch per channel, or None (no sketch taken).
    lo / hi: (3,) float64 per-channel min / max over pixels with w > 0 (with ``hist``), else None.
    All on the images' device. Mean, covariance and std follow from the sums (population, divided by weight).
    """

    space: str
    weight: torch.Tensor
    sum: torch.Tensor
    outer: torch.Tensor
    hist: torch.Tensor | None = None
    lo: torch.Tensor | None = None
    hi: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _choice(self.space, SPACES, "ColourStats.space")
        if tuple(self.sum.shape) != (3,) or tuple(self.outer.shape) != (3, 3) or self.weight.ndim != 0:
            raise InputError("ColourStats needs weight (), sum (3,) and outer (3, 3)")
        if (self.hist is None) != (self.lo is None) or (self.hist is None) != (self.hi is None):
            raise InputError("ColourStats.hist, lo and hi come together (all or none)")
        if self.hist is not None and tuple(self.hist.shape) != (3, SKETCH_BINS):
            raise InputError(f"ColourStats.hist must be (3, {SKETCH_BINS}), got {tuple(self.hist.shape)}")

    @property
    def device(self) -> torch.device:
        return self.sum.device

    @property
    def has_sketch(self) -> bool:
        return self.hist is not None

    @property
    def total(self) -> float:
        """The summed weight as a Python float (0 for an empty region)."""
        return float(self.weight)

    @property
    def mean(self) -> torch.Tensor:
        """(3,) float64 weighted mean in the stats' space."""
        return self.sum / self.weight

    @property
    def cov(self) -> torch.Tensor:
        """(3, 3) float64 weighted (population) covariance in the stats' space, symmetrised."""
        m = self.mean
        c = self.outer / self.weight - torch.outer(m, m)
        return 0.5 * (c + c.T)

    @property
    def std(self) -> torch.Tensor:
        """(3,) float64 per-channel weighted standard deviation."""
        return torch.sqrt(torch.clamp(torch.diagonal(self.cov), min=0.0))

    @staticmethod
    def empty(space: Space, device: torch.device | str = "cpu", *, sketch: bool = True) -> "ColourStats":
        """Zero sums: the neutral element of ``+`` (an empty region)."""
        _choice(space, SPACES, "space")
        z = torch.zeros((), dtype=torch.float64, device=device)
        hist = torch.zeros((3, SKETCH_BINS), dtype=torch.float64, device=device) if sketch else None
        lo = torch.full((3,), math.inf, dtype=torch.float64, device=device) if sketch else None
        hi = torch.full((3,), -math.inf, dtype=torch.float64, device=device) if sketch else None
        return ColourStats(space, z, torch.zeros(3, dtype=torch.float64, device=device),
                           torch.zeros((3, 3), dtype=torch.float64, device=device), hist, lo, hi)

    def merge(self, *others: "ColourStats") -> "ColourStats":
        """The stats of all regions together (exact: sums add). Same space, sketch and device required."""
        out = self
        for o in others:
            out = out + o
        return out

    def __add__(self, other: "ColourStats") -> "ColourStats":
        if not isinstance(other, ColourStats):
            return NotImplemented
        if other.space != self.space:
            raise InputError(f"cannot add ColourStats in space {self.space!r} and {other.space!r}",
                             hint="take the stats of every frame in one space")
        if other.has_sketch != self.has_sketch:
            raise InputError("cannot add ColourStats with and without a histogram sketch",
                             hint="take every frame's stats with the same sketch= setting")
        if other.device != self.device:
            raise InputError(f"cannot add ColourStats on {self.device} and {other.device}: move one of them")
        hist = lo = hi = None
        if self.has_sketch:
            hist = self.hist + other.hist
            lo, hi = torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi)
        return ColourStats(self.space, self.weight + other.weight, self.sum + other.sum,
                           self.outer + other.outer, hist, lo, hi)

    def __radd__(self, other: Any) -> "ColourStats":
        if isinstance(other, int) and other == 0:  # sum(list_of_stats)
            return self
        return NotImplemented

    def to(self, device: torch.device | str) -> "ColourStats":
        """A copy on ``device`` (the explicit move the kernels never make by themselves)."""
        mv = (lambda t: None if t is None else t.to(device))
        return ColourStats(self.space, mv(self.weight), mv(self.sum), mv(self.outer), mv(self.hist),
                           mv(self.lo), mv(self.hi))


def _check_finite(x: torch.Tensor, name: str) -> None:
    # one reduction instead of a boolean image: a NaN or Inf anywhere makes the sum non-finite; only a finite
    # sum is trusted, so a (theoretical) overflow of the sum just falls through to the exact test
    if bool(torch.isfinite(x.sum())):
        return
    if not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise InputError(f"{name} contains {bad} values", hint="fix or fill the frame before colour matching")


def _check_mask(mask: torch.Tensor | None, images: torch.Tensor, name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    check_masks(mask, like=images, name=name)
    _check_finite(mask, name)
    lo, hi = (float(v) for v in torch.aminmax(mask))
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{name} must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return mask


def _split(images: torch.Tensor, name: str, checked: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(rgb as stored, alpha or None, straight rgb); validates the batch unless ``checked``."""
    if not checked:
        check_images(images, name, channels=(3, 4))
        _check_finite(images, name)
    rgb = images[:, :3]
    if images.shape[1] == 3:
        return rgb, None, rgb
    alpha = images[:, 3:4]
    straight = torch.where(alpha > _ALPHA_EPS, rgb / torch.clamp(alpha, min=_ALPHA_EPS), rgb)
    return rgb, alpha, straight


def _weights(images: torch.Tensor, alpha: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    b, _, h, w = images.shape
    wt = torch.ones((b, 1, h, w), dtype=torch.float32, device=images.device) if mask is None else \
        mask.to(torch.float32).expand(b, 1, h, w)
    if alpha is not None:
        wt = wt * torch.where(alpha > _ALPHA_EPS, alpha, torch.zeros_like(alpha))
    return wt


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (C, B*H*W) (a view when B == 1)."""
    return x.permute(1, 0, 2, 3).reshape(x.shape[1], -1)


def _mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) bounding the pixels where any frame's mask is > 0, or None if there are none."""
    nz = (mask > 0).any(dim=0)[0]
    rows, cols = torch.nonzero(nz.any(dim=1)), torch.nonzero(nz.any(dim=0))
    if rows.numel() == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _stats(images: torch.Tensor, mask: torch.Tensor | None, space: str, sketch: bool, allow_empty: bool,
           image_name: str, mask_name: str) -> ColourStats:
    _choice(space, SPACES, "space")
    check_images(images, image_name, channels=(3, 4))
    _check_finite(images, image_name)
    mask = _check_mask(mask, images, mask_name)
    if mask is not None:  # only the mask's bounding box can contribute: skip the rest of the frame
        box = _mask_box(mask)
        if box is not None and (box[1] - box[0], box[3] - box[2]) != tuple(images.shape[2:]):
            y0, y1, x0, x1 = box
            images, mask = images[..., y0:y1, x0:x1], mask[..., y0:y1, x0:x1]
    _, alpha, straight = _split(images, image_name, checked=True)
    w = _flat(_weights(images, alpha, mask))[0]
    sel = w > 0
    n = int(sel.sum())
    if n == 0:
        if allow_empty:
            return ColourStats.empty(space, images.device, sketch=sketch)
        what = f"{mask_name} x the alpha of {image_name}" if alpha is not None and mask is not None else \
            (f"the alpha of {image_name}" if mask is None else mask_name)
        raise InputError(f"{mask_name} selects an empty region: {what} is zero everywhere",
                         hint="pass a mask that covers the face (weights > 0), or skip this frame")
    x = _enc(_flat(straight)[:, sel], space, 0).to(torch.float64)   # (3, N) encoded colours
    wd = w[sel].to(torch.float64)
    xw = x * wd
    out = ColourStats(space, wd.sum(), xw.sum(dim=1), xw @ x.T)
    if not sketch:
        return out
    s, s_lo, s_hi = _sketch_coord(x, space)
    width = (s_hi - s_lo) / SKETCH_BINS
    idx = torch.clamp(torch.floor((s - s_lo) / width), 0, SKETCH_BINS - 1).to(torch.int64)
    idx = idx + torch.arange(3, device=x.device)[:, None] * SKETCH_BINS
    hist = torch.bincount(idx.reshape(-1), weights=wd.expand(3, -1).reshape(-1), minlength=3 * SKETCH_BINS)
    return dataclasses.replace(out, hist=hist.reshape(3, SKETCH_BINS), lo=x.min(dim=1).values,
                               hi=x.max(dim=1).values)


def colour_stats(images: torch.Tensor, mask: torch.Tensor | None = None, space: Space = "log", *,
                 sketch: bool = True, allow_empty: bool = False, image_name: str = "images",
                 mask_name: str = "mask") -> ColourStats:
    """Weighted colour statistics of the masked region of a whole batch (all frames pooled).

    Convention: images (B, 3|4, H, W) float32 scene-linear (RGBA premultiplied: the straight colour is used,
    weighted by alpha); mask (B|1, 1, H, W) float in [0, 1] or None (whole frame); any device, stats on the
    images' device. ``sketch`` adds the histogram sketch that ``method="histogram"`` needs (costs a bincount).
    Raises InputError for NaN / Inf, bad shapes or devices, and for an empty region (weights all zero)
    unless ``allow_empty`` (then the neutral :meth:`ColourStats.empty`). ``image_name`` / ``mask_name`` name
    the arguments in errors.
    """
    return _stats(images, mask, space, sketch, allow_empty, image_name, mask_name)


def frame_colour_stats(images: torch.Tensor, mask: torch.Tensor | None = None, space: Space = "log", *,
                       sketch: bool = True, allow_empty: bool = False, image_name: str = "images",
                       mask_name: str = "mask") -> list[ColourStats]:
    """:func:`colour_stats` of each frame of the batch separately: a list of B records (same conventions).

    ``sum(frame_colour_stats(...))`` equals ``colour_stats(...)`` of the batch exactly (to float rounding).
    """
    _choice(space, SPACES, "space")
    check_images(images, image_name, channels=(3, 4))
    if mask is not None:
        check_masks(mask, like=images, name=mask_name)
    out = []
    for b in range(images.shape[0]):
        m = None if mask is None else mask[b if mask.shape[0] > 1 else 0][None]
        try:
            out.append(_stats(images[b:b + 1], m, space, sketch, allow_empty, image_name, mask_name))
        except InputError as e:
            raise e.with_context(frame=b)
    return out


# ----------------------------------------------------------------------------------------------- transfer
@dataclasses.dataclass(frozen=True, eq=False)
class ColourTransfer:
    """A fitted colour map in one working space: affine (matrix + offset) or per-channel LUTs.

    method / space: how it was fitted and where it acts (apply encodes, maps, decodes).
    matrix (3, 3) / offset (3,) float64: ``meanstd`` and ``mkl``: y = matrix @ x + offset (x encoded).
    lut_in / lut_out (3, K) float64: ``histogram``: per channel, strictly increasing source quantiles and the
        target quantiles at the same K levels; slopes (3, 2) float64: the extrapolation slope below the first
        and above the last knot. Between knots the map is piecewise linear.
    All tensors on one device (:attr:`device`); :meth:`to` moves them.
    """

    method: str
    space: str
    matrix: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    lut_in: torch.Tensor | None = None
    lut_out: torch.Tensor | None = None
    slopes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _choice(self.method, METHODS, "ColourTransfer.method")
        _choice(self.space, SPACES, "ColourTransfer.space")
        if self.method == "histogram":
            if self.lut_in is None or self.lut_out is None or self.slopes is None:
                raise InputError("a histogram ColourTransfer needs lut_in, lut_out and slopes")
            if self.lut_in.ndim != 2 or self.lut_in.shape[0] != 3 or self.lut_in.shape[1] < 2 or \
                    self.lut_out.shape != self.lut_in.shape or tuple(self.slopes.shape) != (3, 2):
                raise InputError(f"histogram LUTs must be (3, K >= 2) with slopes (3, 2), got "
                                 f"{tuple(self.lut_in.shape)}, {tuple(self.lut_out.shape)}, {tuple(self.slopes.shape)}")
        else:
            if self.matrix is None or self.offset is None or tuple(self.matrix.shape) != (3, 3) or \
                    tuple(self.offset.shape) != (3,):
                raise InputError(f"a {self.method} ColourTransfer needs matrix (3, 3) and offset (3,)")

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("matrix", "offset", "lut_in", "lut_out", "slopes")
                if getattr(self, k) is not None}

    @property
    def device(self) -> torch.device:
        return next(iter(self._tensors().values())).device

    def to(self, device: torch.device | str) -> "ColourTransfer":
        """A copy on ``device``."""
        return dataclasses.replace(self, **{k: v.to(device) for k, v in self._tensors().items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (float64 values as Python floats: lossless)."""
        return {"method": self.method, "space": self.space,
                **{k: v.detach().cpu().tolist() for k, v in self._tensors().items()}}

    @staticmethod
    def from_dict(d: dict[str, Any], device: torch.device | str = "cpu") -> "ColourTransfer":
        """Inverse of :meth:`to_dict`."""
        t = {k: torch.tensor(d[k], dtype=torch.float64, device=device)
             for k in ("matrix", "offset", "lut_in", "lut_out", "slopes") if d.get(k) is not None}
        return ColourTransfer(d["method"], d["space"], **t)


def _levels(k: int, device: torch.device) -> torch.Tensor:
    """K quantile levels at the centres of K equal-mass slices: (k + 0.5) / K."""
    return (torch.arange(k, dtype=torch.float64, device=device) + 0.5) / k


def sketch_quantiles(stats: ColourStats, levels: torch.Tensor) -> torch.Tensor:
    """Per-channel weighted quantiles from the histogram sketch: (3, K) float64 in the stats' space.

    levels: (K,) float64 in (0, 1], any order. Within a bin the mass is taken as uniform in the sketch
    coordinate; results are clamped to the exact per-channel min / max. Raises InputError without a sketch.
    """
    if not stats.has_sketch:
        raise InputError("these ColourStats have no histogram sketch", hint="take them with sketch=True")
    if stats.total <= 0:
        raise InputError("these ColourStats are empty (weight 0): no quantiles")
    hist = stats.hist
    cdf = torch.cumsum(hist, dim=1)
    target = levels.to(hist.device, torch.float64)[None, :] * cdf[:, -1:]
    j = torch.clamp(torch.searchsorted(cdf.contiguous(), target.contiguous()), 0, SKETCH_BINS - 1)
    before = torch.where(j > 0, cdf.gather(1, torch.clamp(j - 1, min=0)), torch.zeros_like(target))
    mass = hist.gather(1, j)
    frac = torch.where(mass > 0, (target - before) / torch.where(mass > 0, mass, torch.ones_like(mass)),
                       torch.full_like(mass, 0.5)).clamp(0.0, 1.0)
    _, s_lo, s_hi = _sketch_coord(torch.zeros(1, dtype=torch.float64), stats.space)
    width = (s_hi - s_lo) / SKETCH_BINS
    v = _sketch_value(s_lo + (j.to(torch.float64) + frac) * width, stats.space)
    return torch.minimum(torch.maximum(v, stats.lo[:, None]), stats.hi[:, None])


def _strictly_increasing(x: torch.Tensor) -> torch.Tensor:
    """(3, K) non-decreasing -> strictly increasing, moving tied knots apart by a tiny step."""
    k = x.shape[1]
    span = torch.clamp(x[:, -1:] - x[:, :1], min=1e-3)
    step = 1e-7 * span
    ramp = torch.arange(k, dtype=x.dtype, device=x.device)[None, :] * step
    return torch.cummax(x - ramp, dim=1).values + ramp  # y_k - y_(k-1) >= step; unchanged where already apart


def _fit_histogram(src: ColourStats, tgt: ColourStats, quantiles: int) -> ColourTransfer:
    lv = _levels(quantiles, src.device)
    xin = _strictly_increasing(sketch_quantiles(src, lv))
    yout = sketch_quantiles(tgt, lv)
    j = max(1, min(quantiles - 1, int(round(_TAIL_MASS * quantiles))))
    lo_slope = (yout[:, j] - yout[:, 0]) / (xin[:, j] - xin[:, 0])
    hi_slope = (yout[:, -1] - yout[:, -1 - j]) / (xin[:, -1] - xin[:, -1 - j])
    slopes = torch.stack([lo_slope, hi_slope], dim=1).clamp(1.0 / _SLOPE_GUARD, _SLOPE_GUARD)
    return ColourTransfer("histogram", src.space, lut_in=xin, lut_out=yout, slopes=slopes)


def _sym_pow(m: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric PSD matrix power via eigh (float64); returns (m^p, eigenvalues)."""
    vals, vecs = torch.linalg.eigh(m)
    vals = torch.clamp(vals, min=0.0)
    return (vecs * vals.pow(p)) @ vecs.T, vals


def fit_colour_transfer(source_stats: ColourStats, target_stats: ColourStats, method: Method = "mkl",
                        space: Space | None = None, *, quantiles: int = 256) -> ColourTransfer:
    """Fit the map that takes the source region's colour distribution onto the target region's.

    Convention: stats from :func:`colour_stats` (same space, same device; pooled over as many frames as
    wanted). ``space`` may be omitted (the stats' space) or must equal it. ``quantiles`` (K, 2 .. 4096) is
    the LUT size for ``histogram`` (which needs stats with a sketch). All maths in float64 on the stats'
    device; returns a :class:`ColourTransfer` there.
    Raises InputError for mismatched / empty stats, and EstimationError for ``mkl`` when the source colours
    span fewer than 3 dimensions (a line or plane, e.g. a greyscale face). ``meanstd`` matches only the mean
    of a channel without spread in the source (and logs a warning).
    """
    _choice(method, METHODS, "method")
    for name, st in (("source_stats", source_stats), ("target_stats", target_stats)):
        if not isinstance(st, ColourStats):
            raise InputError(f"{name} must be ColourStats (from colour_stats), got {type(st).__name__}")
        if st.total <= 0:
            raise InputError(f"{name} is empty (weight 0): its region had no pixels",
                             hint="fit from frames where the mask covers the face")
    if source_stats.space != target_stats.space:
        raise InputError(f"source_stats are in {source_stats.space!r} but target_stats in {target_stats.space!r}")
    if space is not None and _choice(space, SPACES, "space") != source_stats.space:
        raise InputError(f"space {space!r} differs from the stats' space {source_stats.space!r}",
                         hint="take the stats in the space you fit in")
    if source_stats.device != target_stats.device:
        raise InputError(f"source_stats are on {source_stats.device} but target_stats on {target_stats.device}")
    sp = source_stats.space
    if method == "histogram":
        if not (2 <= int(quantiles) <= 4096):
            raise InputError(f"quantiles must be in 2 .. 4096, got {quantiles}")
        if not (source_stats.has_sketch and target_stats.has_sketch):
            raise InputError("method 'histogram' needs stats with a histogram sketch", hint="colour_stats(sketch=True)")
        return _fit_histogram(source_stats, target_stats, int(quantiles))
    mu_s, mu_t = source_stats.mean, target_stats.mean
    if method == "meanstd":
        sd_s, sd_t = source_stats.std, target_stats.std
        flat = sd_s < _MIN_STD
        if bool(flat.any()):  # nothing to scale there: match the mean only (a shift), and say so
            names = ", ".join(c for c, f in zip(CHANNELS[sp], flat.tolist()) if f)
            _log.warning("meanstd: the source region has no spread in %s (space %s): only its mean is matched",
                         names, sp)
        one = torch.ones_like(sd_s)
        a = torch.diag(torch.where(flat, one, sd_t / torch.where(flat, one, sd_s)))
    else:
        cs, ct = source_stats.cov, target_stats.cov
        half, vals = _sym_pow(cs, 0.5)
        if float(vals.min()) < _MIN_EIG:
            raise EstimationError(f"the source colours span fewer than 3 dimensions in space {sp!r} (smallest "
                                  f"covariance eigenvalue {float(vals.min()):.3g}), e.g. a greyscale face",
                                  hint="use method 'meanstd' or 'histogram' for such a source")
        inv_half, _ = _sym_pow(cs, -0.5)
        mid, _ = _sym_pow(half @ ct @ half, 0.5)
        a = inv_half @ mid @ inv_half
        a = 0.5 * (a + a.T)
    return ColourTransfer(method, sp, matrix=a, offset=mu_t - a @ mu_s)


# ----------------------------------------------------------------------------------------------- apply
#: histogram apply: the piecewise-linear LUT is resampled on this many uniform cells between its first and
#: last knot, so a pixel finds its cell by one multiply instead of a binary search (measured 3-5x faster on
#: 1080p on 2 CPU threads); the resampling error was below 2e-5 of the LUT's range for K = 256 knots
_GRID_CELLS = 4096


def _lut_cells(t: ColourTransfer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per channel: origin x0 (3, 1), inverse cell width (3, 1), and per-cell intercept / slope (3, G + 2):
    cell 0 extrapolates below the first knot, cells 1..G tile [x_0, x_(K-1)], cell G + 1 extrapolates above."""
    kx, ky = t.lut_in, t.lut_out
    g = _GRID_CELLS
    x0, x1 = kx[:, :1], kx[:, -1:]
    edges = x0 + (x1 - x0) * torch.linspace(0.0, 1.0, g + 1, dtype=torch.float64, device=kx.device)[None, :]
    j = torch.clamp(torch.searchsorted(kx.contiguous(), edges.contiguous(), right=True), 1, kx.shape[1] - 1)
    xa, xb, ya, yb = kx.gather(1, j - 1), kx.gather(1, j), ky.gather(1, j - 1), ky.gather(1, j)
    ye = ya + (yb - ya) * (edges - xa) / (xb - xa)   # the exact LUT at the cell edges
    ye[:, -1:] = ky[:, -1:]
    m = (ye[:, 1:] - ye[:, :-1]) / (edges[:, 1:] - edges[:, :-1])
    c = ye[:, :-1] - m * edges[:, :-1]
    lo, hi = t.slopes[:, :1], t.slopes[:, 1:]
    m = torch.cat([lo, m, hi], dim=1)
    c = torch.cat([ky[:, :1] - lo * x0, c, ky[:, -1:] - hi * x1], dim=1)
    return x0, g / (x1 - x0), c, m


def _apply_lut(x: torch.Tensor, t: ColourTransfer) -> torch.Tensor:
    """x (B, 3, H, W) encoded float32 -> mapped through the per-channel LUT with linear extrapolation."""
    x0, inv, c, m = (v.to(torch.float32) for v in _lut_cells(t))
    b, _, h, w = x.shape
    xc = _flat(x)
    cell = (xc - x0).mul_(inv).floor_().add_(1.0).clamp_(0.0, float(_GRID_CELLS + 1)).to(torch.int64)
    cell += torch.arange(3, device=x.device)[:, None] * (_GRID_CELLS + 2)
    y = torch.take(c, cell).addcmul_(torch.take(m, cell), xc)
    return y.reshape(3, b, h, w).permute(1, 0, 2, 3)


def _apply_one(t: ColourTransfer, strength: float, mask: torch.Tensor | None, rgb: torch.Tensor,
               alpha: torch.Tensor | None, straight: torch.Tensor) -> torch.Tensor:
    w = None if mask is None else mask.to(torch.float32) * strength
    if alpha is not None:
        cover = (alpha > _ALPHA_EPS).to(torch.float32)
        w = cover * (strength if w is None else w)
    if t.method == "histogram":
        x = _enc(straight, t.space)
        y = _apply_lut(x, t)
        y = (torch.lerp(x, y, strength) if strength < 1.0 else y) if w is None else x + w * (y - x)
        out = _dec(y, t.space)
    else:
        a, off = t.matrix, t.offset
        base = t.space
        if base == "opponent":  # an affine map in opponent space is one in log space: R^T A R, R^T b
            r = _opponent(a.device, torch.float64)
            a, off, base = r.T @ a @ r, r.T @ off, "log"
        x = _enc(straight, base)
        if w is None:  # fold the strength into the map: identity + s (A - I), s b
            eye = torch.eye(3, dtype=torch.float64, device=a.device)
            a, off = eye + strength * (a - eye), strength * off
        y = _rotate(x, a.to(torch.float32), 1).add_(off.to(torch.float32)[None, :, None, None])
        out = _dec(y if w is None else x + w * (y - x), base)
    if alpha is not None:
        out = out * alpha
    if w is not None:
        out = torch.where(w > 0, out, rgb)
    if alpha is not None:
        out = torch.cat([out, alpha], dim=1)
    return out


def apply_colour_transfer(images: torch.Tensor, transfer: ColourTransfer | Sequence[ColourTransfer], *,
                          strength: float = 1.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Map the colours of ``images`` through ``transfer``; returns a new tensor.

    Convention: images (B, 3|4, H, W) float32 scene-linear on the transfer's device (RGBA premultiplied: the
    straight colour is mapped where alpha > 1e-6 and re-premultiplied; alpha is copied). ``transfer`` is one
    :class:`ColourTransfer` for every frame or a sequence of B (one per frame, e.g. from
    :func:`smooth_transfers`). ``strength`` in [0, 1] blends in the encoded space between the identity (0,
    an exact copy) and the full map (1). ``mask`` (B|1, 1, H, W) in [0, 1] scales the strength per pixel;
    where it is 0 the pixels are copied exactly. Output: same shape, dtype and device, unclamped.
    """
    return _apply(images, transfer, strength, mask, validated=False)


def _apply(images: torch.Tensor, transfer: ColourTransfer | Sequence[ColourTransfer], strength: float,
           mask: torch.Tensor | None, validated: bool) -> torch.Tensor:
    if not validated:
        check_images(images, "images", channels=(3, 4))
        _check_finite(images, "images")
        mask = _check_mask(mask, images, "mask")
    s = float(strength)
    if not (0.0 <= s <= 1.0):
        raise InputError(f"strength must be in [0, 1], got {strength}")
    ts = [transfer] if isinstance(transfer, ColourTransfer) else list(transfer)
    if not ts or not all(isinstance(t, ColourTransfer) for t in ts):
        raise InputError("transfer must be a ColourTransfer or a sequence of them (from fit_colour_transfer)")
    if len(ts) not in (1, images.shape[0]):
        raise InputError(f"got {len(ts)} transfers for {images.shape[0]} frames: pass one, or one per frame")
    for t in ts:
        if t.device != images.device:
            raise InputError(f"the transfer is on {t.device} but the images are on {images.device}",
                             hint="move it with transfer.to(images.device)")
    if s == 0.0:
        return images.clone()
    if mask is not None:  # work on the mask's bounding box only; the rest is an exact copy
        box = _mask_box(mask)
        if box is None:
            return images.clone()
        y0, y1, x0, x1 = box
        if (y1 - y0, x1 - x0) != tuple(images.shape[2:]):
            out = images.clone()
            out[..., y0:y1, x0:x1] = _apply(images[..., y0:y1, x0:x1], ts, s, mask[..., y0:y1, x0:x1],
                                            validated=True)
            return out
    rgb, alpha, straight = _split(images, "images", checked=True)
    if len(ts) == 1:
        return _apply_one(ts[0], s, mask, rgb, alpha, straight)
    frames = []
    for b, t in enumerate(ts):
        m = None if mask is None else mask[b if mask.shape[0] > 1 else 0][None]
        sl = slice(b, b + 1)
        frames.append(_apply_one(t, s, m, rgb[sl], None if alpha is None else alpha[sl], straight[sl]))
    return torch.cat(frames, dim=0)


def match_colour(source: torch.Tensor, target: torch.Tensor, source_mask: torch.Tensor | None = None,
                 target_mask: torch.Tensor | None = None, *, method: Method = "mkl", space: Space | None = None,
                 strength: float = 1.0, quantiles: int = 256, apply_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Fit on ``source`` (under ``source_mask``) -> ``target`` (under ``target_mask``) and apply to ``source``.

    One transfer for the whole batch (pass a shot's frames to fit once per shot). Convention: source
    (B, 3|4, H, W) and target (B', 3|4, H', W') float32 scene-linear on one device; masks (B|1, 1, H, W)
    matching their images, in [0, 1], None = whole frame. ``space`` None = the method's default
    (:data:`DEFAULT_SPACE`: ``opponent`` for ``meanstd``, as Reinhard et al.; ``log`` otherwise). ``apply_mask``
    limits where the map is applied (default: everywhere; pass ``source_mask`` to change only the face).
    Returns the recoloured source.
    """
    _choice(method, METHODS, "method")
    space = DEFAULT_SPACE[method] if space is None else _choice(space, SPACES, "space")
    check_images(source, "source", channels=(3, 4))
    check_images(target, "target", channels=(3, 4))
    if source.device != target.device:
        raise InputError(f"source is on {source.device} but target is on {target.device}: move one of them")
    sk = method == "histogram"
    st_s = colour_stats(source, source_mask, space, sketch=sk, image_name="source", mask_name="source_mask")
    st_t = colour_stats(target, target_mask, space, sketch=sk, image_name="target", mask_name="target_mask")
    tr = fit_colour_transfer(st_s, st_t, method, space, quantiles=quantiles)
    return apply_colour_transfer(source, tr, strength=strength, mask=apply_mask)


# ----------------------------------------------------------------------------------------------- temporal
def smooth_transfers(transfers: Sequence[ColourTransfer], *, mode: SmoothMode = "centred", radius: int = 2,
                     alpha: float = 0.3) -> list[ColourTransfer]:
    """Smooth per-frame transfers' parameters over time, so per-frame fits do not flicker.

    ``centred``: the mean over a window of ``radius`` frames each side (shrunk at the ends; offline, no lag).
    ``ema``: causal exponential moving average p_t = (1 - alpha) p_{t-1} + alpha x_t, p_0 = x_0 (streaming).
    Affine transfers average matrix and offset (the pointwise mean of the affine maps). Histogram transfers
    average the knots of lut_in and lut_out at the same quantile levels (the 1-D Wasserstein barycentre of
    the quantile functions, which keeps lut_in strictly increasing) and the slopes.
    All transfers must share method, space, LUT size and device (InputError otherwise). Returns a new list.
    """
    ts = list(transfers)
    _choice(mode, SMOOTH_MODES, "mode")
    if not ts:
        return []
    if not all(isinstance(t, ColourTransfer) for t in ts):
        raise InputError("transfers must be ColourTransfer records")
    first = ts[0]
    for i, t in enumerate(ts):
        if (t.method, t.space, t.device) != (first.method, first.space, first.device) or \
                (t.lut_in is not None and t.lut_in.shape != first.lut_in.shape):
            raise InputError(f"transfer {i} ({t.method}, {t.space}, {t.device}) differs from transfer 0 "
                             f"({first.method}, {first.space}, {first.device}) or in LUT size",
                             hint="fit every frame with the same method, space and quantiles")
    if mode == "centred" and (int(radius) != radius or radius < 0):
        raise InputError(f"radius must be an integer >= 0, got {radius}")
    if mode == "ema" and not (0.0 < alpha <= 1.0):
        raise InputError(f"alpha must be in (0, 1], got {alpha}")
    n = len(ts)
    if mode == "centred":
        r = int(radius)
        wm = torch.zeros((n, n), dtype=torch.float64)
        for i in range(n):
            lo, hi = max(0, i - r), min(n, i + r + 1)
            wm[i, lo:hi] = 1.0 / (hi - lo)
    else:
        wm = torch.zeros((n, n), dtype=torch.float64)
        wm[0, 0] = 1.0
        for i in range(1, n):
            wm[i] = (1.0 - alpha) * wm[i - 1]
            wm[i, i] = alpha
    wm = wm.to(first.device)
    fields = first._tensors().keys()
    stacked = {k: torch.stack([getattr(t, k) for t in ts]) for k in fields}
    smooth = {k: torch.tensordot(wm, v, dims=1) for k, v in stacked.items()}
    out = [dataclasses.replace(first, **{k: v[i] for k, v in smooth.items()}) for i in range(n)]
    if first.method == "histogram":  # averaging keeps knots increasing; re-assert against rounding
        out = [dataclasses.replace(t, lut_in=_strictly_increasing(t.lut_in)) for t in out]
    return out


# ----------------------------------------------------------------------------------------------- report
def region_stats_difference(a: torch.Tensor, b: torch.Tensor, mask_a: torch.Tensor | None = None,
                            mask_b: torch.Tensor | None = None, space: Space = "log") -> dict[str, Any]:
    """Difference of the per-channel weighted mean and std of region a (in ``a`` under ``mask_a``) and region
    b, in ``space``: how far a colour match is from its target.

    Convention: a, b (B, 3|4, H, W) float32 scene-linear on one device, masks as :func:`colour_stats`.
    Returns a dict of Python floats: ``space``, ``channels`` (names), ``mean_a``, ``mean_b``, ``std_a``,
    ``std_b`` (lists of 3), ``mean_diff`` = mean_a - mean_b, ``std_diff`` = std_a - std_b (lists of 3), and
    ``mean_abs`` / ``std_abs``, the mean over channels of their absolute values. Units: the space's (stops
    for ``log``; linear values for ``linear``).
    """
    _choice(space, SPACES, "space")
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.device != b.device:
        raise InputError(f"a is on {a.device} but b is on {b.device}: move one of them")
    sa = colour_stats(a, mask_a, space, sketch=False, image_name="a", mask_name="mask_a")
    sb = colour_stats(b, mask_b, space, sketch=False, image_name="b", mask_name="mask_b")
    ma, mb, da, db = (v.cpu().tolist() for v in (sa.mean, sb.mean, sa.std, sb.std))
    md = [x - y for x, y in zip(ma, mb)]
    sd = [x - y for x, y in zip(da, db)]
    return {"space": space, "channels": list(CHANNELS[space]), "mean_a": ma, "mean_b": mb, "std_a": da,
            "std_b": db, "mean_diff": md, "std_diff": sd, "mean_abs": sum(abs(v) for v in md) / 3,
            "std_abs": sum(abs(v) for v in sd) / 3}
