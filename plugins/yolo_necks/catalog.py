"""The block catalog: which YAML names build which of our (or third-party) block classes.

A plain table, no ultralytics internals: :mod:`yolo_necks.registry` fills it (``register_block``, entry points) and
exposes each entry to ultralytics' parser; :mod:`yolo_necks.validate` reads it to check YAML rows against a block's
signature.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass

ENTRY_POINT_GROUP = "yolo_necks.blocks"
RESERVED_ATTRS = ("i", "f", "type", "np")  # set by ultralytics' parser on every layer


@dataclass(frozen=True)
class BlockSpec:
    """A registered block: its YAML name, class and where the registration came from."""

    name: str
    cls: type
    source: str


BLOCKS: dict[str, BlockSpec] = {}
LOCK = threading.RLock()


def register_builtins() -> None:
    """Put the package's own blocks in the catalog (once)."""
    if any(spec.source == "yolo_necks" for spec in BLOCKS.values()):
        return
    from .blocks import BUILTIN_BLOCKS

    with LOCK:
        for cls in BUILTIN_BLOCKS:
            BLOCKS.setdefault(cls.__name__, BlockSpec(cls.__name__, cls, "yolo_necks"))


def registered_blocks() -> dict[str, type]:
    """Return ``{yaml name: class}`` of every registered block (registering the built-ins first)."""
    register_builtins()
    return {name: spec.cls for name, spec in BLOCKS.items()}


def block_usage(spec: BlockSpec) -> str:
    """``expected args [c2, k, s] (c1 is inferred ...)``: a block's YAML arguments, for error messages."""
    params = list(inspect.signature(spec.cls).parameters.values())
    yaml_names = ["c2"] + [p.name for p in params[2:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return f"expected args [{', '.join(yaml_names)}] (c1 is inferred from the 'from' layer)"


def yaml_args(spec: BlockSpec) -> str:
    """``c2, k=3, s=1``: a block's YAML arguments with their defaults (the ``blocks`` listing)."""
    params = list(inspect.signature(spec.cls).parameters.values())[2:]
    return ", ".join(["c2"] + [str(p).replace(" ", "") for p in params])
