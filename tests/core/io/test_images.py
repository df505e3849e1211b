import os

import numpy as np
import pytest

from facegraph.core.colour import srgb_to_linear
from facegraph.core.errors import ImageIOError, InputError
from facegraph.core.io.images import EXR_COMPRESSIONS, read_image, validate_compression, write_image

RNG = np.random.default_rng(0)


def _smooth(shape, scale=4.0):
    """A smooth picture (what lossy codecs are designed for), linear, up to ``scale``."""
    h, w, c = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [scale * (0.5 + 0.45 * np.sin(x / 7 + k) * np.cos(y / 9 - k)) for k in range(c)]
    return np.stack(chans, -1).astype(np.float16).astype(np.float32)


def _half_exact(shape, scale=8.0):
    """Values representable in half float, including > 1 and negatives (scene-linear is unclamped)."""
    return ((RNG.random(shape) - 0.1) * scale).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("compression", ["none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa",
                                         "dwab"])
def test_exr_half_round_trip(tmp_path, compression):
    lossless = compression in ("none", "rle", "zips", "zip", "piz", "pxr24")  # lossless for half data
    px = _half_exact((37, 53, 4)) if lossless else _smooth((37, 53, 4))
    p = write_image(tmp_path / "a.exr", px, pixel_type="half", compression=compression)
    back, info = read_image(p)
    assert info.pixel_type == "half" and back.shape == px.shape
    if lossless:
        assert np.array_equal(back, px)
    else:
        assert np.abs(back - px).mean() < 0.01 * np.abs(px).mean()


@pytest.mark.parametrize("compression", ["none", "zip", "piz"])
def test_exr_float_round_trip_is_bit_exact(tmp_path, compression):
    px = (RNG.standard_normal((16, 24, 3)) * 100).astype(np.float32)
    back, info = read_image(write_image(tmp_path / "f.exr", px, pixel_type="float", compression=compression))
    assert info.pixel_type == "float" and np.array_equal(back.view(np.uint32), px.view(np.uint32))


def test_compression_names_are_validated():
    assert validate_compression("DWAA:45") == "dwaa:45"
    assert set(EXR_COMPRESSIONS) >= {"zip", "piz", "dwaa", "dwab", "b44"}
    with pytest.raises(InputError, match="unknown EXR compression 'zipp'"):
        validate_compression("zipp")
    with pytest.raises(InputError, match="not valid for piz"):
        validate_compression("piz:3")


def test_data_and_display_window_survive(tmp_path):
    px = _half_exact((20, 30, 3))
    p = write_image(tmp_path / "w.exr", px, data_window=(-10, 5), display_window=(0, 0, 16, 12))
    back, info = read_image(p)
    assert info.data_window == (-10, 5, 30, 20) and info.display_window == (0, 0, 16, 12)
    again, info2 = read_image(write_image(tmp_path / "w2.exr", back, data_window=info.data_window,
                                          display_window=info.display_window, attributes=info.attributes))
    assert info2.data_window == info.data_window and info2.display_window == info.display_window
    assert np.array_equal(again, px)


def test_metadata_is_preserved_and_ours_is_added(tmp_path):
    attrs = [("camera:lens", "string", "50mm"), ("camera:fstop", "float", 2.8), ("take", "int", 3),
             ("worldToCamera", "matrix", tuple(float(i) for i in range(16)))]
    p = write_image(tmp_path / "m.exr", _half_exact((4, 4, 3)), attributes=attrs)
    _, info = read_image(p)
    assert info.attribute("camera:lens") == "50mm" and info.attribute("take") == 3
    assert info.attribute("camera:fstop") == pytest.approx(2.8)
    assert tuple(np.ravel(info.attribute("worldToCamera"))) == tuple(float(i) for i in range(16))
    _, info2 = read_image(write_image(tmp_path / "m2.exr", _half_exact((4, 4, 3)), attributes=info.attributes))
    assert dict((n, str(v)) for n, _, v in info2.attributes) == dict((n, str(v)) for n, _, v in info.attributes)


def test_channels_are_addressed_by_name(tmp_path):
    px = _half_exact((6, 5, 4))
    # stored in an unusual order: A, B, G, R
    write_image(tmp_path / "c.exr", px[..., ::-1], channels=("A", "B", "G", "R"))
    back, info = read_image(tmp_path / "c.exr")
    assert info.channels == ("R", "G", "B", "A")
    assert np.array_equal(back, px)
    rgb, info = read_image(tmp_path / "c.exr", channels="RGB")
    assert np.array_equal(rgb, px[..., :3])


def test_layers(tmp_path):
    main, diffuse = _half_exact((4, 4, 3)), _half_exact((4, 4, 3))
    write_image(tmp_path / "l.exr", np.concatenate([main, diffuse], -1),
                channels=("R", "G", "B", "diffuse.R", "diffuse.G", "diffuse.B"))
    a, _ = read_image(tmp_path / "l.exr")
    b, info = read_image(tmp_path / "l.exr", layer="diffuse")
    assert np.array_equal(a, main) and np.array_equal(b, diffuse) and info.channels[0] == "diffuse.R"
    with pytest.raises(ImageIOError, match="no specular.R/G/B"):
        read_image(tmp_path / "l.exr", layer="specular")


def test_luminance_only_files_are_replicated(tmp_path):
    y = _half_exact((4, 4, 1))
    back, _ = read_image(write_image(tmp_path / "y.exr", y))
    assert back.shape == (4, 4, 3) and np.array_equal(back[..., 1], y[..., 0])


@pytest.mark.parametrize("ext, depth, tol", [(".png", 8, 0.5 / 255), (".png", 16, 0.5 / 65535),
                                              (".tif", 16, 0.5 / 65535), (".jpg", 8, 0.01)])
def test_stills_are_srgb_encoded_and_decoded(tmp_path, ext, depth, tol):
    linear = RNG.random((32, 32, 3)).astype(np.float32) ** 2.2 if ext != ".jpg" else _smooth((32, 32, 3), 1.0)
    p = write_image(tmp_path / f"s{ext}", linear, bit_depth=depth)
    back, info = read_image(p)
    assert info.encoding == "srgb"
    from facegraph.core.colour import linear_to_srgb

    err = np.abs(linear_to_srgb(back) - linear_to_srgb(linear))
    assert (err.mean() if ext == ".jpg" else err.max()) <= tol + 1e-6


def test_png_value_decodes_through_the_srgb_curve(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "g.png"), np.full((2, 2, 3), 128, np.uint8))
    back, _ = read_image(tmp_path / "g.png")
    assert back[0, 0, 0] == pytest.approx(float(srgb_to_linear(np.float32(128 / 255))), abs=1e-6)


def test_still_alpha_is_straight_on_disk_and_premultiplied_in_memory(tmp_path):
    px = np.zeros((2, 2, 4), np.float32)
    px[..., :3] = 0.2 * 0.5  # premultiplied colour 0.2 at alpha 0.5
    px[..., 3] = 0.5
    p = write_image(tmp_path / "a.png", px, bit_depth=16)
    import OpenImageIO as oiio

    cfg = oiio.ImageSpec()
    cfg.attribute("oiio:UnassociatedAlpha", 1)
    raw = oiio.ImageInput.open(p, cfg).read_image(oiio.FLOAT)
    from facegraph.core.colour import linear_to_srgb

    assert raw[0, 0, 0] == pytest.approx(float(linear_to_srgb(np.float32(0.2))), abs=1e-4)  # straight colour
    back, _ = read_image(p)
    assert back[0, 0, 0] == pytest.approx(0.1, abs=1e-4) and back[0, 0, 3] == pytest.approx(0.5, abs=1e-4)


# ------------------------------------------------------------------------------------------- bad input
def test_missing_path_names_file_and_frame(tmp_path):
    with pytest.raises(ImageIOError, match=r"file not found \[file=.*nope.exr, frame=12\]"):
        read_image(tmp_path / "nope.exr", frame=12)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ImageIOError, match="file not found"):
        read_image(tmp_path)


def test_truncated_exr(tmp_path):
    p = write_image(tmp_path / "t.exr", _half_exact((64, 64, 3)), compression="none")
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    with pytest.raises(ImageIOError, match=r"t\.exr.*frame=7") as exc:
        read_image(p, frame=7)
    assert "cannot" in str(exc.value)


def test_garbage_file(tmp_path):
    p = tmp_path / "g.exr"
    p.write_bytes(b"this is not an image")
    with pytest.raises(ImageIOError, match="cannot open"):
        read_image(p)


def test_wrong_channels(tmp_path):
    write_image(tmp_path / "uv.exr", _half_exact((4, 4, 2)), channels=("U", "V"))
    with pytest.raises(ImageIOError, match=r"no R/G/B channels \(found \['U', 'V'\]\)"):
        read_image(tmp_path / "uv.exr")


def test_zero_sized_image_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(ImageIOError, match="cannot write an image of shape"):
        write_image(tmp_path / "z.exr", np.zeros((0, 10, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_nonfinite_pixels(tmp_path):
    px = _half_exact((8, 8, 3))
    px[1, 2, 0], px[3, 3, 1] = np.nan, np.inf
    with pytest.raises(ImageIOError, match=r"2 NaN/Inf values in the image to write \[file=.*frame=5\]"):
        write_image(tmp_path / "n.exr", px, frame=5)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    write_image(tmp_path / "n.exr", px, nonfinite="zero")
    # a file that already holds NaN (made by another tool): reading names it
    import OpenImageIO as oiio
    out = oiio.ImageOutput.create(str(tmp_path / "raw.exr"))
    out.open(str(tmp_path / "raw.exr"), oiio.ImageSpec(8, 8, 3, oiio.FLOAT))
    out.write_image(px)
    out.close()
    with pytest.raises(ImageIOError, match=r"2 NaN/Inf values \[file=.*raw.exr, frame=9\]"):
        read_image(tmp_path / "raw.exr", frame=9)
    fixed, _ = read_image(tmp_path / "raw.exr", nonfinite="zero")
    assert np.isfinite(fixed).all() and fixed[1, 2, 0] == 0


def test_existing_file_is_not_overwritten(tmp_path):
    p = write_image(tmp_path / "e.exr", _half_exact((4, 4, 3)))
    before = open(p, "rb").read()
    with pytest.raises(ImageIOError, match="file exists"):
        write_image(p, _half_exact((4, 4, 3)))
    assert open(p, "rb").read() == before
    write_image(p, _half_exact((4, 4, 3)), overwrite=True)
    assert [f for f in os.listdir(tmp_path) if "tmp" in f] == []


def test_unsupported_output(tmp_path):
    with pytest.raises(ImageIOError, match="unsupported output format"):
        write_image(tmp_path / "x.webm", _half_exact((4, 4, 3)))
