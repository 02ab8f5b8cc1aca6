"""Sweep specs: the YAML that describes an ablation, its defaults, ``key=value`` overrides and validation.

A spec is a small YAML mapping (see ``ablations/default.yaml``). :func:`load_spec` merges, in order of priority,

1. the built-in per-key defaults (:data:`KEYS`),
2. the spec file,
3. its ``cpu:`` section, only when the sweep runs on a CPU (the reduced default lives there),
4. the command-line / keyword overrides,

checks every key and value, and returns a :class:`Spec`. Mappings merge key by key, with two exceptions that make
switching datasets from the command line work: a mapping given whole as an override (``data_params={...}``,
``train_args={...}``, ``cpu={...}``) replaces what the spec had, while a dotted override (``data_params.n_train=50``,
``cpu.epochs=5``) merges into it; and when ``data`` is overridden with another dataset, the ``data_params`` of the
spec's dataset (in the file and in its ``cpu:`` section) do not follow it. Every problem is a one-line
:class:`~yolo_necks.errors.NeckConfigError` naming the spec file and the key or arm, raised before anything trains.
Arms are checked further (their models are built once) by :func:`yolo_necks.ablation.prepare.variants.build_arms`.
"""


from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ...errors import NeckConfigError
from .devices import device_pool
from .keys import BUILTIN_SOURCE, DEFAULT_SPEC, KEYS
from .overrides import apply_layer, arm_selection, merge, nest, suggest
from .checks import validate
from .types import Arm, Execution, SeedPolicy, Spec, SpeedSettings

__all__ = ["Arm", "Execution", "SeedPolicy", "Spec", "SpeedSettings", "load_spec", "read_spec_file"]


# ------------------------------------------------------------------------------------------------------ loading
def default_spec_path() -> Path | None:
    """``ablations/default.yaml`` of the source checkout, if this is one (else the built-in copy is used)."""
    path = Path(__file__).resolve().parents[3] / "ablations" / "default.yaml"
    return path if path.is_file() else None


def read_spec_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise NeckConfigError(f"{path}: spec file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())
        raise NeckConfigError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise NeckConfigError(f"{path}: a sweep spec must be a YAML mapping, got {type(data).__name__}")
    return data


def load_spec(spec: str | Path | dict | None = None, overrides: dict[str, Any] | None = None) -> Spec:
    """Load, merge and validate a sweep spec.

    Args:
        spec: a spec file path, an already-loaded mapping, or None for ``ablations/default.yaml``.
        overrides: ``{key: value}`` with optional dotted keys (``speed.repeats``); ultralytics training keys that are
            not spec keys (``lr0``) go to ``train_args``.
    """
    spec_dir = Path.cwd()
    if spec is None:
        path = default_spec_path()
        source = str(path) if path else BUILTIN_SOURCE
        raw = read_spec_file(path) if path else copy.deepcopy(DEFAULT_SPEC)
        stem = "default"
        if path:
            spec_dir = path.parent
    elif isinstance(spec, dict):
        source, raw, stem = "<spec dict>", copy.deepcopy(spec), "sweep"
    else:
        path = Path(spec)
        source, raw, stem = str(path), read_spec_file(path), path.stem
        spec_dir = path.resolve().parent

    for key in raw:
        if key not in KEYS:
            raise NeckConfigError(f"{source}: unknown key '{key}'{suggest(key, KEYS)}")
    over, select = arm_selection(dict(overrides or {}))
    whole = {k for k, v in over.items() if "." not in k and isinstance(v, dict)}  # these replace, dotted ones merge
    over = nest(over, source)
    merged = merge({k: v for k, (v, _) in KEYS.items()}, raw)
    cpu_section = merged.get("cpu")
    if "cpu" in over:
        given = over.pop("cpu")
        cpu_section = given if ("cpu" in whole or not isinstance(given, dict) or not isinstance(cpu_section, dict)) \
            else merge(cpu_section, given)
    if cpu_section is not None and not isinstance(cpu_section, dict):
        raise NeckConfigError(f"{source}: key 'cpu': must be a mapping of spec keys (or null), got {cpu_section!r}")
    for key in cpu_section or {}:  # checked on every machine, not only where it applies
        if key not in KEYS or key in ("cpu", "device", "devices"):
            raise NeckConfigError(f"{source}: key 'cpu.{key}': not allowed in the cpu section{suggest(key, KEYS)}")
    device, devices = device_pool(source, over.get("device", merged.get("device")),
                                   over.get("devices", merged.get("devices")))
    if cpu_section and device == "cpu":
        merged = apply_layer(merged, cpu_section)
    merged = apply_layer(merged, over, whole)
    merged["cpu"] = cpu_section
    if merged.get("name") is None:
        merged["name"] = stem
    merged["device"] = device
    if merged.get("devices") is not None:
        merged["devices"] = list(devices)
    return validate(merged, source, spec_dir, select, devices)
