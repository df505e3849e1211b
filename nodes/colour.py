"""Colour-space nodes: the explicit conversion between ComfyUI core's sRGB-encoded IMAGEs and facegraph's
scene-linear ones. Thin: all work is in core.colour.convert_colourspace."""
from __future__ import annotations

from ..core.colour import BUILTIN_COLOURSPACES, DEFAULT_OCIO_CONFIG, convert_colourspace
from ..core.errors import InputError
from .types import CATEGORY, IMAGE, STRING, widget

#: the node's colour-space choices: the built-ins plus "ocio" (then the ocio_source / ocio_target name is used)
COLOURSPACE_CHOICES: tuple[str, ...] = BUILTIN_COLOURSPACES + ("ocio",)


class ImageColourSpace:
    DESCRIPTION = (
        "Convert an IMAGE between colour spaces: linear (scene-linear Rec.709, facegraph's working space), "
        "srgb (sRGB-encoded), rec709 (BT.709 OETF) or any OCIO colour space, both directions. "
        "facegraph works in scene-linear; ComfyUI's core Load Image gives sRGB-encoded values: convert "
        "sRGB -> linear after it, and linear -> sRGB before core nodes that expect display images (Preview "
        "Image, Save Image, most image-generation nodes). facegraph's own loaders already give linear; for a "
        "preview of linear frames use Preview: View Transform. Nothing is clamped (the curves are extended past "
        "[0, 1] as odd functions). The built-in curves run on the IMAGE's device; OCIO conversions run through "
        "numpy on the CPU (the result goes back to the IMAGE's device). Only RGB is converted; a 4th channel "
        "passes through unchanged.")
    CATEGORY = f"{CATEGORY}/io"
    FUNCTION = "convert"
    RETURN_TYPES = (IMAGE,)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the same pixels in the target colour space, float32 [B,H,W,C], unclamped",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": widget(IMAGE, "frames to convert"),
                "source": widget(COLOURSPACE_CHOICES, "colour space the frames are in (core Load Image: srgb; "
                                 "facegraph loaders: linear; ocio: the ocio_source colour space)", default="srgb"),
                "target": widget(COLOURSPACE_CHOICES, "colour space to convert to (facegraph nodes: linear; "
                                 "core display nodes: srgb; ocio: the ocio_target colour space)", default="linear"),
            },
            "optional": {
                "ocio_config": widget(STRING, "OCIO config file or built-in URI, for ocio source/target",
                                      default=DEFAULT_OCIO_CONFIG),
                "ocio_source": widget(STRING, "OCIO colour space of the frames when source = ocio (e.g. ACEScg)",
                                      default=""),
                "ocio_target": widget(STRING, "OCIO colour space to convert to when target = ocio "
                                      "(e.g. ACEScg)", default=""),
            },
        }

    def convert(self, image, source="srgb", target="linear", ocio_config=DEFAULT_OCIO_CONFIG, ocio_source="",
                ocio_target=""):
        import torch

        src = _resolve(source, ocio_source, "source", "ocio_source")
        dst = _resolve(target, ocio_target, "target", "ocio_target")
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
            raise InputError(f"image must be an IMAGE [B,H,W,3|4] tensor, got "
                             f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
        rgb = image[..., :3]
        uses_ocio = source == "ocio" or target == "ocio"
        if uses_ocio and rgb.device.type != "cpu":  # OCIO is CPU-only: move explicitly, and back
            out = convert_colourspace(rgb.cpu(), src, dst, ocio_config=ocio_config).to(image.device)
        else:
            out = convert_colourspace(rgb, src, dst, ocio_config=ocio_config)
        if image.shape[-1] == 4:
            out = torch.cat([out, image[..., 3:]], dim=-1)
        return (out.contiguous(),)


def _resolve(choice: str, name: str, arg: str, name_arg: str) -> str:
    if choice not in COLOURSPACE_CHOICES:
        raise InputError(f"{arg} must be one of {COLOURSPACE_CHOICES}, got {choice!r}")
    if choice != "ocio":
        return choice
    name = (name or "").strip()
    if not name:
        raise InputError(f"{arg} = ocio needs {name_arg}: an OCIO colour space name of ocio_config",
                         hint="e.g. ACEScg or 'Linear Rec.709 (sRGB)' in ocio://studio-config-latest")
    if name in BUILTIN_COLOURSPACES:
        raise InputError(f"{name_arg} = {name!r} is a built-in choice, not an OCIO colour space",
                         hint=f"set {arg} = {name} instead")
    return name


NODES = {
    "FacegraphImageColourSpace": (ImageColourSpace, "Image Colour Space (facegraph)"),
}
