"""ComfyUI workflow formats: the editor's UI format (``nodes`` + ``links``, widget values by position) and
the API format (``{id: {class_type, inputs}}``). A template saved from the editor (or in example_workflows/)
runs headless after :func:`ui_to_api`; :func:`api_to_ui` lays out an API graph for the editor.

Widget values follow the order of the node's widget inputs in INPUT_TYPES (required, then optional): inputs
whose type is a combo list or INT / FLOAT / STRING / BOOLEAN. The editor keeps a widget's value even when
an input link replaces it; the link wins.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..core.errors import GraphError

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


def is_widget(decl: tuple) -> bool:
    return isinstance(decl[0], list) or decl[0] in WIDGET_TYPES


def widget_names(cls: type) -> list[str]:
    spec = cls.INPUT_TYPES()
    return [n for sec in ("required", "optional") for n, d in spec.get(sec, {}).items() if is_widget(d)]


def ui_to_api(workflow: Mapping[str, Any], classes: Mapping[str, type]) -> dict:
    """Convert an editor (UI-format) workflow to an API graph; muted nodes are dropped."""
    links = {int(l[0]): l for l in workflow.get("links", [])}
    api: dict[str, dict] = {}
    for node in workflow.get("nodes", []):
        nid = str(node["id"])
        if node.get("mode", 0) == 2:  # muted
            continue
        if node.get("mode", 0) == 4:
            raise GraphError("bypassed nodes are not supported headless; remove or un-bypass it", node=nid)
        ctype = node.get("type")
        cls = classes.get(ctype)
        if cls is None:
            raise GraphError(f"unknown node class {ctype!r}", node=nid)
        values = node.get("widgets_values", [])
        names = widget_names(cls)
        if isinstance(values, dict):
            inputs = {k: v for k, v in values.items() if k in names}
        else:
            inputs = dict(zip(names, values))
        for inp in node.get("inputs", []) or []:
            link = inp.get("link")
            if link is None:
                continue
            if int(link) not in links:
                raise GraphError(f"input {inp.get('name')!r} refers to missing link {link}", node=nid)
            _, src, slot = links[int(link)][:3]
            inputs[inp["name"]] = [str(src), int(slot)]
        api[nid] = {"class_type": ctype, "inputs": inputs}
    return api


def api_to_ui(graph: Mapping[str, dict], classes: Mapping[str, type], *, columns: int = 4,
              parameters: Mapping[str, Any] | None = None, title: str = "") -> dict:
    """Lay an API graph out as an editor workflow (a simple grid) that :func:`ui_to_api` maps back."""
    nodes, links = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    ids = sorted(graph, key=lambda k: int(k) if str(k).isdigit() else k)
    for nid in ids:
        for name, v in graph[nid]["inputs"].items():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int):
                lid = len(links) + 1
                src_cls = classes[graph[str(v[0])]["class_type"]]
                links.append([lid, int(v[0]), v[1], int(nid), None, src_cls.RETURN_TYPES[v[1]]])
                out_links.setdefault((str(v[0]), v[1]), []).append(lid)
    for order, nid in enumerate(ids):
        node = graph[nid]
        cls = classes[node["class_type"]]
        spec = cls.INPUT_TYPES()
        decls = {**spec.get("required", {}), **spec.get("optional", {})}
        inputs, widgets = [], []
        for name, decl in decls.items():
            v = node["inputs"].get(name)
            linked = isinstance(v, list) and len(v) == 2 and isinstance(v[1], int)
            if is_widget(decl):
                default = decl[1].get("default") if len(decl) > 1 else None
                widgets.append(default if linked or name not in node["inputs"] else v)
            if linked:
                lid = next(l[0] for l in links if l[3] == int(nid) and l[4] is None)
                for l in links:
                    if l[0] == lid:
                        l[4] = len(inputs)
                inputs.append({"name": name, "type": decl[0] if isinstance(decl[0], str) else "COMBO",
                               "link": lid})
        outputs = [{"name": n, "type": t, "links": out_links.get((nid, i), []), "slot_index": i}
                   for i, (n, t) in enumerate(zip(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES), cls.RETURN_TYPES))]
        nodes.append({"id": int(nid), "type": node["class_type"],
                      "pos": [40 + 380 * (order % columns), 60 + 420 * (order // columns)], "size": [340, 300],
                      "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets})
    extra: dict[str, Any] = {}
    if parameters:
        extra["facegraph"] = {"parameters": dict(parameters)}
    if title:
        extra["title"] = title
    return {"last_node_id": max(int(n) for n in ids), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": extra, "version": 0.4}
