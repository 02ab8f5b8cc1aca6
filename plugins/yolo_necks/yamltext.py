"""Model dicts as YAML text in ultralytics' layout: top-level keys, then one flow-style row per layer.

Used by the model editor (``yolo-necks edit``) and by the ablation harness for its arm YAMLs.
"""

from __future__ import annotations

import math

import yaml

SECTIONS = ("backbone", "head")


def plain(value):
    """Tuples -> lists, recursively (YAML and JSON see the same thing)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def flow(value) -> str:
    """One value as single-line flow-style YAML (``[-1, 1, Conv, [64, 3, 2]]``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False)
    return text.removesuffix("\n...\n").strip()  # scalars end with a document-end marker


_flow = flow  # the name the ablation harness has used


def render_yaml(d: dict, header: list[str], row_comments: dict[int, str] | None = None) -> str:
    """Model dict -> YAML text in ultralytics' layout (one flow-style row per layer), with a comment header.

    ``row_comments`` maps a layer index (counted over backbone + head, as the parser counts) to a comment written at
    the end of that row.
    """
    lines = [f"# {h}" for h in header]
    comments = row_comments or {}
    for key, value in d.items():
        if key in SECTIONS:
            lines.append(f"{key}:")
            first = len(d.get("backbone") or []) if key == "head" else 0
            for i, row in enumerate(value, first):
                note = comments.get(i)
                lines.append(f"  - {flow(row)}" + (f" # {note}" if note else ""))
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {flow(k)}: {flow(v)}" for k, v in value.items()]
        else:
            lines.append(f"{flow(key)}: {flow(value)}")
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != d:  # pragma: no cover - guards the renderer
        raise RuntimeError("model YAML text does not round-trip")
    return text
