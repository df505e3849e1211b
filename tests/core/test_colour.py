import numpy as np
import pytest

from facegraph.core.colour import (ViewOptions, apply_view, exposure_gain, linear_to_rec709, linear_to_srgb,
                                   network_view, ocio_view, rec709_to_linear, srgb_to_linear, unpremultiply)
from facegraph.core.errors import InputError


def test_srgb_reference_values_and_round_trip():
    # IEC 61966-2-1: 0.5 linear -> 0.7354, 0.0031308 is the break point
    assert float(linear_to_srgb(np.float32(0.5))) == pytest.approx(0.735356, abs=1e-5)
    assert float(srgb_to_linear(np.float32(0.04045))) == pytest.approx(0.04045 / 12.92, abs=1e-7)
    x = np.linspace(-1, 16, 1000).astype(np.float32)  # unclamped both ways
    assert np.allclose(srgb_to_linear(linear_to_srgb(x)), x, rtol=1e-5, atol=1e-6)


def test_rec709_round_trip():
    x = np.linspace(0, 4, 500).astype(np.float32)
    assert np.allclose(rec709_to_linear(linear_to_rec709(x)), x, rtol=1e-4, atol=1e-6)
    assert float(linear_to_rec709(np.float32(0.01))) == pytest.approx(0.045, abs=1e-6)  # 4.5 L below 0.018


def test_unpremultiply():
    rgb = np.array([[[0.1, 0.2, 0.3]]], np.float32)
    a = np.array([[0.5]], np.float32)
    assert np.allclose(unpremultiply(rgb, a), [[[0.2, 0.4, 0.6]]])
    assert np.allclose(unpremultiply(rgb, np.zeros((1, 1), np.float32)), rgb)


def _face_like(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((48, 64, 3)) * 0.4 + 0.05).astype(np.float32)


@pytest.mark.parametrize("stops", [-4, -2, 0, 2, 4])
def test_auto_exposure_makes_the_view_independent_of_exposure(stops):
    base = _face_like()
    ref = network_view(base, options=ViewOptions(exposure="auto_frame"))
    shifted = network_view(base * np.float32(2.0 ** stops), options=ViewOptions(exposure="auto_frame"))
    assert np.abs(ref - shifted).max() < 1e-4
    plain = network_view(base * np.float32(2.0 ** stops), options=ViewOptions(exposure="none"))
    if stops != 0:
        assert np.abs(ref - plain).mean() > 0.05  # without it, the network would see a different picture


def test_network_view_is_clipped_and_same_geometry():
    x = _face_like() * 50
    x[0, 0] = np.nan
    v = network_view(x, options=ViewOptions(exposure="none"))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1 and np.isfinite(v).all()


def test_region_exposure_uses_the_box():
    x = np.full((40, 40, 3), 0.01, np.float32)
    x[10:20, 10:20] = 1.0
    assert exposure_gain(x, box=(10, 10, 20, 20)) == pytest.approx(0.18)
    assert exposure_gain(np.zeros((4, 4, 3), np.float32)) == 1.0


def test_options_are_validated():
    with pytest.raises(InputError, match="exposure"):
        ViewOptions(exposure="sometimes")
    with pytest.raises(InputError, match="ocio_config"):
        ViewOptions(view="ocio")


def test_ocio_builtin_config_offline():
    x = np.full((2, 2, 3), 0.18, np.float32)
    out = ocio_view(x, "ocio://studio-config-latest", "sRGB - Display", "Un-tone-mapped", "Linear Rec.709 (sRGB)")
    assert out[0, 0, 0] == pytest.approx(float(linear_to_srgb(np.float32(0.18))), abs=2e-3)
    tone_mapped = apply_view(x, ViewOptions(view="ocio", ocio_config="ocio://studio-config-latest"))
    assert 0.2 < tone_mapped[0, 0, 0] < 0.6
    with pytest.raises(InputError, match="views: "):
        ocio_view(x, "ocio://studio-config-latest", view="No Such View")
    with pytest.raises(InputError, match="cannot load OCIO config"):
        ocio_view(x, "/nonexistent/config.ocio")


# ------------------------------------------------------------------------------- convert_colourspace
from facegraph.core.colour import (BUILTIN_COLOURSPACES, OCIO_LINEAR_REC709, convert_colourspace,  # noqa: E402
                                   reinterpret_decoded)

_RAMP = np.linspace(0.0, 1.0, 4097, dtype=np.float32)[:, None].repeat(3, 1)


def test_convert_srgb_round_trip_on_unit_range():
    lin = convert_colourspace(_RAMP, "srgb", "linear")
    assert np.array_equal(lin, srgb_to_linear(_RAMP))  # the built-in is the IEC 61966-2-1 function itself
    assert np.abs(convert_colourspace(lin, "linear", "srgb") - _RAMP).max() <= 1e-6
    assert np.array_equal(convert_colourspace(_RAMP, "linear", "srgb"), linear_to_srgb(_RAMP))


def test_convert_rec709_both_directions():
    assert np.array_equal(convert_colourspace(_RAMP, "rec709", "linear"), rec709_to_linear(_RAMP))
    lin = np.linspace(0, 4, 999, dtype=np.float32)[:, None].repeat(3, 1)
    assert np.abs(convert_colourspace(convert_colourspace(lin, "linear", "rec709"), "rec709", "linear")
                  - lin).max() <= 1e-5 * 4
    # encoded -> linear -> encoded: exact except the documented step of the rounded constants at the break
    back = convert_colourspace(convert_colourspace(_RAMP, "rec709", "linear"), "linear", "rec709")
    gap = (_RAMP >= 0.081) & (_RAMP < 0.0813)
    assert np.abs(back - _RAMP)[~gap].max() <= 1e-6 and np.abs(back - _RAMP)[gap].max() < 3e-4


def test_convert_between_encodings_goes_through_linear():
    x = _RAMP[::7]
    assert np.allclose(convert_colourspace(x, "srgb", "rec709"), linear_to_rec709(srgb_to_linear(x)), atol=1e-7)


def test_convert_is_unclamped_odd_extension_and_never_in_place():
    x = np.array([[-0.5, 2.0, 16.0]], np.float32)
    keep = x.copy()
    enc = convert_colourspace(x, "linear", "srgb")
    assert float(enc[0, 1]) == pytest.approx(1.055 * 2 ** (1 / 2.4) - 0.055, abs=1e-6)  # past 1, not clamped
    assert float(enc[0, 0]) == pytest.approx(-float(linear_to_srgb(np.float32(0.5))), abs=1e-7)  # odd
    assert np.allclose(convert_colourspace(enc, "srgb", "linear"), x, rtol=1e-5)
    assert np.array_equal(x, keep)
    same = convert_colourspace(x, "linear", "linear")
    assert np.array_equal(same, x) and same is not x


def test_convert_torch_path_matches_numpy(device):
    import torch

    x = np.random.default_rng(3).uniform(-0.2, 3.0, (2, 5, 7, 3)).astype(np.float32)
    t = torch.from_numpy(x).to(device)
    for src in BUILTIN_COLOURSPACES:
        for dst in BUILTIN_COLOURSPACES:
            out = convert_colourspace(t, src, dst)
            assert isinstance(out, torch.Tensor) and out.device == t.device and out.dtype == torch.float32
            ref = convert_colourspace(x, src, dst)
            assert np.allclose(out.cpu().numpy(), ref, rtol=2e-6, atol=1e-6), (src, dst)
    assert np.array_equal(t.cpu().numpy(), x)


def test_convert_rejects_bad_input():
    with pytest.raises(InputError, match=r"\(\.\.\., 3\)"):
        convert_colourspace(np.zeros((4, 4), np.float32), "srgb", "linear")
    with pytest.raises(InputError, match="target"):
        convert_colourspace(_RAMP, "srgb", "  ")
    with pytest.raises(InputError, match="unknown OCIO colour space 'No Such Space'"):
        convert_colourspace(_RAMP, "linear", "No Such Space")
    with pytest.raises(InputError, match="OCIO config"):
        convert_colourspace(_RAMP, "linear", "ACEScg", ocio_config="/nonexistent/config.ocio")


def test_convert_ocio_round_trip_and_agrees_with_builtins():
    x = np.random.default_rng(1).uniform(0, 4, (16, 16, 3)).astype(np.float32)
    cg = convert_colourspace(x, "linear", "ACEScg")  # default config: the built-in studio config
    assert np.abs(cg - x).max() > 0.01  # a real gamut change
    assert np.abs(convert_colourspace(cg, "ACEScg", "linear") - x).max() <= 1e-5
    # the studio config's own names for the built-ins agree with the built-in curves
    assert np.abs(convert_colourspace(_RAMP, "linear", "sRGB Encoded Rec.709 (sRGB)")
                  - linear_to_srgb(_RAMP)).max() < 5e-5
    assert np.abs(convert_colourspace(_RAMP, OCIO_LINEAR_REC709, "linear") - _RAMP).max() <= 1e-6
    # mixed: an sRGB-encoded value to ACEScg decodes with the built-in curve first
    assert np.allclose(convert_colourspace(_RAMP, "srgb", "ACEScg"),
                       convert_colourspace(srgb_to_linear(_RAMP), "linear", "ACEScg"), atol=1e-6)


def test_convert_ocio_needs_cpu_tensor_and_returns_tensor():
    import torch

    t = torch.rand(1, 3, 4, 3)
    out = convert_colourspace(t, "ACEScg", "linear")
    assert isinstance(out, torch.Tensor) and out.shape == t.shape
    assert np.allclose(out.numpy(), convert_colourspace(t.numpy(), "ACEScg", "linear"))
    if torch.cuda.is_available():
        gpu = torch.device("cuda", 0)
        with pytest.raises(InputError, match="cpu"):
            convert_colourspace(t.to(gpu), "ACEScg", "linear")


def test_reinterpret_decoded_recovers_file_values_and_keeps_alpha():
    stored = np.random.default_rng(2).random((3, 4, 3)).astype(np.float32)
    alpha = np.full((3, 4, 1), 0.5, np.float32)
    alpha[0, 0] = 0.0
    # what read_image returns for an 8/16-bit RGBA still: sRGB-decoded straight colour, then premultiplied
    decoded = np.concatenate([srgb_to_linear(stored) * alpha, alpha], -1)
    decoded[0, 0, :3] = srgb_to_linear(stored[0, 0])  # alpha 0: colour kept as is (emissive)
    out = reinterpret_decoded(decoded, "srgb", "linear")
    assert np.allclose(out[..., :3], np.where(alpha > 0, stored * alpha, stored), atol=2e-6)
    assert np.array_equal(out[..., 3], decoded[..., 3])
    out709 = reinterpret_decoded(srgb_to_linear(stored), "srgb", "rec709")  # RGB only: no alpha
    assert np.allclose(out709, rec709_to_linear(stored), atol=2e-6)
    assert np.array_equal(reinterpret_decoded(decoded, "linear", "linear"), decoded)
    with pytest.raises(InputError, match="assume"):
        reinterpret_decoded(decoded, "srgb", "ACEScg")


def test_ocio_preview_reads_facegraph_frames_as_linear_rec709():
    """The studio config's scene_linear role is ACEScg: the default ('auto') must read our linear Rec.709
    frames as Linear Rec.709, so an OCIO sRGB preview equals the built-in sRGB view."""
    import numpy as np

    from facegraph.core.colour import ViewOptions, apply_view, linear_to_srgb

    x = np.random.default_rng(0).uniform(0.01, 0.9, (4, 5, 3)).astype(np.float32)
    opts = ViewOptions(exposure="none", view="ocio", ocio_config="ocio://studio-config-latest",
                       ocio_display="sRGB - Display", ocio_view="Un-tone-mapped")
    got = apply_view(x, opts)
    assert np.abs(got - linear_to_srgb(x)).max() < 2e-3


# ------------------------------------------------------------------------- FrameViews (torch frame path)
def _plate(seed=1, alpha=False):
    rng = np.random.default_rng(seed)
    x = (rng.random((60, 90, 3)) ** 3 * 3).astype(np.float32)
    x[0, 0], x[1, 1, 1], x[2, 2, 2] = np.nan, np.inf, -0.5
    if not alpha:
        return x
    a = np.clip(np.linspace(-0.2, 1.1, 90, dtype=np.float32), 0, 1)[None].repeat(60, 0)[..., None]
    with np.errstate(invalid="ignore"):  # inf x 0 alpha: NaN on purpose
        return np.concatenate([x * a, a], -1)


@pytest.mark.parametrize("options", [ViewOptions(), ViewOptions(exposure="none", stops=1.5),
                                     ViewOptions(view="rec709", stops=-1), ViewOptions(view="linear")])
@pytest.mark.parametrize("alpha", [False, True])
def test_frame_views_tone_the_same_numbers_as_network_view(options, alpha, device):
    import torch

    from facegraph.core.colour import FrameViews

    x = _plate(alpha=alpha)
    ref = network_view(x[..., :3], x[..., 3] if alpha else None, options)
    frames = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
    fv = FrameViews(frames, options)
    for backend in (("numpy", "torch") if device.type == "cpu" else ("torch",)):
        got = fv.tone(frames, [0], backend=backend)
        assert got.device == frames.device and got.shape == (1, 3, 60, 90)
        diff = np.abs(got[0].permute(1, 2, 0).cpu().numpy() - ref).max()
        assert diff <= (0 if device.type == "cpu" else 1 / 16383), backend  # the LUT: identical on the CPU
    assert np.array_equal(frames[0].permute(1, 2, 0).cpu().numpy(), x, equal_nan=True)  # input untouched


def test_frame_views_gain_is_measured_once_on_the_reduced_copy(device):
    import torch

    from facegraph.core.colour import FrameViews, _gain_sample, _gain_torch

    x = _plate() * np.float32(0.05)
    fv = FrameViews(torch.from_numpy(x).permute(2, 0, 1)[None].to(device))
    ref = exposure_gain(x)
    assert fv.gain(0) == pytest.approx(ref, rel=1e-6 if device.type == "cpu" else 1e-4)
    rows, cols = _gain_sample(x.shape[:2])
    sample = torch.from_numpy(x).permute(2, 0, 1)[:, rows, cols].to(device)
    assert _gain_torch(sample, 0.18, 1.0) == pytest.approx(ref, rel=1e-5)  # the torch statistic, any device


def test_frame_views_display_mode_only_clips_and_subsets_share_gains():
    import torch

    from facegraph.core.colour import FrameViews

    v = np.clip(_plate(), 0, 1)
    v = np.nan_to_num(v)
    fv = FrameViews.from_display([v, v])
    got = fv.tone(torch.from_numpy(v).permute(2, 0, 1)[None], [1])
    assert np.array_equal(got[0].permute(1, 2, 0).numpy(), v)
    lin = FrameViews(torch.from_numpy(_plate()).permute(2, 0, 1)[None].expand(3, -1, -1, -1))
    sub = lin.subset(slice(1, 3))
    g = sub.gain(1)
    assert lin._gains[2] == g and np.isnan(lin._gains[0])
    with pytest.raises(InputError):
        FrameViews([torch.zeros(3, 4, 4), torch.zeros(3, 5, 4)])
    with pytest.raises(InputError):
        FrameViews(torch.zeros(1, 2, 4, 4))


def test_frame_views_cache_follows_frame_identity():
    import torch

    from facegraph.core.colour import frame_views
    from facegraph.core.tensors import bchw

    image = torch.from_numpy(np.stack([_plate(), _plate(2)]))  # a host IMAGE (B, H, W, C)
    a = frame_views(bchw(image))
    a.gain(1)
    b = frame_views(bchw(image))          # another node, another view object, the same frames
    assert b._gains is a._gains and not np.isnan(b._gains[1])
    image.mul_(2.0)                       # changed in place: measured again
    c = frame_views(bchw(image))
    assert c._gains is not a._gains and np.isnan(c._gains).all()
    d = frame_views(bchw(image), ViewOptions(stops=1.0))  # other options: other gains
    assert d._gains is not c._gains


def test_frame_views_ocio_on_the_cpu():
    import torch

    from facegraph.core.colour import FrameViews

    opts = ViewOptions(view="ocio", ocio_config="ocio://studio-config-latest")
    x = np.abs(np.nan_to_num(_plate()[:8, :8], posinf=0.0))
    ref = network_view(x, options=opts)
    got = FrameViews(torch.from_numpy(x).permute(2, 0, 1)[None], opts).full_view(0)
    assert np.abs(got - ref).max() < 1e-6
