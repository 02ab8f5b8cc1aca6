"""Validation of a merged sweep spec: every key and value checked, one line per problem, before anything trains.

:func:`validate` turns the merged mapping into a :class:`~yolo_necks.ablation.spec.load.Spec`; each problem is a
:class:`~yolo_necks.errors.NeckConfigError` naming the spec file and the key or arm.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

from ...errors import NeckConfigError
from .devices import check_device_string, resolve_device
from .keys import ARM_KEYS, ARM_NAME_RE, CONTROLLED_TRAIN_KEYS, KEYS, SPEED_KEYS
from .overrides import suggest, ultralytics_train_keys
from .types import Arm, Execution, SeedPolicy, Spec, SpeedSettings, Tracking


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
                                  f"use a list like [{n}]")
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
                raise NeckConfigError(f"{where}: unknown arm key '{k}'{suggest(k, ARM_KEYS)}")
        block, arm_yaml = item.get("block"), item.get("yaml")
        if (block is None) == (arm_yaml is None):
            raise NeckConfigError(f"{where}: give exactly one of 'block' (replaces the SPPF, or is inserted at 'insert' "
                                  "positions) or 'yaml' (a model YAML)")
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
        insert = _insert_positions(where, item.get("insert"), arm_yaml is not None)
        arms.append(Arm(name, block, tuple(args), baseline, resolved, scale, insert))
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


def _insert_positions(where: str, value: Any, yaml_arm: bool) -> tuple[str, ...]:
    """An arm's ``insert`` positions: a list (``[p3, p4, p5]``, layer indices allowed) or ``"p3,p4,p5"``; () if none.
    Whether each names a position of the model is checked when the arm's YAML is made (it depends on the model)."""
    if value is None:
        return ()
    if yaml_arm:
        raise NeckConfigError(f"{where}: 'insert' only applies to block arms, not yaml arms")
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, int) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)) or not items:
        raise NeckConfigError(f"{where}: 'insert' must be a list of positions like [p3, p4, p5], got {value!r}")
    out = []
    for x in items:
        text = str(x).strip() if isinstance(x, (str, int)) and not isinstance(x, bool) else ""
        if not text or not re.fullmatch(r"[A-Za-z0-9_]+", text):
            raise NeckConfigError(f"{where}: 'insert' position {x!r} is not a position name (p3, backbone_p5, sppf) "
                                  "or a layer index")
        out.append(text)
    if len(set(out)) != len(out):
        raise NeckConfigError(f"{where}: 'insert' names a position twice: {value!r}")
    return tuple(out)


def _train_args(source: str, value: Any) -> dict:
    args = _dict(source, "train_args", value)
    known = ultralytics_train_keys()
    for k in args:
        if k in CONTROLLED_TRAIN_KEYS:
            hint = f"set '{k}' at the top level of the spec" if k in KEYS else "the harness sets it for every run"
            raise NeckConfigError(f"{source}: key 'train_args.{k}': not allowed here ({hint})")
        if k not in known:
            raise NeckConfigError(f"{source}: key 'train_args.{k}': not an ultralytics training argument"
                                  f"{suggest(k, known)}")
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
            raise NeckConfigError(f"{source}: key 'speed.{k}': unknown key{suggest(k, SPEED_KEYS)}")
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
        formats=_formats(source, d["formats"]),
    )


def _formats(source: str, value: Any) -> tuple[str, ...]:
    """``speed.formats``: known formats whose runtimes are installed (:func:`yolo_necks.deploy.check_formats`),
    torch first and always there (the summary's latency, Δ latency and the Pareto front are torch's)."""
    if isinstance(value, str):  # speed.formats=[torch,onnx] on the command line is not a Python literal
        value = [v.strip(" '\"") for v in value.strip().strip("[]()").split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise NeckConfigError(f"{source}: key 'speed.formats': must be a list of formats such as [torch, onnx, "
                              f"openvino], got {value!r}")
    from ...deploy import check_formats

    try:
        names = check_formats(value) if any(v.strip() for v in value) else ["torch"]
    except NeckConfigError as e:
        raise NeckConfigError(f"{source}: key 'speed.formats': {e}") from None
    return ("torch", *(n for n in names if n != "torch"))


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
                              f"{suggest(executor, ('local', 'ray'))}")
    node = d["timing_node"]
    if node is not None:
        node = _str(source, "timing_node", str(node) if isinstance(node, (int, float)) else node)
        if executor != "ray":
            raise NeckConfigError(f"{source}: key 'timing_node': names a Ray node, so it needs executor=ray (a local "
                                  "sweep times its arms on this machine)")
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
        timing_node=node,
    )


AUTO_PILOT = 5  # the pilot of seeds=auto: more power for fewer seeds than 3 in every calibration scenario


def _seed_policy(source: str, value: Any, target: float) -> tuple[list[int], SeedPolicy | None]:
    """(the first seeds to run, the adaptive policy or None) from the ``seeds`` key."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        value = {}
    if not isinstance(value, dict):
        return _seeds(source, value), None
    for k in value:
        if k not in ("min", "max", "target"):
            raise NeckConfigError(f"{source}: key 'seeds.{k}': unknown key (adaptive seeds take min, max, target)"
                                  f"{suggest(k, ('min', 'max', 'target'))}")
    lo = _int(source, "seeds.min", value.get("min", AUTO_PILOT), 1)
    if lo < 3:
        raise NeckConfigError(f"{source}: key 'seeds.min': adaptive seeds need a pilot of at least 3 seeds (its SD "
                              f"fixes each arm's seed count, Stein's two-stage rule), got {lo}")
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
                              f"yolov8n.pt, got {value!r}")
    text = str(value).strip()
    if Path(text).suffix != ".pt":
        raise NeckConfigError(f"{source}: key 'pretrained': must be a .pt checkpoint (a path, or an ultralytics "
                              f"weights name like yolov8n.pt), got {text!r}")
    found = _find_file(text, spec_dir)
    return str(found) if found is not None else text


def _size_buckets(source: str, value: Any) -> tuple[float, float] | None:
    """``size_buckets``: null (COCO's [32², 96²]) or two increasing positive areas in px²; COCO's own given
    explicitly is the same as null (so that it does not change any run's configuration hash)."""
    from yolo_necks.cocoeval import DEFAULT_BUCKETS, MAX_AREA

    if value is None:
        return None
    numbers = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)
    if not numbers or not 0 < value[0] < value[1] < MAX_AREA:
        raise NeckConfigError(f"{source}: key 'size_buckets': must be two areas [a, b] in px² of the original image "
                              f"with 0 < a < b (small <= a <= medium <= b <= large), or null for COCO's [1024, 9216]; "
                              f"got {value!r}")
    buckets = (float(value[0]), float(value[1]))
    return None if buckets == tuple(DEFAULT_BUCKETS) else buckets


def contrast_pair(item: Any) -> tuple[Any, Any] | None:
    """A contrast as given: ``[A, B]`` or ``"A:B"`` -> (A, B); None when it is neither."""
    if isinstance(item, str) and item.count(":") == 1:
        a, b = item.split(":")
        return a.strip(), b.strip()
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return item[0], item[1]
    return None


def check_contrasts(where: str, value: Any, arms: list[str], baseline: str | None) -> tuple[tuple[str, str], ...]:
    """Contrasts between arms: a list of ``[A, B]`` (or ``"A:B"``) pairs of two different known arms, neither pair
    the baseline comparison of an arm (that one is made anyway) nor listed twice; ``where`` starts each error line
    (``spec.yaml: key 'contrasts'``, ``report: --contrast``)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise NeckConfigError(f"{where}: must be a list of arm pairs like [[dyca-head, dyca-sppf]], got {value!r}")
    out: list[tuple[str, str]] = []
    for item in value:
        pair = contrast_pair(item)
        if pair is None:
            raise NeckConfigError(f"{where}: {item!r} is not a pair of arms [A, B] (or A:B)")
        for name in pair:
            if not isinstance(name, str) or name not in arms:
                raise NeckConfigError(f"{where}: unknown arm {name!r} in {list(pair)}{suggest(name, arms)} "
                                      f"(arms: {', '.join(arms)})")
        a, b = pair
        if a == b:
            raise NeckConfigError(f"{where}: [{a}, {b}] compares an arm with itself")
        if baseline in (a, b):
            raise NeckConfigError(f"{where}: [{a}, {b}] is the baseline comparison of {b if a == baseline else a}, "
                                  "made for every arm anyway")
        if (a, b) in out or (b, a) in out:
            raise NeckConfigError(f"{where}: [{a}, {b}] is listed twice")
        out.append((a, b))
    return tuple(out)


URI_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _tracking(source: str, d: dict, sweep_name: str) -> Tracking | None:
    """The ``mlflow`` and ``mlflow_experiment`` keys: off (null/false), MLflow's default store (true), or a URI."""
    value, experiment = d["mlflow"], d["mlflow_experiment"]
    if experiment is not None:
        if isinstance(experiment, (int, float)) and not isinstance(experiment, bool):
            experiment = str(experiment)
        experiment = _str(source, "mlflow_experiment", experiment)
        if any(c in experiment for c in "\n\r\t"):
            raise NeckConfigError(f"{source}: key 'mlflow_experiment': must be one line, got {experiment!r}")
    if value is None or value is False:
        return None
    if value is True:
        return Tracking(None, experiment or sweep_name)
    text = value.strip() if isinstance(value, str) else ""
    looks_like_uri = URI_SCHEME_RE.match(text) or text == "databricks" or text.startswith(("/", ".", "~"))
    if not text or any(c.isspace() for c in text) or not looks_like_uri:
        raise NeckConfigError(f"{source}: key 'mlflow': must be true (MLflow's default store), null (off) or a "
                              f"tracking URI like sqlite:///mlflow.db or http://host:5000, got {value!r}")
    return Tracking(text, experiment or sweep_name)


def validate(d: dict, source: str, spec_dir: Path, select: list[str] | None = None,
              devices: tuple[str, ...] = ()) -> Spec:
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
    from ..records.columns import METRICS

    metric = d["metric"]
    if not isinstance(metric, str) or metric not in METRICS:
        raise NeckConfigError(f"{source}: key 'metric': unknown metric {metric!r}{suggest(metric, METRICS)} "
                              f"(choose from {', '.join(METRICS)})")
    target = _number(source, "target", d["target"], 0.0, strict=True)
    margin = _number(source, "margin", d["margin"], 0.0, allow_none=True, strict=True)
    seeds, adaptive = _seed_policy(source, d["seeds"], target)
    all_arms = _arms(source, arms_value, spec_dir, None)
    baseline = next(a.name for a in all_arms if a.baseline)
    contrasts = check_contrasts(f"{source}: key 'contrasts'", d["contrasts"], [a.name for a in all_arms], baseline)
    return Spec(
        source=source,
        name=name,
        project=_str(source, "project", str(d["project"]) if d["project"] is not None else None),
        model=model,
        scale=scale,
        replace=_str(source, "replace", d["replace"]),
        arms=_arms(source, arms_value, spec_dir, select) if select else all_arms,
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
        margin=margin,
        size_buckets=_size_buckets(source, d["size_buckets"]),
        contrasts=contrasts,
        adaptive=adaptive,
        execution=_execution(source, d, devices or (device,)),
        tracking=_tracking(source, d, name),
    )
