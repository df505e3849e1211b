"""facegraph: a face pipeline for compositors, as ComfyUI nodes (and a headless runner).

This file is what ComfyUI loads from ``custom_nodes/<folder>/``. It re-exports the host registration and
nothing else. The mappings are resolved on first access (PEP 562), so ``import facegraph.core`` stays light
and host-free; ComfyUI's loader reads them with ``hasattr``/``getattr`` right after import.
"""

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

#: the frontend extension (web/facegraph_text.js: a node's ui.text shown on the node), relative to this folder
WEB_DIRECTORY = "./web"


def __getattr__(name):
    if name in __all__:
        from .plugin import comfyui

        return getattr(comfyui, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
