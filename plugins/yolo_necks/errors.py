"""Errors of yolo-necks. Each carries a one-line message that names what is wrong and where."""


class NeckError(Exception):
    """Base class: a user-facing error whose message is complete on one line."""


class NeckConfigError(NeckError, ValueError):
    """A model YAML, block argument or sweep spec is invalid."""


class UltralyticsCompatError(NeckError, RuntimeError):
    """The ultralytics internals the registration relies on are missing or changed."""


def compat_error(what: str) -> UltralyticsCompatError:
    """An :class:`UltralyticsCompatError` naming the installed ultralytics version and what changed."""
    from importlib import metadata

    try:
        version = metadata.version("ultralytics")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return UltralyticsCompatError(
        f"yolo-necks cannot register with ultralytics {version}: {what}. "
        "Install a supported ultralytics (>=8.3,<9) or report this incompatibility."
    )


def one_line(e: BaseException, limit: int | None = 400) -> str:
    """An exception as one line: ``Type: message`` (our own errors without the type, their message says it all),
    white space folded, cut to ``limit`` characters (None: whole)."""
    msg = " ".join(str(e).split())
    text = msg if isinstance(e, NeckError) else f"{type(e).__name__}: {msg}"
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
