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
