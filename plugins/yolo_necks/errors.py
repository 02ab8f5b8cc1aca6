"""Errors of yolo-necks. Each carries a one-line message that names what is wrong and where."""


class NeckError(Exception):
    """Base class: a user-facing error whose message is complete on one line."""


class NeckConfigError(NeckError, ValueError):
    """A model YAML, block argument or sweep spec is invalid."""


class UltralyticsCompatError(NeckError, RuntimeError):
    """The ultralytics internals the registration relies on are missing or changed."""
