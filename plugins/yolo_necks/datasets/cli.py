"""``yolo-necks data``: build and list the built-in datasets.

    yolo-necks data build NAME [key=value ...] [root=DIR]   build (or reuse) NAME; prints its data YAML path last
    yolo-necks data list                                    the built-in datasets
    yolo-necks data --help                                  this help, with every dataset's keys and defaults

Values are read with ``ast.literal_eval`` (``n_train=100``, ``overlap=0.25``) and fall back to plain strings
(``wheel=/tmp/deepforest.whl``); parameters whose default is a string or a path are always taken as written.
"""

from __future__ import annotations

import ast
from typing import Any

from yolo_necks.errors import NeckConfigError

USAGE = "usage: yolo-necks data build NAME [key=value ...] [root=DIR] | yolo-necks data list | yolo-necks data --help"
HELP = """\
  build NAME [key=value ...] [root=DIR]   build NAME (or reuse the cached build); prints its data YAML path last
  list                                    list the built-in datasets

Values are Python literals (n_train=100, overlap=0.25) or else plain strings (wheel=/tmp/deepforest.whl); string
parameters are taken as written. Builds are cached under root/NAME-HASH/ and reused for the same parameters."""


def _help() -> str:
    from yolo_necks.datasets import BUILTIN, default_root

    lines = [USAGE, "", HELP, f"root defaults to {default_root()} (env YOLO_NECKS_DATA_DIR)."]
    for name, ds in BUILTIN.items():
        lines += ["", f"{name}: {ds.description}"]
        width = max(len(f"{k}={v!r}") for k, v in ds.defaults.items())
        for k, v in ds.defaults.items():
            lines.append(f"  {f'{k}={v!r}':<{width}}  {ds.help.get(k, '')}".rstrip())
    return "\n".join(lines)


def parse_value(raw: str, default: Any = 0) -> Any:
    """``raw`` as a Python literal (never evaluated as code), else as a string; str/path defaults keep ``raw``."""
    if isinstance(default, str):
        return raw
    if default is None:
        return None if raw in {"", "None"} else raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw


def parse_kv(args: list[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``key=value`` arguments → (params, root)."""
    params: dict[str, Any] = {}
    root = None
    for arg in args:
        key, sep, raw = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NeckConfigError(f"expected key=value, got '{arg}'; {USAGE}")
        if key in params or (key == "root" and root is not None):
            raise NeckConfigError(f"parameter '{key}' given twice")
        if key == "root":
            root = raw
        else:
            params[key] = parse_value(raw, defaults.get(key, 0))
    return params, root


def data_main(argv: list[str]) -> int:
    from yolo_necks.datasets import BUILTIN, resolve_data

    argv = list(argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_help())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "list":
        if rest:
            raise NeckConfigError(f"'data list' takes no arguments, got {rest}")
        width = max(map(len, BUILTIN))
        for name, ds in BUILTIN.items():
            print(f"{name:<{width}}  {ds.description}")
        return 0
    if cmd != "build":
        raise NeckConfigError(f"unknown data command '{cmd}'; {USAGE}")
    if not rest or rest[0] in {"-h", "--help"}:
        print(_help())
        return 0 if rest else 2
    name = rest[0]
    if name not in BUILTIN:
        raise NeckConfigError(f"unknown built-in dataset '{name}'; built-ins: {', '.join(BUILTIN)}")
    if any(a in {"-h", "--help"} for a in rest[1:]):
        print(_help())
        return 0
    params, root = parse_kv(rest[1:], BUILTIN[name].defaults)
    print(resolve_data(name, root=root, **params))
    return 0
