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
Arms are checked further (their models are built once) by :func:`yolo_necks.ablation.variants.build_arms`.
"""

from __future__ import annotations

import ast
import copy
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import NeckConfigError

BUILTIN_SOURCE = "<built-in default spec>"
ARM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
ARM_KEYS = ("name", "block", "args", "baseline", "yaml", "scale")
SPEED_KEYS = {
    "warmup": "untimed forward passes before timing (per measurement)",
    "repeats": "timed batch-1 forward passes for latency (>= 100)",
    "throughput_batch": "batch size of the throughput measurement",
    "throughput_repeats": "timed forward passes at throughput_batch",
    "dtype": "auto (fp16 on CUDA, fp32 on CPU), fp16 or fp32",
    "device": "device to time on (default: the training device)",
}
# keys the harness sets itself for every run; train_args may not change them
CONTROLLED_TRAIN_KEYS = (
    "model", "data", "epochs", "imgsz", "batch", "seed", "deterministic", "device", "workers",
    "project", "name", "exist_ok", "resume", "mode", "task", "pretrained",
)  # fmt: skip

DEFAULT_ARMS = [
    {"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
    {"name": "spp", "block": "SPP", "args": [[5, 9, 13]]},
    {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]},
    {"name": "dyca", "block": "DyCAConv", "args": [3, 1, 32, "avg"]},
    {"name": "sk", "block": "SKConv", "args": [2, 32, 16, 32]},
    {"name": "pyramid", "block": "PyramidPool", "args": [[1, 2, 4], "avg"]},
]

# key -> (default, help). The single source of truth for validation, the built-in default and `ablate --help`.
KEYS: dict[str, tuple[Any, str]] = {
    "name": (None, "sweep name; outputs go to PROJECT/NAME/ (default: the spec file's stem)"),
    "project": ("ablations/runs", "parent folder of sweep folders (relative to the working directory)"),
    "model": ("yolov8.yaml", "base model YAML with one SPPF layer (stock name like yolo11.yaml, or a path)"),
    "scale": ("n", "model scale letter n/s/m/l/x (the base YAML's scales)"),
    "replace": ("SPPF", "module of the base model replaced by each arm's block (must occur once)"),
    "arms": (DEFAULT_ARMS, "list of arms {name, block, args, baseline} or {name, yaml: PATH}; exactly one "
             "baseline. Override: arms=sppf,focal runs only those arms"),
    "data": ("digits", "built-in dataset name (digits, neon-trees) or an ultralytics data YAML path"),
    "data_params": ({}, "parameters of a built-in dataset (e.g. n_train, n_val, imgsz); see yolo-necks data"),
    "epochs": (30, "training epochs of every run"),
    "imgsz": (640, "train/val/speed image size"),
    "batch": (32, "training and validation batch size"),
    "seeds": ([0, 1, 2], "training seeds (list); an int N means seeds 0..N-1; runs are paired by seed. Adaptive: "
              "{min: 3, max: 20} or auto runs seed rounds until every arm's interval on 'metric' is within "
              "'target' (precision, never significance) or max seeds are done"),
    "device": (None, "training device: cpu, 0, 0,1 ... (default: CUDA device 0 if available, else cpu)"),
    "workers": (8, "dataloader workers"),
    "train_args": ({}, "extra ultralytics training arguments passed through untouched (lr0, mosaic, amp, ...)"),
    "speed": ({"warmup": 20, "repeats": 200, "throughput_batch": 32, "throughput_repeats": 20, "dtype": "auto",
               "device": None}, "speed measurement settings (the speed.* keys below)"),
    "reduced": (None, "label of a reduced sweep (set by the cpu: section); shown in every output"),
    "pretrained": (None, "checkpoint every arm starts from: null (from scratch), a .pt path, or an ultralytics weights "
                   "name like yolov8n.pt (downloaded by ultralytics when online); its content hash is part of every "
                   "run's configuration. freeze=N (ultralytics' key) passes through to train_args"),
    "metric": ("map50_95", "primary metric: adaptive seeds stop on its precision, the verdict speaks of it"),
    "target": (0.01, "half-width of the 95% interval of a delta that the sweep aims for on the primary metric "
               "(precision planning; adaptive seeds stop there)"),
    "executor": ("local", "local (worker processes on this machine) or ray (a Ray cluster: pip install "
                 "'yolo-necks[ray]')"),
    "parallel": ("auto", "local executor: runs at once; auto = what the machine holds (CPU: cores / threads_per_run, "
                 "GPU: devices x runs_per_device); 1 = one run at a time in this process, as before"),
    "devices": (None, "device pool the runs are spread over: [0, 1, 2, 3], cpu, or groups like ['0,1', '2,3'] "
                "(one DDP run per group); default: the device key"),
    "runs_per_device": (1, "runs packed on one GPU at once (local executor)"),
    "threads_per_run": ("auto", "CPU threads of each run (set before torch starts): auto = cores / runs at once "
                        "(at least 1), or N"),
    "ray_address": ("local", "executor=ray: local (start a Ray instance here), auto (join the cluster this machine "
                    "belongs to) or ray://HOST:10001"),
    "cpus_per_run": (None, "executor=ray: CPUs each run asks for (default: threads_per_run, else 1)"),
    "gpus_per_run": (None, "executor=ray: GPUs each run asks for, fractional packs runs (0.25 = 4 per GPU); default "
                     "1 on a GPU device, 0 on cpu"),
    "max_retries": (1, "executor=ray: retries of a run whose worker process or node died, then it is recorded as "
                    "failed"),
    "cpu": (None, "overrides applied when the sweep runs on a CPU (the reduced default); cpu=None disables them"),
}  # fmt: skip

# The content of ablations/default.yaml (a test keeps the two identical); used when that file is not installed.
DEFAULT_SPEC: dict[str, Any] = {
    "name": "default",
    "project": "ablations/runs",
    "model": "yolov8.yaml",
    "scale": "n",
    "replace": "SPPF",
    "arms": copy.deepcopy(DEFAULT_ARMS),
    "data": "digits",
    "data_params": {"n_train": 800, "n_val": 200, "imgsz": 320},
    "epochs": 30,
    "imgsz": 320,
    "batch": 32,
    "seeds": [0, 1, 2],
    "device": None,
    "workers": 8,
    "train_args": {"plots": False, "fliplr": 0.0},
    "speed": {"warmup": 20, "repeats": 200, "throughput_batch": 32, "throughput_repeats": 20, "dtype": "auto",
              "device": None},
    "reduced": None,
    "pretrained": None,
    "metric": "map50_95",
    "target": 0.01,
    "executor": "local",
    "parallel": "auto",
    "devices": None,
    "runs_per_device": 1,
    "threads_per_run": "auto",
    "cpu": {
        "name": "default-cpu",
        "reduced": "cpu",
        "data_params": {"n_train": 192, "n_val": 48, "imgsz": 128, "min_size": 10, "max_frac": 0.45, "min_objects": 4,
                        "max_objects": 12, "clutter": 0.25},
        "epochs": 18,
        "imgsz": 128,
        "batch": 8,
        "workers": 0,
        "train_args": {"nbs": 8, "warmup_epochs": 1, "val": False, "optimizer": "AdamW", "lr0": 0.002, "lrf": 0.05,
                       "mosaic": 0.0, "scale": 0.2, "hsv_s": 0.3, "hsv_v": 0.2},
        "speed": {"warmup": 10, "repeats": 100, "throughput_batch": 8, "throughput_repeats": 10},
    },
}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One arm of a sweep: either a block replacing the base model's SPPF, or an explicit model YAML."""

    name: str
    block: str | None = None
    args: tuple = ()
    baseline: bool = False
    yaml: str | None = None
    scale: str | None = None

    @property
    def label(self) -> str:
        """The block column of the results: the block name, or the YAML file name for YAML arms."""
        return self.block or Path(self.yaml or "").name


@dataclass(frozen=True)
class SpeedSettings:
    warmup: int
    repeats: int
    throughput_batch: int
    throughput_repeats: int
    dtype: str
    device: str | None


@dataclass(frozen=True)
class SeedPolicy:
    """Adaptive seeds: rounds of one more seed for every arm until precision ``target`` or ``max`` seeds."""

    min: int
    max: int
    target: float


@dataclass(frozen=True)
class Execution:
    """How the runs are executed (never part of a run's configuration hash: results do not depend on it)."""

    executor: str = "local"
    parallel: int | str = "auto"
    devices: tuple[str, ...] = ()
    runs_per_device: int = 1
    threads_per_run: int | str = "auto"
    ray_address: str = "local"
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    max_retries: int = 1


@dataclass
class Spec:
    """A validated sweep spec (see :data:`KEYS` for the meaning of each field)."""

    source: str
    name: str
    project: str
    model: str
    scale: str | None
    replace: str
    arms: list[Arm]
    data: str
    data_params: dict
    epochs: int
    imgsz: int
    batch: int
    seeds: list[int]
    device: str
    workers: int
    train_args: dict
    speed: SpeedSettings
    reduced: str | None
    effective: dict = field(default_factory=dict)  # the merged spec, written to the sweep folder
    pretrained: str | None = None
    metric: str = "map50_95"
    target: float = 0.01
    adaptive: SeedPolicy | None = None
    execution: Execution = field(default_factory=Execution)

    @property
    def sweep_dir(self) -> Path:
        return Path(self.project) / self.name

    @property
    def baseline(self) -> Arm | None:
        return next((a for a in self.arms if a.baseline), None)

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"


# --------------------------------------------------------------------------------------------------- overrides
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


def _nest(overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn dotted keys (``speed.repeats``) into nested dicts; route ultralytics training keys into train_args."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] not in KEYS:
            if len(parts) == 1 and parts[0] in _ultralytics_train_keys():
                parts = ["train_args", parts[0]]
            else:
                raise NeckConfigError(f"{source}: override '{key}': unknown key{_suggest(parts[0], KEYS)}")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise NeckConfigError(f"{source}: override '{key}' conflicts with another override")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, top: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "arms":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _apply(base: dict, layer: dict, replace: set[str] | frozenset = frozenset()) -> dict:
    """Apply one layer of spec keys: like :func:`_merge`, except that keys in ``replace`` (mappings given whole on the
    command line) replace, and that a layer naming another dataset drops the previous dataset's ``data_params``."""
    out = copy.deepcopy(base)
    if "data" in layer and layer["data"] != base.get("data"):
        out["data_params"] = {}  # parameters of the spec's dataset do not follow a switch to another dataset
    for k, v in layer.items():
        if k in replace:
            out[k] = copy.deepcopy(v)
        else:
            out = _merge(out, {k: v})
    return out


def _suggest(key: str, choices) -> str:
    close = difflib.get_close_matches(str(key), list(choices), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _ultralytics_train_keys() -> set[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT)


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


def resolve_device(device: Any) -> str:
    """Normalise the device key: None/'' -> '0' when CUDA is available else 'cpu'; ints -> strings."""
    if device is None or (isinstance(device, str) and not device.strip()):
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if isinstance(device, (list, tuple)):
        return ",".join(str(d) for d in device)
    text = str(device).strip()
    return "cpu" if text.lower() == "cpu" else text


DEVICE_FORMS = "cpu, mps, a CUDA index like 0, cuda:1, or indices like 0,1 (DDP)"
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda|cuda:\d+|\d+(,\d+)*)$")


def check_device_string(source: str, key: str, device: str) -> str:
    """The format of a device string (whether the device exists is checked by :func:`check_devices_exist`)."""
    text = str(device).strip().lower().replace(" ", "")
    if not _DEVICE_RE.match(text):
        raise NeckConfigError(f"{source}: key '{key}': '{device}' is not a device; use {DEVICE_FORMS}")
    return text


def device_indices(device: str) -> list[int]:
    """CUDA indices named by a device string: '0,1' -> [0, 1], 'cuda:1' -> [1], 'cuda' -> [0], cpu/mps -> []."""
    text = str(device).strip().lower()
    if text in ("cpu", "mps", ""):
        return []
    if text == "cuda":
        return [0]
    if text.startswith("cuda:"):
        return [int(text[5:])]
    return [int(t) for t in text.split(",") if t.strip()]


def check_devices_exist(source: str, key: str, device: str) -> None:
    """Refuse before training a device this machine does not have (a GPU index without CUDA, an index too high)."""
    import torch

    idx = device_indices(device)
    if str(device).strip().lower() == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise NeckConfigError(f"{source}: key '{key}': 'mps' is not available on this machine; use device=cpu")
        return
    if not idx:
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise NeckConfigError(f"{source}: key '{key}': '{device}' asks for a CUDA GPU but this machine has none "
                              "(torch.cuda.is_available() is False); use device=cpu")  # fmt: skip
    bad = [i for i in idx if i >= n]
    if bad:
        raise NeckConfigError(f"{source}: key '{key}': '{device}' names GPU {bad[0]} but this machine has {n} "
                              f"(valid: {', '.join(map(str, range(n)))})")  # fmt: skip


def _device_pool(source: str, device: Any, devices: Any) -> tuple[str, tuple[str, ...]]:
    """(nominal device, device pool). The nominal device is the one in every run's configuration hash (the first of
    the pool: runs spread over GPUs 0-3 hash alike); each pool entry trains one run at a time (or runs_per_device)."""
    if devices is None:
        dev = resolve_device(device)
        if dev != "cpu":
            dev = check_device_string(source, "device", dev)
        return dev, (dev,)
    items = [devices] if isinstance(devices, (str, int)) and not isinstance(devices, bool) else devices
    if not isinstance(items, (list, tuple)) or not items or any(isinstance(d, bool) for d in items):
        raise NeckConfigError(f"{source}: key 'devices': must be cpu, a GPU index or a list like [0, 1], "
                              f"got {devices!r}")  # fmt: skip
    pool = tuple(check_device_string(source, "devices", str(d)) for d in items)
    if len(set(pool)) != len(pool):
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} names a device twice (use runs_per_device)")
    kinds = {"cpu" if d == "cpu" else "gpu" for d in pool}
    if len(kinds) > 1:
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} mixes cpu and GPUs; results would mix them too")
    used = [i for d in pool for i in device_indices(d)]
    if len(set(used)) != len(used):
        raise NeckConfigError(f"{source}: key 'devices': {devices!r} puts one GPU in two groups")
    nominal = pool[0]
    if device is not None and not (isinstance(device, str) and not device.strip()):
        given = resolve_device(device)
        if (given == "cpu") != (nominal == "cpu"):
            raise NeckConfigError(f"{source}: key 'devices': {devices!r} does not match device '{given}'")
    return nominal, pool


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
            raise NeckConfigError(f"{source}: unknown key '{key}'{_suggest(key, KEYS)}")
    over, select = _arm_selection(dict(overrides or {}))
    whole = {k for k, v in over.items() if "." not in k and isinstance(v, dict)}  # these replace, dotted ones merge
    over = _nest(over, source)
    merged = _merge({k: v for k, (v, _) in KEYS.items()}, raw)
    cpu_section = merged.get("cpu")
    if "cpu" in over:
        given = over.pop("cpu")
        cpu_section = given if ("cpu" in whole or not isinstance(given, dict) or not isinstance(cpu_section, dict)) \
            else _merge(cpu_section, given)  # fmt: skip
    if cpu_section is not None and not isinstance(cpu_section, dict):
        raise NeckConfigError(f"{source}: key 'cpu': must be a mapping of spec keys (or null), got {cpu_section!r}")
    for key in cpu_section or {}:  # checked on every machine, not only where it applies
        if key not in KEYS or key in ("cpu", "device", "devices"):
            raise NeckConfigError(f"{source}: key 'cpu.{key}': not allowed in the cpu section{_suggest(key, KEYS)}")
    device, devices = _device_pool(source, over.get("device", merged.get("device")),
                                   over.get("devices", merged.get("devices")))  # fmt: skip
    if cpu_section and device == "cpu":
        merged = _apply(merged, cpu_section)
    merged = _apply(merged, over, whole)
    merged["cpu"] = cpu_section
    if merged.get("name") is None:
        merged["name"] = stem
    merged["device"] = device
    if merged.get("devices") is not None:
        merged["devices"] = list(devices)
    return _validate(merged, source, spec_dir, select, devices)


def _arm_selection(overrides: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """An ``arms`` override given as names (``arms=sppf,focal`` or a list of strings) selects arms of the spec."""
    value = overrides.get("arms")
    if isinstance(value, str):
        overrides.pop("arms")
        return overrides, [s.strip(" '\"") for s in value.strip("[]() ").split(",") if s.strip(" '\"")]
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, str) for s in value):
        overrides.pop("arms")
        return overrides, list(value)
    return overrides, None


# --------------------------------------------------------------------------------------------------- validation
def _int(source: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NeckConfigError(f"{source}: key '{key}': must be an integer >= {minimum}, got {value!r}")
    return value


def _str(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NeckConfigError(f"{source}: key '{key}': must be a non-empty string, got {value!r}")
    return value.strip()


def _dict(source: str, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NeckConfigError(f"{source}: key '{key}': must be a mapping, got {value!r}")
    return dict(value)


def _find_file(path: str, spec_dir: Path) -> Path | None:
    """A path relative to the spec file's folder, else to the working directory."""
    p = Path(path).expanduser()
    for cand in ([p] if p.is_absolute() else [spec_dir / p, Path.cwd() / p]):
        if cand.is_file():
            return cand.resolve()
    return None


MAX_SEEDS = 1000


def _seeds(source: str, value: Any) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        n = _int(source, "seeds", value)
        if n > MAX_SEEDS:
            raise NeckConfigError(f"{source}: key 'seeds': {n} seeds is more than {MAX_SEEDS}; is that a seed value? "
                                  f"use a list like [{n}]")  # fmt: skip
        value = list(range(n))
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not value:
        raise NeckConfigError(f"{source}: key 'seeds': must be a non-empty list of integers, got {value!r}")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise NeckConfigError(f"{source}: key 'seeds': seeds must be integers >= 0, got {s!r}")
    if len(set(value)) != len(value):
        raise NeckConfigError(f"{source}: key 'seeds': duplicate seeds in {value!r}")
    return list(value)


def _arms(source: str, value: Any, spec_dir: Path, select: list[str] | None) -> list[Arm]:
    if not isinstance(value, list) or not value:
        raise NeckConfigError(f"{source}: key 'arms': must be a non-empty list of arms, got {value!r}")
    arms: list[Arm] = []
    for i, item in enumerate(value):
        where = f"{source}: arms[{i}]"
        if isinstance(item, str):  # shorthand: just a block name
            item = {"block": item}
        if not isinstance(item, dict):
            raise NeckConfigError(f"{where}: an arm must be a mapping like {{name, block, args}}, got {item!r}")
        for k in item:
            if k not in ARM_KEYS:
                raise NeckConfigError(f"{where}: unknown arm key '{k}'{_suggest(k, ARM_KEYS)}")
        block, arm_yaml = item.get("block"), item.get("yaml")
        if (block is None) == (arm_yaml is None):
            raise NeckConfigError(f"{where}: give exactly one of 'block' (replaces the SPPF) or 'yaml' (a model YAML)")
        name = item.get("name")
        if name is None:
            name = (str(block).lower() if block else Path(str(arm_yaml)).stem)
        if not isinstance(name, str) or not ARM_NAME_RE.match(name):
            raise NeckConfigError(f"{where}: arm name must match {ARM_NAME_RE.pattern}, got {name!r}")
        where = f"{source}: arm '{name}'"
        if any(a.name == name for a in arms):
            raise NeckConfigError(f"{where}: duplicate arm name")
        args = item.get("args", [])
        if args is None:
            args = []
        if arm_yaml is not None and "args" in item:
            raise NeckConfigError(f"{where}: 'args' only applies to block arms, not yaml arms")
        if not isinstance(args, (list, tuple)):
            raise NeckConfigError(f"{where}: 'args' must be a list (the block's arguments after c2), got {args!r}")
        baseline = item.get("baseline", False)
        if not isinstance(baseline, bool):
            raise NeckConfigError(f"{where}: 'baseline' must be true or false, got {baseline!r}")
        scale = item.get("scale")
        if scale is not None and scale not in tuple("nslmx"):
            raise NeckConfigError(f"{where}: 'scale' must be one of n, s, m, l, x, got {scale!r}")
        if block is not None and (not isinstance(block, str) or not block.strip()):
            raise NeckConfigError(f"{where}: 'block' must be a module name, got {block!r}")
        resolved = None
        if arm_yaml is not None:
            if not isinstance(arm_yaml, str):
                raise NeckConfigError(f"{where}: 'yaml' must be a path, got {arm_yaml!r}")
            found = _find_file(arm_yaml, spec_dir)
            if found is None:
                raise NeckConfigError(f"{where}: model YAML '{arm_yaml}' not found")
            resolved = str(found)
        arms.append(Arm(name, block, tuple(args), baseline, resolved, scale))
    baselines = [a.name for a in arms if a.baseline]
    if len(baselines) != 1:
        what = "none" if not baselines else ", ".join(baselines)
        raise NeckConfigError(f"{source}: key 'arms': exactly one arm needs 'baseline: true' (found {what})")
    if select:
        unknown = [s for s in select if s not in {a.name for a in arms}]
        if unknown:
            known = ", ".join(a.name for a in arms)
            raise NeckConfigError(f"{source}: override 'arms': unknown arm(s) {', '.join(unknown)} (known: {known})")
        arms = [a for a in arms if a.name in select]
    return arms


def _train_args(source: str, value: Any) -> dict:
    args = _dict(source, "train_args", value)
    known = _ultralytics_train_keys()
    for k in args:
        if k in CONTROLLED_TRAIN_KEYS:
            hint = f"set '{k}' at the top level of the spec" if k in KEYS else "the harness sets it for every run"
            raise NeckConfigError(f"{source}: key 'train_args.{k}': not allowed here ({hint})")
        if k not in known:
            raise NeckConfigError(f"{source}: key 'train_args.{k}': not an ultralytics training argument"
                                  f"{_suggest(k, known)}")
    if args:
        from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

        try:
            check_cfg({**DEFAULT_CFG_DICT, **copy.deepcopy(args)})
        except (TypeError, ValueError, SyntaxError) as e:
            first = " ".join(str(e).split())
            raise NeckConfigError(f"{source}: key 'train_args': {first}") from None
    return args


def _speed(source: str, value: Any) -> SpeedSettings:
    d = _dict(source, "speed", value)
    for k in d:
        if k not in SPEED_KEYS:
            raise NeckConfigError(f"{source}: key 'speed.{k}': unknown key{_suggest(k, SPEED_KEYS)}")
    d = {**KEYS["speed"][0], **d}
    repeats = _int(source, "speed.repeats", d["repeats"], 100)
    dtype = d["dtype"]
    if dtype not in ("auto", "fp16", "fp32"):
        raise NeckConfigError(f"{source}: key 'speed.dtype': must be auto, fp16 or fp32, got {dtype!r}")
    dev = d["device"]
    return SpeedSettings(
        warmup=_int(source, "speed.warmup", d["warmup"], 0),
        repeats=repeats,
        throughput_batch=_int(source, "speed.throughput_batch", d["throughput_batch"]),
        throughput_repeats=_int(source, "speed.throughput_repeats", d["throughput_repeats"]),
        dtype=dtype,
        device=None if dev is None else _speed_device(source, dev),
    )


def _speed_device(source: str, dev: Any) -> str:
    text = resolve_device(dev)
    return text if text == "cpu" else check_device_string(source, "speed.device", text)


def _number(source: str, key: str, value: Any, minimum: float, allow_none: bool = False, strict: bool = False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise NeckConfigError(f"{source}: key '{key}': must be a number {bound}, got {value!r}")
    return float(value)


def _auto_or_int(source: str, key: str, value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NeckConfigError(f"{source}: key '{key}': must be auto or an integer >= 1, got {value!r}")
    return value


def _execution(source: str, d: dict, devices: tuple[str, ...]) -> Execution:
    executor = d["executor"]
    if executor not in ("local", "ray"):
        raise NeckConfigError(f"{source}: key 'executor': must be local or ray, got {executor!r}"
                              f"{_suggest(executor, ('local', 'ray'))}")  # fmt: skip
    return Execution(
        executor=executor,
        parallel=_auto_or_int(source, "parallel", d["parallel"]),
        devices=devices,
        runs_per_device=_int(source, "runs_per_device", d["runs_per_device"]),
        threads_per_run=_auto_or_int(source, "threads_per_run", d["threads_per_run"]),
        ray_address=_str(source, "ray_address", d["ray_address"]),
        cpus_per_run=_number(source, "cpus_per_run", d["cpus_per_run"], 0.0, allow_none=True, strict=True),
        gpus_per_run=_number(source, "gpus_per_run", d["gpus_per_run"], 0.0, allow_none=True),
        max_retries=_int(source, "max_retries", d["max_retries"], 0),
    )


def _seed_policy(source: str, value: Any, target: float) -> tuple[list[int], SeedPolicy | None]:
    """(the first seeds to run, the adaptive policy or None) from the ``seeds`` key."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        value = {}
    if not isinstance(value, dict):
        return _seeds(source, value), None
    for k in value:
        if k not in ("min", "max", "target"):
            raise NeckConfigError(f"{source}: key 'seeds.{k}': unknown key (adaptive seeds take min, max, target)"
                                  f"{_suggest(k, ('min', 'max', 'target'))}")  # fmt: skip
    lo = _int(source, "seeds.min", value.get("min", 3), 2)
    hi = _int(source, "seeds.max", value.get("max", max(20, lo)), lo)
    if hi > MAX_SEEDS:
        raise NeckConfigError(f"{source}: key 'seeds.max': at most {MAX_SEEDS}, got {hi}")
    tgt = _number(source, "seeds.target", value.get("target", target), 0.0, strict=True)
    return list(range(lo)), SeedPolicy(lo, hi, tgt)


def _pretrained(source: str, value: Any, spec_dir: Path) -> str | None:
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if not isinstance(value, (str, Path)):
        raise NeckConfigError(f"{source}: key 'pretrained': must be a checkpoint path or weights name like "
                              f"yolov8n.pt, got {value!r}")  # fmt: skip
    text = str(value).strip()
    if Path(text).suffix != ".pt":
        raise NeckConfigError(f"{source}: key 'pretrained': must be a .pt checkpoint (a path, or an ultralytics "
                              f"weights name like yolov8n.pt), got {text!r}")  # fmt: skip
    found = _find_file(text, spec_dir)
    return str(found) if found is not None else text


def _validate(d: dict, source: str, spec_dir: Path, select: list[str] | None = None,
              devices: tuple[str, ...] = ()) -> Spec:  # fmt: skip
    name = d["name"]
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        name = str(name)
    name = _str(source, "name", name)
    if not ARM_NAME_RE.match(name):
        raise NeckConfigError(f"{source}: key 'name': must match {ARM_NAME_RE.pattern} (a folder name), got {name!r}")
    model = _str(source, "model", d["model"])
    if Path(model).suffix not in (".yaml", ".yml"):
        raise NeckConfigError(f"{source}: key 'model': must be a model YAML (e.g. yolov8.yaml), got {model!r}")
    found = _find_file(model, spec_dir)
    if found is not None:
        model = str(found)
    scale = d["scale"]
    if scale is not None and scale not in tuple("nslmx"):
        raise NeckConfigError(f"{source}: key 'scale': must be one of n, s, m, l, x, got {scale!r}")
    data = d["data"]
    if isinstance(data, Path):
        data = str(data)
    data = _str(source, "data", data)
    if Path(data).suffix in (".yaml", ".yml"):
        found = _find_file(data, spec_dir)
        if found is not None:
            data = str(found)
    arms_value = d["arms"]
    reduced = d["reduced"]
    if reduced is not None and not isinstance(reduced, str):
        reduced = str(reduced)
    device = d["device"]
    from .stats import METRICS

    metric = d["metric"]
    if not isinstance(metric, str) or metric not in METRICS:
        raise NeckConfigError(f"{source}: key 'metric': unknown metric {metric!r}{_suggest(metric, METRICS)} "
                              f"(choose from {', '.join(METRICS)})")  # fmt: skip
    target = _number(source, "target", d["target"], 0.0, strict=True)
    seeds, adaptive = _seed_policy(source, d["seeds"], target)
    return Spec(
        source=source,
        name=name,
        project=_str(source, "project", str(d["project"]) if d["project"] is not None else None),
        model=model,
        scale=scale,
        replace=_str(source, "replace", d["replace"]),
        arms=_arms(source, arms_value, spec_dir, select),
        data=data,
        data_params=_dict(source, "data_params", d["data_params"]),
        epochs=_int(source, "epochs", d["epochs"]),
        imgsz=_int(source, "imgsz", d["imgsz"], 32),
        batch=_int(source, "batch", d["batch"]),
        seeds=seeds,
        device=device,
        workers=_int(source, "workers", d["workers"], 0),
        train_args=_train_args(source, d["train_args"]),
        speed=_speed(source, d["speed"]),
        reduced=reduced or None,
        effective={k: v for k, v in d.items() if k != "cpu"},
        pretrained=_pretrained(source, d["pretrained"], spec_dir),
        metric=metric,
        target=target,
        adaptive=adaptive,
        execution=_execution(source, d, devices or (device,)),
    )
