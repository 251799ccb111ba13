"""Converting between ComfyUI's UI workflow format (what users open) and the API format (/prompt).

Both directions read the widget order from /object_info: a node's widgets_values follow its required,
then optional, inputs that are widgets; a seed widget with control_after_generate and an image input
with image_upload carry one extra value each. The frontend adds control_after_generate to every INT input
named seed or noise_seed, whether or not the node asks for it.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def widget_inputs(info: dict) -> list[tuple[str, list]]:
    inputs = info["input"]
    ordered = list(inputs.get("required", {}).items()) + list(inputs.get("optional", {}).items())
    order = info.get("input_order")
    if order:  # the server's own order, where it says it
        names = order.get("required", []) + order.get("optional", [])
        lookup = dict(ordered)
        ordered = [(n, lookup[n]) for n in names if n in lookup]
    return [(name, spec) for name, spec in ordered if _is_widget(spec)]


SEED_NAMES = ("seed", "noise_seed")


def has_seed_control(name: str, spec) -> bool:
    return bool(_options(spec).get("control_after_generate")) or (spec[0] == "INT" and name in SEED_NAMES)


def _extra_slots(name: str, spec) -> int:
    return int(has_seed_control(name, spec)) + int(bool(_options(spec).get("image_upload")))


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """API prompt from a UI workflow; notes and other frontend-only nodes are left out."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind not in object_info or node.get("mode", 0) in (2, 4):
            continue
        info = object_info[kind]
        values = node.get("widgets_values") or []
        inputs = {}
        if isinstance(values, dict):
            inputs.update({k: v for k, v in values.items() if k in dict(widget_inputs(info))})
        else:
            i = 0
            for name, spec in widget_inputs(info):
                if i < len(values):
                    inputs[name] = values[i]
                i += 1 + _extra_slots(name, spec)
        for slot in node.get("inputs", []):
            link_id = slot.get("link")
            if link_id is None:
                continue
            _, origin, origin_slot, *_ = links[link_id]
            inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return prompt


def build_ui(nodes: list[dict], object_info: dict, title: str = "", note: str = "",
             groups: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> dict:
    """A UI workflow from a short description.

    Each entry: {"id", "type", "pos": [x, y], "widgets": {name: value}, "links": {input: (from_id, slot)},
    "size": [w, h] optional, "title" optional, "models": [{"name", "url", "directory"}] optional}. Widgets not
    given take their object_info default. A note becomes a frontend-only Note node above the graph; groups are
    (title, node ids) boxes drawn around those nodes. The workflow's "models" is the union of the nodes' models.
    """
    ui_nodes, ui_links = [], []
    by_id = {n["id"]: n for n in nodes}
    outgoing: dict[tuple[int, int], list[int]] = {}
    link_id = 0
    pending = []
    for n in nodes:
        for name, (origin, slot) in n.get("links", {}).items():
            link_id += 1
            out_type = object_info[by_id[origin]["type"]]["output"][slot]
            pending.append((link_id, origin, slot, n["id"], name, out_type))
            outgoing.setdefault((origin, slot), []).append(link_id)
    for order, n in enumerate(nodes):
        info = object_info[n["type"]]
        widgets = dict(widget_inputs(info))
        values = []
        for name, spec in widget_inputs(info):
            value = n.get("widgets", {}).get(name, _options(spec).get("default"))
            if value is None and isinstance(spec[0], list):
                value = spec[0][0]
            values.append(value)
            if has_seed_control(name, spec):
                values.append("fixed")
            if _options(spec).get("image_upload"):
                values.append("image")
        inputs = []
        all_inputs = list(info["input"].get("required", {}).items()) + list(info["input"].get("optional", {}).items())
        for name, spec in all_inputs:
            linked = [p for p in pending if p[3] == n["id"] and p[4] == name]
            if name in widgets and not linked:
                continue
            entry = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                     "link": linked[0][0] if linked else None}
            if name in widgets:
                entry["widget"] = {"name": name}
            inputs.append(entry)
        outputs = [{"name": out_name, "type": out_type, "links": outgoing.get((n["id"], slot), []), "slot_index": slot}
                   for slot, (out_name, out_type) in enumerate(zip(info["output_name"], info["output"]))]
        node = {"id": n["id"], "type": n["type"], "pos": n["pos"], "size": n.get("size", [320, 260]), "flags": {},
                "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": n["type"]}, "widgets_values": values}
        if "title" in n:
            node["title"] = n["title"]
        if n.get("models"):
            node["properties"]["models"] = [dict(m) for m in n["models"]]
        ui_nodes.append(node)
    for lid, origin, slot, target, name, out_type in pending:
        target_slot = next(i for i, s in enumerate(next(u for u in ui_nodes if u["id"] == target)["inputs"]) if s["name"] == name)
        ui_links.append([lid, origin, slot, target, target_slot, out_type])
    if note:
        ui_nodes.append(note_node(max(by_id) + 1, note, ui_nodes))
    left, top, _, _ = _box(ui_nodes)
    view = {"scale": 0.8, "offset": [110 - left, 200 - top]}   # the note, top-left, clear of the menus
    workflow = {"last_node_id": max(n["id"] for n in ui_nodes), "last_link_id": link_id, "nodes": ui_nodes,
                "links": ui_links, "groups": [group(i + 1, name, [by_id[m] for m in members])
                                              for i, (name, members) in enumerate(groups)],
                "config": {}, "extra": {"ds": view, "info": {"title": title}}, "version": 0.4}
    models = union_of_models(ui_nodes)
    if models:
        workflow["models"] = models
    return workflow


NODE_TITLE_HEIGHT = 30   # LiteGraph draws a node's title bar above its pos
GROUP_HEADER = 50        # room for a group's own title above its nodes' title bars
GROUP_PADDING = 15


def _box(nodes: list[dict]) -> tuple[float, float, float, float]:
    left = min(n["pos"][0] for n in nodes)
    top = min(n["pos"][1] for n in nodes) - NODE_TITLE_HEIGHT
    right = max(n["pos"][0] + n.get("size", [320, 260])[0] for n in nodes)
    bottom = max(n["pos"][1] + n.get("size", [320, 260])[1] for n in nodes)
    return left, top, right, bottom


def group(group_id: int, title: str, members: list[dict]) -> dict:
    """A LiteGraph group whose box holds its members (spec nodes) with their title bars."""
    left, top, right, bottom = _box(members)
    bounding = [left - GROUP_PADDING, top - GROUP_HEADER, right - left + 2 * GROUP_PADDING,
                bottom - top + GROUP_HEADER + GROUP_PADDING]
    return {"id": group_id, "title": title, "bounding": bounding, "color": "#3f789e", "font_size": 24, "flags": {}}


NOTE_WIDTH, NOTE_CHARS_PER_LINE, NOTE_LINE_HEIGHT = 760, 110, 14


def note_node(node_id: int, text: str, ui_nodes: list[dict]) -> dict:
    """A frontend-only Note (never sent to the server) above the graph's top-left corner."""
    lines = sum(1 + len(line) // NOTE_CHARS_PER_LINE for line in text.splitlines())
    height = 60 + NOTE_LINE_HEIGHT * lines
    left, top, _, _ = _box(ui_nodes)
    pos = [left, top - GROUP_HEADER - 60 - height]
    return {"id": node_id, "type": "Note", "pos": pos, "size": [NOTE_WIDTH, height], "flags": {},
            "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [], "title": "Read me",
            "properties": {"text": ""}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"}


def union_of_models(ui_nodes: list[dict]) -> list[dict]:
    """Every node's properties.models once each, in node order."""
    seen, models = set(), []
    for node in ui_nodes:
        for model in node.get("properties", {}).get("models", []):
            key = (model["name"], model["directory"], model["url"])
            if key not in seen:
                seen.add(key)
                models.append(dict(model))
    return models


def set_widget(node: dict, object_info: dict, name: str, value) -> bool:
    """Set one widget of a UI-format node in place (as a user editing it would); False if it has none so named."""
    i = 0
    for widget, spec in widget_inputs(object_info[node["type"]]):
        if widget == name:
            node["widgets_values"][i] = value
            return True
        i += 1 + _extra_slots(widget, spec)
    return False
