"""Node classes in ComfyUI's V1 style. They import nothing from a host, so the same classes run inside
ComfyUI and in facegraph's headless runner. Each module exports ``NODES = {node_id: (class, display name)}``;
node ids and input names are public API (tests/plugin/api_snapshot.json guards them)."""
from __future__ import annotations

from . import analysis, blend, colour, face_model, io, stream, synthesis, system, temporal

_MODULES = (io, colour, analysis, temporal, face_model, blend, synthesis, stream, system)

NODE_CLASSES: dict[str, type] = {}
DISPLAY_NAMES: dict[str, str] = {}
for _m in _MODULES:
    for _id, (_cls, _name) in _m.NODES.items():
        if _id in NODE_CLASSES:
            raise RuntimeError(f"duplicate node id {_id}")
        NODE_CLASSES[_id] = _cls
        DISPLAY_NAMES[_id] = _name
