"""Shared machinery of the built-in datasets: parameter checking, cache keys, atomic builds, data YAMLs.

A built-in dataset is built into ``<root>/<name>-<key>/`` where ``<key>`` is a short hash of its parameters (plus
anything else its content depends on) and :data:`FORMAT_VERSION`. The build writes into a private temporary
directory next to it and renames that directory into place only once everything, ``data.yaml`` last, is written,
so a directory with the final name is always complete and a half-written one is never picked up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from yolo_necks.errors import NeckConfigError

# Bump when the on-disk layout or the generation of any built-in dataset changes: old caches are then not reused.
FORMAT_VERSION = 1

ENV_DATA_DIR = "YOLO_NECKS_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/yolo-necks/datasets")
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 24 * 3600  # temp dirs of crashed builds older than this are removed on the next build of that key
PARAMS_FILE = "params.json"
DATA_YAML = "data.yaml"


def default_root() -> Path:
    """The cache root: env ``YOLO_NECKS_DATA_DIR`` or ``~/.cache/yolo-necks/datasets``."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser()


@dataclass(frozen=True)
class BuiltinDataset:
    """A built-in dataset: its defaults and the function that writes it.

    ``build(out_dir, params, root)`` writes images, labels and any extra files into ``out_dir`` (but not
    ``data.yaml``) and returns the class names; ``root`` is the cache root, for downloads. ``identity(params)``
    (optional) returns extra cache-key material, e.g. the hash of a local source archive; ``unhashed`` names parameters
    left out of the key because ``identity`` stands for them (a path whose content is hashed instead). ``checks``
    validates the merged parameters. Calling the object builds or reuses the dataset and returns the path of its
    data YAML, like :func:`yolo_necks.datasets.resolve_data`.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    build: Callable[[Path, dict[str, Any], Path], list[str]]
    identity: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    checks: Callable[[dict[str, Any]], None] | None = None
    unhashed: tuple[str, ...] = ()
    help: dict[str, str] = field(default_factory=dict)

    def __call__(self, root: str | Path | None = None, **params: Any) -> str:
        return str(ensure_built(self, root, params))


def _type_name(v: Any) -> str:
    return "path or None" if v is None else type(v).__name__


def check_params(ds: BuiltinDataset, params: dict[str, Any]) -> dict[str, Any]:
    """Merge ``params`` into the defaults of ``ds``; unknown keys and wrong types raise a one-line NeckConfigError."""
    valid = ", ".join(ds.defaults)
    out = dict(ds.defaults)
    for key, value in params.items():
        if key not in ds.defaults:
            raise NeckConfigError(f"dataset '{ds.name}': unknown parameter '{key}'; valid keys: {valid}")
        default = ds.defaults[key]
        bad = NeckConfigError(
            f"dataset '{ds.name}': parameter '{key}' must be {_type_name(default)}, got {value!r}; valid keys: {valid}"
        )
        if default is None:  # optional path
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise bad
            value = None if value in (None, "") else str(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise bad
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise bad
        out[key] = value
    if ds.checks is not None:
        ds.checks(out)
    return out


def short_hash(obj: Any, n: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def cache_dir(ds: BuiltinDataset, params: dict[str, Any], root: Path) -> tuple[Path, dict[str, Any]]:
    """The final directory for ``params`` (already checked) and the JSON-able record its key was computed from."""
    extra = ds.identity(params) if ds.identity is not None else {}
    hashed = {k: v for k, v in params.items() if k not in ds.unhashed}
    record = {"dataset": ds.name, "format": FORMAT_VERSION, "params": hashed, **extra}
    return root / f"{ds.name}-{short_hash(record)}", record


def write_data_yaml(directory: Path, final_dir: Path, names: list[str]) -> Path:
    """Write an Ultralytics data YAML into ``directory`` whose ``path`` points at ``final_dir``."""
    data = {
        "path": str(final_dir),
        "train": "images/train",
        "val": "images/val",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    tmp = directory / f"{DATA_YAML}.tmp"
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    os.replace(tmp, directory / DATA_YAML)
    return directory / DATA_YAML


def _remove_stale_tmp(root: Path, final_name: str) -> None:
    now = time.time()
    for p in root.glob(f"{TMP_PREFIX}{final_name}-*"):
        try:
            if now - p.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _reuse(final: Path) -> Path | None:
    """The data YAML of a complete cached build at ``final`` (re-pointed if the cache was moved), else None."""
    yaml_path = final / DATA_YAML
    if not yaml_path.is_file() or not (final / PARAMS_FILE).is_file():
        return None
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict) or "names" not in data:
        return None
    if data.get("path") != str(final):  # the cache root was moved or copied: point the YAML at where it is now
        write_data_yaml(final, final, list(dict(data["names"]).values()))
    return yaml_path


def ensure_built(ds: BuiltinDataset, root: str | Path | None, params: dict[str, Any]) -> Path:
    """Build ``ds`` with ``params`` under ``root`` unless a complete build exists; return its data YAML path."""
    params = check_params(ds, params)
    root = (Path(root).expanduser() if root is not None else default_root()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    final, record = cache_dir(ds, params, root)
    found = _reuse(final)
    if found is not None:
        return found
    if final.exists():  # a directory with the final name but not a complete build (edited by hand): set it aside
        junk = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-junk-", dir=root))
        os.replace(final, junk / final.name)
        shutil.rmtree(junk, ignore_errors=True)

    from ultralytics.utils import LOGGER

    _remove_stale_tmp(root, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=root))
    t0 = time.perf_counter()
    LOGGER.info(f"yolo-necks: building dataset '{ds.name}' {params} -> {final}")
    try:
        names = ds.build(tmp, params, root)
        (tmp / PARAMS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        write_data_yaml(tmp, final, names)
        try:
            os.rename(tmp, final)
        except OSError:
            if _reuse(final) is None:  # not another process winning the race: a real error
                raise
            LOGGER.info(f"yolo-necks: dataset '{ds.name}' was built concurrently by another process, using it")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    LOGGER.info(f"yolo-necks: dataset '{ds.name}' built in {time.perf_counter() - t0:.1f}s")
    return final / DATA_YAML


def save_labels(path: Path, rows: list[tuple[int, float, float, float, float]]) -> None:
    """Write one YOLO label file: ``cls cx cy w h`` per line, normalised, 6 decimals (byte-stable)."""
    path.write_text("".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in rows))


def xyxy_to_yolo(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel ``x0 y0 x1 y1`` → normalised ``cx cy w h``, clipped to [0, 1]."""
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in (box[0] / width, box[1] / height, box[2] / width, box[3] / height))
    return (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
