"""Argument checks shared by the blocks.

Every check raises with a one-line message that names the block and the argument, e.g.
``FocalModulation: focal_level must be an int >= 1, got 0``: ``TypeError`` when the value has the wrong type,
``ValueError`` when it has the right type but is out of range.
"""

from __future__ import annotations


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(block: str, name: str, value, minimum: int = 1, odd: bool = False, even: bool = False) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (and odd/even when asked), else raise."""
    parity = " odd" if odd else " even" if even else ""
    what = f"{block}: {name} must be an{parity} int >= {minimum}, got {value!r}"
    if not _is_int(value):
        raise TypeError(what)
    if value < minimum or (odd and value % 2 == 0) or (even and value % 2 == 1):
        raise ValueError(what)
    return value


def check_bool(block: str, name: str, value) -> bool:
    """Return ``value`` if it is a bool, else raise ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{block}: {name} must be a bool, got {value!r}")
    return value


def check_choice(block: str, name: str, value, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the strings ``choices``, else raise."""
    what = f"{block}: {name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
    if not isinstance(value, str):
        raise TypeError(what)
    if value not in choices:
        raise ValueError(what)
    return value


def check_levels(block: str, name: str, value) -> tuple[int, ...]:
    """Return ``value`` as a tuple if it is a non-empty tuple/list of distinct positive ints, else raise."""
    what = f"{block}: {name} must be a non-empty tuple or list of distinct ints >= 1, got {value!r}"
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise TypeError(what)
    if not value or min(value) < 1 or len(set(value)) != len(value):
        raise ValueError(what)
    return tuple(value)
