"""The public node API (ids, inputs and their types, outputs) as a JSON-able dict.

Regenerate the checked-in snapshot after an intended change:
    .venv/bin/python tests/plugin/snapshot.py > tests/plugin/api_snapshot.json
"""
from __future__ import annotations

import json


def api(mappings) -> dict:
    out = {}
    for node_id, cls in sorted(mappings.items()):
        spec = cls.INPUT_TYPES()
        inputs = {}
        for section in ("required", "optional"):
            for name, decl in spec.get(section, {}).items():
                kind = decl[0]
                inputs[name] = {"section": section,
                                "type": "COMBO" if isinstance(kind, list) else kind}
                if isinstance(kind, list):
                    inputs[name]["choices"] = list(kind)
        out[node_id] = {"inputs": inputs, "outputs": list(cls.RETURN_TYPES),
                        "output_names": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))}
    return out


if __name__ == "__main__":
    from facegraph.nodes import NODE_CLASSES

    print(json.dumps(api(NODE_CLASSES), indent=1, sort_keys=True))
