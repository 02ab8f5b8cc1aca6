"""Built-in offline datasets for neck ablations, and the resolution of a ``data`` argument to a data YAML.

>>> from yolo_necks.datasets import resolve_data
>>> resolve_data("digits", n_train=200, n_val=50)     # builds once, then reuses: '/…/digits-1a2b3c4d5e/data.yaml'
>>> resolve_data("coco8.yaml")                       # anything else goes to ultralytics as is: 'coco8.yaml'

Built-ins (see ``yolo-necks data --help`` for their parameters):

* ``digits``: synthetic multi-scale scenes of the UCI handwritten digits that scikit-learn ships (10 classes);
* ``neon-trees``: real aerial RGB tiles of tree crowns (NEON, 1 class), taken from the data files of the
  ``deepforest`` wheel on PyPI (downloaded once with pip, or ``wheel=PATH``).

Builds are cached under ``root/<name>-<hash of parameters and format version>/`` (``root`` defaults to env
``YOLO_NECKS_DATA_DIR`` or ``~/.cache/yolo-necks/datasets``) and appear there atomically once complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yolo_necks.datasets._common import DEFAULT_DATA_DIR, ENV_DATA_DIR, FORMAT_VERSION, BuiltinDataset, default_root
from yolo_necks.datasets._common import ensure_built as _ensure_built
from yolo_necks.datasets.digits import DATASET as _DIGITS
from yolo_necks.datasets.neon_trees import DATASET as _NEON_TREES
from yolo_necks.errors import NeckConfigError

BUILTIN: dict[str, BuiltinDataset] = {"digits": _DIGITS, "neon-trees": _NEON_TREES}

__all__ = [
    "BUILTIN",
    "DEFAULT_DATA_DIR",
    "ENV_DATA_DIR",
    "FORMAT_VERSION",
    "BuiltinDataset",
    "dataset_params",
    "default_root",
    "resolve_data",
]


def _builtin(name: str) -> BuiltinDataset:
    if name not in BUILTIN:
        raise NeckConfigError(f"unknown built-in dataset '{name}'; built-ins: {', '.join(BUILTIN)}")
    return BUILTIN[name]


def dataset_params(name: str) -> dict[str, Any]:
    """The default parameters of built-in dataset ``name`` (a fresh dict)."""
    return dict(_builtin(name).defaults)


def _is_bare_name(s: str) -> bool:
    """A name without any directory part (``coco8.yaml``): ultralytics looks it up or downloads it."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return not any(c in s for c in seps) and not s.startswith(("~", "."))


def resolve_data(data: str | Path, root: str | Path | None = None, **params: Any) -> str:
    """Return the data YAML for ``data``.

    A built-in name (``digits``, ``neon-trees``) is built with ``params`` under ``root`` (or reused from the cache) and
    the absolute path of its ``data.yaml`` is returned. Anything else is returned unchanged for ultralytics to resolve:
    a bare name such as ``coco8.yaml`` or ``VOC.yaml``, a URL or an existing path. A path-like ``*.yaml``/``*.yml``
    that does not exist raises :class:`~yolo_necks.errors.NeckConfigError`, as do ``params`` given with a
    non-built-in dataset and unknown or ill-typed parameters of a built-in.
    """
    s = os.fspath(data)
    if s in BUILTIN:
        return str(_ensure_built(BUILTIN[s], root, params))
    if params:
        raise NeckConfigError(
            f"dataset parameters {sorted(params)} only apply to built-in datasets ({', '.join(BUILTIN)}), not '{s}'"
        )
    if "://" in s or _is_bare_name(s):
        return s
    if Path(s).suffix.lower() in {".yaml", ".yml"} and not Path(s).expanduser().exists():
        raise NeckConfigError(f"data YAML not found: '{s}' (built-in datasets: {', '.join(BUILTIN)})")
    return s
