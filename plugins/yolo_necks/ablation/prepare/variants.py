"""Arms as concrete model YAMLs: the base model with a block in place of its SPPF, or inserted at named positions.

For a block arm without ``insert``, the base model's ``SPPF`` row ``[from, n, SPPF, [c2, k]]`` becomes
``[from, n, Block, [c2, *args]]`` (same input, same repeats, same unscaled output channels, then the arm's own
arguments), so any base YAML with an SPPF works (yolov8, yolo11, ...). A block arm with ``insert: [p3, p4, p5]`` is
the base model with the block spliced in after each position by :func:`yolo_necks.editing.edit_with_map` (exact
rewiring of every ``from``; the arm keeps the index map, so a pretrained checkpoint can be renumbered to it). An arm
may instead name a model YAML (``yaml: path``), used as it is.

Every arm YAML is written with the scale letter in its file name (``yolov8n-focal.yaml``): ultralytics takes a
model's scale from the file name (``guess_model_scale``) and ignores a ``scale:`` key. Each arm's model is built
once on the CPU here, so a bad block or bad block arguments fail before anything trains.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import NeckConfigError, one_line
from ...yamltext import plain, render_yaml
from ..spec.load import Arm, Spec

_TOKEN = re.compile(r"yolo(e-)?v?\d+")
_SECTIONS = ("backbone", "head")
_DROP_KEYS = ("yaml_file", "channels", "ch")


@dataclass
class ArmModel:
    """An arm's concrete model: its YAML dict (what is trained) and the file name it is saved under."""

    arm: Arm
    model_dict: dict
    file_name: str
    scale: str | None
    layers: tuple[int, ...] = ()  # indices (in this arm's model) of the replaced or inserted layers; () for yaml arms
    placement: str = ""  # 'replace sppf', 'insert p3,p4,p5', 'base' (the baseline left as the base model), 'yaml'
    index_map: dict[int, int] | None = None  # base layer -> this arm's layer, for arms with inserted layers
    text: str = ""
    stride: int = 32  # the model's largest stride (set when the model is built)

    @property
    def canonical(self) -> str:
        """Canonical JSON of the model dict: the part of a run's configuration hash that describes the model."""
        return json.dumps(self.model_dict, sort_keys=True, default=str)


def register_blocks() -> dict[str, type]:
    """Register our blocks with ultralytics' parser; return them ({} if the blocks cannot be imported)."""
    try:
        import yolo_necks

        return dict(yolo_necks.register())
    except ImportError:
        return {}


def _known_modules() -> dict[str, type]:
    import torch.nn as nn
    import ultralytics.nn.tasks as tasks

    names = {n: v for n, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)}
    try:
        from yolo_necks.catalog import registered_blocks

        names.update(registered_blocks())
    except ImportError:
        pass
    return names


def load_base(spec: Spec) -> dict:
    """The base model dict, through ultralytics' own loader (finds stock YAMLs such as ``yolo11.yaml`` by name)."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        d = yaml_model_load(spec.model)
    except (FileNotFoundError, OSError) as e:
        raise NeckConfigError(f"{spec.source}: key 'model': model YAML '{spec.model}' not found ({e})") from None
    except Exception as e:
        raise NeckConfigError(f"{spec.source}: key 'model': cannot load '{spec.model}': {one_line(e, None)}") from None
    if not isinstance(d, dict) or not all(isinstance(d.get(s), list) for s in _SECTIONS):
        raise NeckConfigError(f"{spec.source}: key 'model': '{spec.model}' has no backbone/head lists")
    return d


def _rows(d: dict) -> list[tuple[str, int]]:
    return [(s, i) for s in _SECTIONS for i in range(len(d.get(s) or []))]


def find_layer(d: dict, module: str) -> tuple[str, int, int]:
    """(section, index in section, global layer index) of the only layer built from ``module``."""
    hits = []
    for g, (section, i) in enumerate(_rows(d)):
        row = d[section][i]
        if isinstance(row, (list, tuple)) and len(row) == 4 and row[2] == module:
            hits.append((section, i, g))
    if len(hits) != 1:
        raise LookupError(f"has {len(hits)} '{module}' layers, needs exactly one")
    return hits[0]


def scaled_prefix(stem: str, scale: str | None) -> str:
    """``yolov8`` + ``n`` -> ``yolov8n``; ``yolo11n-p2`` + ``s`` -> ``yolo11s``. Names without a YOLO version token get
    one (``mynet`` -> ``mynet-yolo0n``) because ultralytics reads the scale from the file name."""
    m = _TOKEN.search(stem)
    if m is None:
        return f"{stem}-yolo0{scale}" if scale else stem
    return f"{m.group(0)}{scale or ''}"


def arm_file_name(stem: str, scale: str | None, arm_name: str) -> str:
    return f"{scaled_prefix(stem, scale)}-{arm_name}.yaml"


def _clean(d: dict) -> dict:
    out = {k: copy.deepcopy(v) for k, v in d.items() if k not in _DROP_KEYS}
    for s in _SECTIONS:
        out[s] = [list(r) if isinstance(r, tuple) else r for r in out.get(s) or []]
    return out


@dataclass
class ArmDict:
    """What :func:`make_arm_dict` returns: the arm's model dict and where its block went."""

    model: dict
    scale: str | None
    layers: tuple[int, ...]
    placement: str
    index_map: dict[int, int] | None = None
    what: str = ""  # for the YAML's header


def _replaced(base: dict, arm: Arm, spec: Spec) -> ArmDict:
    d = copy.deepcopy(base)
    try:
        section, i, layer = find_layer(d, spec.replace)
    except LookupError as e:
        raise NeckConfigError(f"{spec.source}: key 'model': '{spec.model}' {e} (key 'replace')") from None
    f, n, _, args = d[section][i]
    if not args:
        raise NeckConfigError(f"{spec.source}: key 'model': layer {layer} ({spec.replace}) has no output channels")
    d[section][i] = [f, n, arm.block, [args[0], *plain(list(arm.args))]]
    unchanged = plain(d[section][i]) == plain(base[section][i])
    placement = "base" if unchanged else f"replace {spec.replace.lower()}"
    what = f"{Path(spec.model).name} with layer {layer} {spec.replace} -> {arm.block} {list(plain(arm.args))}"
    return ArmDict(d, None, (layer,), placement, None, what)


def _inserted(base: dict, arm: Arm, spec: Spec) -> ArmDict:
    from ...editing import edit_with_map

    where = ",".join(arm.insert)
    try:
        result = edit_with_map(base, insert=f"{arm.block}@{where}", args={arm.block: plain(list(arm.args))})
    except NeckConfigError as e:
        raise NeckConfigError(f"{spec.source}: arm '{arm.name}': insert {arm.block}@{where}: {e}") from None
    layers = tuple(result.inserted)
    what = (f"{Path(spec.model).name} with {arm.block} {list(plain(arm.args))} inserted after {where} "
            f"(layers {', '.join(map(str, layers))} of this model; every reader of those positions reads the block)")
    return ArmDict(result.model, None, layers, f"insert {where}", dict(result.index_map), what)


def make_arm_dict(base: dict, arm: Arm, spec: Spec, nc: int | None) -> ArmDict:
    """The model dict of one arm (with its scale, edited layers and placement)."""
    if arm.yaml:
        from ultralytics.nn.tasks import guess_model_scale, yaml_model_load

        try:
            d = yaml_model_load(arm.yaml)
        except Exception as e:
            raise NeckConfigError(f"{spec.source}: arm '{arm.name}': cannot load '{arm.yaml}': {one_line(e, None)}") from None
        out = ArmDict(d, arm.scale or guess_model_scale(arm.yaml) or spec.scale, (), "yaml", None,
                      f"model YAML {arm.yaml}")
    else:
        out = _inserted(base, arm, spec) if arm.insert else _replaced(base, arm, spec)
        out.scale = arm.scale or spec.scale
    d = _clean(out.model)
    if nc is not None:
        d["nc"] = int(nc)
    if d.get("scales"):
        if out.scale not in d["scales"]:
            scales = ", ".join(d["scales"])
            raise NeckConfigError(f"{spec.source}: arm '{arm.name}': scale {out.scale!r} not in the model's scales "
                                  f"({scales})")
        d["scale"] = out.scale
    else:
        out.scale = None
        d.pop("scale", None)
    head = {k: d[k] for k in ("nc", "scale") if k in d}  # nc and scale first, as in ultralytics' YAMLs
    out.model = plain({**head, **{k: v for k, v in d.items() if k not in head}})
    return out


def check_block(arm: Arm, spec: Spec) -> None:
    if arm.block is None:
        return
    known = _known_modules()
    if arm.block not in known and not arm.block.startswith("nn."):
        close = difflib.get_close_matches(arm.block, list(known), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        try:
            from yolo_necks.catalog import registered_blocks

            ours = ", ".join(sorted(registered_blocks()))
        except ImportError:
            ours = "none importable"
        raise NeckConfigError(
            f"{spec.source}: arm '{arm.name}': unknown block '{arm.block}'{hint} (yolo-necks blocks: {ours}; "
            "ultralytics modules like SPPF, SPP)"
        )


def build_check(model: ArmModel, spec: Spec) -> None:
    """Build the arm's model once on the CPU and run it forward at the sweep's image size (rounded up to the model's
    stride, as training will), turning any failure into a one-line error naming the arm; record the stride."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    d = copy.deepcopy(model.model_dict)
    d["yaml_file"] = model.file_name
    try:
        with torch.no_grad():
            net = DetectionModel(d, ch=3, nc=d.get("nc"), verbose=False)
    except Exception as e:
        raise NeckConfigError(f"{spec.source}: arm '{model.arm.name}': model does not build: {one_line(e, None)}") from None
    model.stride = max(int(net.stride.max()), 32) if hasattr(net, "stride") else 32
    size = -(-spec.imgsz // model.stride) * model.stride
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
    except Exception as e:
        raise NeckConfigError(f"{spec.source}: arm '{model.arm.name}': forward pass at imgsz {size} fails on the CPU: "
                              f"{one_line(e, None)}") from None
    finally:
        del net


def build_arms(spec: Spec, nc: int | None, check: bool = True) -> list[ArmModel]:
    """Concrete model dicts of every arm of ``spec`` (``nc`` from the dataset), each checked by building it."""
    from ultralytics.nn.tasks import guess_model_scale

    register_blocks()
    base = load_base(spec) if any(a.yaml is None for a in spec.arms) else None
    base_stem = Path(spec.model).stem
    models = []
    for arm in spec.arms:
        check_block(arm, spec)
        made = make_arm_dict(base, arm, spec, nc)
        stem = Path(arm.yaml).stem if arm.yaml else base_stem
        name = arm_file_name(stem, made.scale, arm.name)
        if made.scale and guess_model_scale(name) != made.scale:  # pragma: no cover - guards the naming scheme
            raise RuntimeError(f"arm file name {name} does not carry scale {made.scale}")
        header = [
            f"yolo-necks ablation arm '{arm.name}' of sweep '{spec.name}': {made.what}",
            f"scale {made.scale or '-'} (ultralytics reads it from the file name), nc {made.model.get('nc')}",
        ]
        m = ArmModel(arm, made.model, name, made.scale, made.layers, made.placement, made.index_map)
        m.text = render_yaml(made.model, header)
        if check:
            build_check(m, spec)
        models.append(m)
    scales = {m.scale for m in models}
    if len(scales) > 1:
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"ablate: arms use different scales {sorted(map(str, scales))}; deltas mix block and scale")
    return models
