"""The layer graph of a model YAML as the model itself defines it: loading, output shapes and named positions.

A model is built once per scale on the ``meta`` device (no weight memory, fast at any scale; a real CPU build if an op
has no meta kernel) and run up to its head, recording each layer's output shape. Nothing is read from comments.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import NeckConfigError, one_line
from .yamltext import SECTIONS, plain

DROP_KEYS = ("yaml_file", "ch", "channels")  # added by ultralytics' loader and model classes
IMGSZ = 640  # image size of the shape-recording pass on the meta device (costs nothing there)
CPU_IMGSZ = 256  # and of the real CPU pass it falls back to
SPP_MODULES = ("SPPF", "SPP")


# ---------------------------------------------------------------------------------------------- loading a model
def load_model(model) -> tuple[dict, str]:
    """(model dict, name of the file for messages) of a YAML path, a stock name (``yolov8.yaml``) or a dict."""
    from .validate import check_sections as _check_sections

    if isinstance(model, dict):
        d = copy.deepcopy(model)
        where = str(d.get("yaml_file") or "model YAML")
    elif isinstance(model, (str, Path)):
        from ultralytics.nn.tasks import yaml_model_load

        where = str(model)
        try:
            d = yaml_model_load(model)
        except (FileNotFoundError, OSError) as e:
            raise NeckConfigError(f"{where}: model YAML not found ({one_line(e, 200)})") from None
        except Exception as e:
            raise NeckConfigError(f"{where}: cannot load the model YAML ({one_line(e, 200)})") from None
    else:
        raise NeckConfigError(f"model must be a YAML path, a stock name such as yolov8.yaml, or a dict; got {model!r}")
    _check_sections(d, where)
    return d, where


def clean(d: dict) -> dict:
    """A copy without the keys ultralytics' loader adds (and without an empty ``scale``), rows as lists."""
    out = {k: copy.deepcopy(v) for k, v in d.items() if k not in DROP_KEYS}
    if not out.get("scale"):
        out.pop("scale", None)
    for s in SECTIONS:
        out[s] = [list(r) if isinstance(r, tuple) else r for r in out.get(s) or []]
    return plain(out)


def scale_names(d: dict) -> list:
    """The YAML's scale letters ([None] for a model without ``scales``)."""
    return list(d["scales"]) if isinstance(d.get("scales"), dict) and d["scales"] else [None]


def default_scale(d: dict, where: str, scale=None):
    """``scale`` checked against the YAML's scales; by default the dict's ``scale`` key or else its first scale."""
    names = scale_names(d)
    if names == [None]:
        return None
    scale = scale or d.get("scale") or names[0]
    if scale not in names:
        raise NeckConfigError(f"{where}: scale {scale!r} is not in the model's scales ({', '.join(map(str, names))})")
    return scale


# -------------------------------------------------------------------------------------- the model's own shapes
@dataclass(frozen=True)
class Layers:
    """What one build of a model at one scale tells: output shapes per layer up to the head (None: not one map)."""

    rows: list
    n_backbone: int
    head: int
    shapes: tuple
    image: tuple

    def channels(self, i: int):
        shape = self.image if i < 0 else self.shapes[i]
        return shape[1] if shape else None

    def stride(self, i: int):
        shape = self.image if i < 0 else self.shapes[i]
        return round(self.image[2] / shape[2]) if shape else None


_CACHE: dict[tuple, Layers] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 64


def absolute(f: int, i: int) -> int:
    """Layer ``i``'s ``from`` entry as an absolute index (-1: the input image, for layer 0)."""
    return f if f >= 0 or i == 0 else i + f


def _froms(f, i: int) -> list[int]:
    return [absolute(x, i) for x in (f if isinstance(f, list) else [f]) if isinstance(x, int)]


def head_index(rows: list, where: str) -> int:
    heads = [i for i, r in enumerate(rows) if isinstance(r[0], list)]
    if not heads:
        raise NeckConfigError(f"{where}: no head found (no layer reads a list of layers, as Detect does)")
    return heads[-1]


def _record(layers, head: int, image):
    """Run ``layers`` as ultralytics' ``_predict_once`` does, up to the head; the output shape of each layer."""
    import torch

    y, shapes, x = [], [], image
    for m in list(layers)[:head]:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        y.append(x)
        shapes.append(tuple(x.shape) if isinstance(x, torch.Tensor) and x.dim() == 4 else None)
    return tuple(shapes)


def _build_shapes(d: dict, device: str, imgsz: int, ch: int):
    import torch
    import ultralytics.nn.tasks as tasks

    with torch.random.fork_rng(devices=[]), torch.no_grad(), torch.device(device):
        layers, _ = tasks.parse_model(copy.deepcopy(d), ch, False)  # the parser edits its rows' args in place
        return _record(layers, head_index(d["backbone"] + d["head"], ""), torch.zeros(1, ch, imgsz, imgsz))


def model_layers(d: dict, where: str, scale, unit: bool = False) -> Layers:
    """Build the model at ``scale`` once (meta device, else CPU) and record its shapes; cached by dict and scale.

    ``unit``: width 1 and no channel cap, so the channels recorded are the YAML's unscaled ones.
    """
    from .registry import register
    from .validate import validate_model_dict

    base = clean(d)
    key = (json.dumps(base, sort_keys=True, default=str), scale, unit, d.get("channels"))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    register()
    rows = base["backbone"] + base["head"]
    head = head_index(rows, where)
    dd = {**base, "yaml_file": where}
    if scale is not None:
        dd["scale"] = scale
        if unit:
            dd["scales"] = {scale: [base["scales"][scale][0], 1.0, math.inf]}
    elif unit:
        dd["width_multiple"] = 1.0
    validate_model_dict(copy.deepcopy(dd))
    ch = int(d.get("channels") or 3)
    try:
        shapes, imgsz = _build_shapes(dd, "meta", IMGSZ, ch), IMGSZ
    except Exception:  # an op without a meta kernel: build it for real (small image)
        try:
            shapes, imgsz = _build_shapes(dd, "cpu", CPU_IMGSZ, ch), CPU_IMGSZ
        except NeckConfigError:
            raise
        except Exception as e:
            raise NeckConfigError(f"{where}: the model does not build at scale {scale} ({one_line(e, 200)})") from None
    info = Layers(rows, len(base["backbone"]), head, shapes, (1, ch, imgsz, imgsz))
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = info
    return info


def _pname(stride) -> str | None:
    if not stride or stride & (stride - 1):
        return None
    return f"p{stride.bit_length() - 1}"


def named_positions(info: Layers) -> dict[str, int]:
    """``{name: base layer index}`` of a model's named positions: ``pN`` = the layer the head (the last layer whose
    ``from`` is a list) reads at stride 2**N; ``backbone_pN`` = the last backbone layer at that stride the head section
    reads (absolute or relative ``from``); ``sppf`` = the SPPF/SPP layer if there is exactly one."""
    rows, nb, head = info.rows, info.n_backbone, info.head
    names = {}
    for a in sorted(set(_froms(rows[head][0], head)), key=lambda a: (info.stride(a) or 0, a)):
        name = _pname(info.stride(a)) if 0 <= a < head else None
        if name:
            names[name] = a
    read = sorted({a for i in range(nb, len(rows)) for a in _froms(rows[i][0], i) if 0 <= a < nb})
    for a in sorted(read, key=lambda a: (info.stride(a) or 0, a)):
        name = _pname(info.stride(a))
        if name:
            names[f"backbone_{name}"] = a
    spp = [i for i, r in enumerate(rows[:head]) if r[2] in SPP_MODULES]
    if len(spp) == 1:
        names["sppf"] = spp[0]
    return names
