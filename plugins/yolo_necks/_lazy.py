"""Module-level lazy attributes (PEP 562), so importing a package does not import its heavy submodules."""

from __future__ import annotations

import importlib
import sys


def lazy_attributes(module_name: str, mapping: dict[str, str]):
    """Return ``(__getattr__, __dir__)`` for module ``module_name`` resolving ``name -> mapping[name].name`` on
    first access (then cached in the module's namespace)."""
    namespace = sys.modules[module_name].__dict__

    def __getattr__(name: str):
        if name in mapping:
            value = getattr(importlib.import_module(mapping[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module '{module_name}' has no attribute '{name}'")

    def __dir__():
        return sorted(set(namespace) | set(mapping))

    return __getattr__, __dir__
