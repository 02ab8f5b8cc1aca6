"""``key=value`` overrides and how spec layers merge (defaults < file < ``cpu:`` section < command line).

Mappings merge key by key, with two exceptions that make switching datasets from the command line work: a mapping
given whole as an override (``data_params={...}``, ``train_args={...}``, ``cpu={...}``) replaces what the spec had,
while a dotted override (``data_params.n_train=50``, ``cpu.epochs=5``) merges into it; and when ``data`` is overridden
with another dataset, the ``data_params`` of the spec's dataset do not follow it.
"""

from __future__ import annotations

import ast
import copy
import difflib
from typing import Any

from ...errors import NeckConfigError
from .keys import KEYS


def parse_value(text: str) -> Any:
    """Parse an override value like ultralytics does: a Python literal if it is one, else the string itself."""
    s = text.strip()
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {"none": None, "null": None, "true": True, "false": False}.get(s.lower(), s)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["epochs=3", "speed.repeats=200"]`` -> ``{"epochs": 3, "speed.repeats": 200}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NeckConfigError(f"command line: '{item}' is not key=value (see yolo-necks ablate --help)")
        out[key] = parse_value(value)
    return out


def nest(overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn dotted keys (``speed.repeats``) into nested dicts; route ultralytics training keys into train_args."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] not in KEYS:
            if len(parts) == 1 and parts[0] in ultralytics_train_keys():
                parts = ["train_args", parts[0]]
            else:
                raise NeckConfigError(f"{source}: override '{key}': unknown key{suggest(parts[0], KEYS)}")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise NeckConfigError(f"{source}: override '{key}' conflicts with another override")
        node[parts[-1]] = value
    return nested


def merge(base: dict, top: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "arms":
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_layer(base: dict, layer: dict, replace: set[str] | frozenset = frozenset()) -> dict:
    """Apply one layer of spec keys: like :func:`_merge`, except that keys in ``replace`` (mappings given whole on the
    command line) replace, and that a layer naming another dataset drops the previous dataset's ``data_params``."""
    out = copy.deepcopy(base)
    if "data" in layer and layer["data"] != base.get("data"):
        out["data_params"] = {}  # parameters of the spec's dataset do not follow a switch to another dataset
    for k, v in layer.items():
        if k in replace:
            out[k] = copy.deepcopy(v)
        else:
            out = merge(out, {k: v})
    return out


def suggest(key: str, choices) -> str:
    close = difflib.get_close_matches(str(key), list(choices), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def ultralytics_train_keys() -> set[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT)


def arm_selection(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """An ``arms`` override given as names (``arms=sppf,focal`` or a list of strings) selects arms of the spec."""
    value = overrides.get("arms")
    if isinstance(value, str):
        overrides.pop("arms")
        return overrides, [s.strip(" '\"") for s in value.strip("[]() ").split(",") if s.strip(" '\"")]
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, str) for s in value):
        overrides.pop("arms")
        return overrides, list(value)
    return overrides, None
