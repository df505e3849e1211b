import inspect

import numpy as np
import pytest
import torch

from facegraph.core.colour import linear_to_srgb, rec709_to_linear, srgb_to_linear
from facegraph.core.errors import InputError
from facegraph.core.io.images import read_image, write_image
from facegraph.core.types import FrameFaces
from facegraph.nodes.analysis import DrawLandmarks
from facegraph.nodes.colour import NODES, ImageColourSpace
from facegraph.nodes.io import LoadImage, LoadImageSequence, ViewTransform
from facegraph.plugin.runner import Runner


def _core_load_image_like(seed=0, shape=(1, 24, 32, 3)):
    """What ComfyUI core's LoadImage gives: an 8-bit sRGB file's code values / 255 (mean ~110.7 / 255)."""
    rng = np.random.default_rng(seed)
    codes = np.clip(rng.normal(110.7, 45.0, shape), 0, 255).round()
    return torch.from_numpy((codes / 255.0).astype(np.float32))


def test_srgb_to_linear_after_core_load_image(device):
    img = _core_load_image_like().to(device)
    (lin,) = ImageColourSpace().convert(img, "srgb", "linear")
    assert lin.device == img.device and lin.shape == img.shape and lin.dtype == torch.float32
    assert np.allclose(lin.cpu().numpy(), srgb_to_linear(img.cpu().numpy()), atol=1e-7)
    (back,) = ImageColourSpace().convert(lin, "linear", "srgb")
    assert np.abs(back.cpu().numpy() - img.cpu().numpy()).max() <= 1e-6
    assert np.array_equal(img.cpu().numpy(), _core_load_image_like().numpy())  # input untouched


def _draw(images, faces):
    """Draw Landmarks' preview IMAGE, whether the node returns a tuple or a {"ui", "result"} dict."""
    kw = {"preview_count": 0} if "preview_count" in inspect.signature(DrawLandmarks.draw).parameters else {}
    out = DrawLandmarks().draw(images, faces, **kw)
    return (out["result"] if isinstance(out, dict) else out)[0]


def test_washed_out_preview_reproduced_and_fixed():
    img = _core_load_image_like()
    mean = float(img.mean()) * 255
    faces = [FrameFaces(frame=0, size=(32, 24))]
    # the bug: core LoadImage -> Draw Landmarks treats sRGB values as linear and encodes them again
    washed = _draw(img, faces)
    assert float(washed.mean()) * 255 > mean + 40
    # the fix: Image Colour Space (srgb -> linear) in between
    (lin,) = ImageColourSpace().convert(img, "srgb", "linear")
    drawn = _draw(lin, faces)
    assert abs(float(drawn.mean()) * 255 - mean) <= 0.5
    (view,) = ViewTransform().apply(lin, "srgb", 0.0)
    assert abs(float(view.mean()) * 255 - mean) <= 0.5


def test_alpha_channel_passes_and_rec709():
    rgba = torch.rand(2, 5, 6, 4)
    (out,) = ImageColourSpace().convert(rgba, "rec709", "linear")
    assert out.shape == rgba.shape and torch.equal(out[..., 3], rgba[..., 3])
    assert np.allclose(out[..., :3].numpy(), rec709_to_linear(rgba[..., :3].numpy()), atol=1e-6)


def test_ocio_source_and_target():
    img = torch.rand(1, 8, 8, 3)
    node = ImageColourSpace()
    (cg,) = node.convert(img, "linear", "ocio", ocio_target="ACEScg")
    assert float((cg - img).abs().max()) > 0.01
    (back,) = node.convert(cg, "ocio", "srgb", ocio_source="ACEScg")
    assert np.abs(back.numpy() - linear_to_srgb(img.numpy())).max() <= 1e-5
    with pytest.raises(InputError, match="ocio_target"):
        node.convert(img, "linear", "ocio")
    with pytest.raises(InputError, match="built-in"):
        node.convert(img, "ocio", "linear", ocio_source="srgb")
    with pytest.raises(InputError, match="unknown OCIO colour space"):
        node.convert(img, "ocio", "linear", ocio_source="Nope")


def test_node_through_the_headless_runner(tmp_path):
    path = tmp_path / "s.exr"
    px = np.random.default_rng(4).random((6, 8, 3)).astype(np.float32)
    write_image(path, px, pixel_type="float")
    classes = {"FacegraphLoadImage": LoadImage, **{k: v[0] for k, v in NODES.items()}}
    graph = {"1": {"class_type": "FacegraphLoadImage", "inputs": {"path": str(path)}},
             "2": {"class_type": "FacegraphImageColourSpace",
                   "inputs": {"image": ["1", 0], "source": "linear", "target": "srgb"}}}
    run = Runner(classes).run(graph)
    (out,) = run.outputs["2"]
    assert np.allclose(out[0].numpy(), linear_to_srgb(px), atol=1e-6)


# --------------------------------------------------------------------------- loaders' colourspace input
@pytest.fixture
def stored():
    """File values (what a file holds), on 16-bit codes so they survive a 16-bit TIFF exactly."""
    rng = np.random.default_rng(5)
    return (rng.integers(0, 65536, (4, 6, 3)) / 65535.0).astype(np.float32)


def _expected(stored, choice):
    return {"linear": stored, "srgb": srgb_to_linear(stored), "rec709": rec709_to_linear(stored)}[choice]


@pytest.mark.parametrize("choice", ["auto", "linear", "srgb", "rec709"])
def test_load_image_colourspace_tiff16_and_exr(tmp_path, stored, choice):
    tif = write_image(tmp_path / "s.tif", stored, bit_depth=16, encoded=True)  # values written as they are
    exr = write_image(tmp_path / "s.exr", stored, pixel_type="float")
    assert np.array_equal(read_image(exr)[0], stored)
    (t,), (e,) = LoadImage().load(tif, colourspace=choice)[:1], LoadImage().load(exr, colourspace=choice)[:1]
    assert np.allclose(t[0].numpy(), _expected(stored, "srgb" if choice == "auto" else choice), atol=2e-6)
    assert np.allclose(e[0].numpy(), _expected(stored, "linear" if choice == "auto" else choice), atol=2e-6)


@pytest.mark.parametrize("choice", ["auto", "linear", "srgb", "rec709"])
def test_load_sequence_colourspace_with_alpha_and_fills(tmp_path, stored, choice):
    alpha = np.full((4, 6, 1), 0.5, np.float32)
    for f in (1, 2):
        # on disk: straight colour = the stored values, alpha 0.5 (encoded: written as they are)
        write_image(tmp_path / f"q.{f:04d}.png", np.concatenate([stored, alpha], -1), bit_depth=16,
                    encoded=True)
    images, a, seq = LoadImageSequence().load(str(tmp_path / "q.####.png"), frames="1-3", missing="black")
    assert tuple(images.shape) == (3, 4, 6, 3)
    images, a, seq = LoadImageSequence().load(str(tmp_path / "q.####.png"), frames="1-3", missing="black",
                                              colourspace=choice)
    want = _expected(stored, "srgb" if choice == "auto" else choice) * 0.5  # decoded straight, premultiplied
    assert np.allclose(images[:2].numpy(), want, atol=2e-5)
    assert float(images[2].abs().max()) == 0.0 and np.allclose(a[:2].numpy(), 0.5, atol=1e-4)
    assert seq.encoding == ("srgb" if choice == "auto" else choice)


def test_loader_rejects_unknown_colourspace(tmp_path, stored):
    exr = write_image(tmp_path / "s.exr", stored, pixel_type="float")
    with pytest.raises(InputError, match="colourspace"):
        LoadImage().load(exr, colourspace="ACEScg")
    with pytest.raises(InputError, match="colourspace"):
        LoadImageSequence().load(exr, colourspace="gamma22")
