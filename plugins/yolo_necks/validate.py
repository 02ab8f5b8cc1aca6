"""What a model YAML must look like before ultralytics' parser builds it: one-line errors for malformed rows.

:func:`validate_model_dict` checks every row ``[from, number, module, args]`` (shape, module name with close matches,
``from`` indices, repeats, string args the parser would choke on, our blocks' argument counts and types from their
annotations, the output channels of built-ins that take them) and the top-level keys the parser reads before its
layer loop (``nc``, ``scales``/``scale``, multiples, ``activation``, ``reg_max``). Every problem is a
:class:`~yolo_necks.errors.NeckConfigError` naming the file, the layer index and the module. What only the module
constructors or the first forward pass find out is translated afterwards by :mod:`yolo_necks.translate`.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import sys
import typing

import torch.nn as nn

from .catalog import BLOCKS, BlockSpec, block_usage
from .errors import NeckConfigError, compat_error


def tasks_module():
    """``ultralytics.nn.tasks``, or an :class:`~yolo_necks.errors.UltralyticsCompatError` if it does not import."""
    try:
        import ultralytics.nn.tasks as tasks
    except Exception as e:  # pragma: no cover - depends on the environment
        raise compat_error(f"'ultralytics.nn.tasks' does not import ({type(e).__name__}: {e})") from e
    return tasks


def literal(a):
    if isinstance(a, str):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return ast.literal_eval(a)
    return a


def _type_ok(value, hint) -> tuple[bool, str]:
    """Check ``value`` against a simple annotation; return (ok, description of the expected type)."""
    origin = typing.get_origin(hint)
    if hint is inspect.Parameter.empty or hint is typing.Any:
        return True, "any"
    if hint is bool:
        return isinstance(value, bool), "bool"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), "int"
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), "float"
    if hint is str:
        return isinstance(value, str), "str"
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return value in choices, " or ".join(repr(c) for c in choices)
    if origin in (tuple, list, typing.Union) or hint in (tuple, list):
        args = typing.get_args(hint)
        if origin is typing.Union or (sys.version_info >= (3, 10) and origin is __import__("types").UnionType):
            results = [_type_ok(value, h) for h in args]
            return any(ok for ok, _ in results), " or ".join(desc for _, desc in results)
        if not isinstance(value, (list, tuple)):
            return False, f"a list of {args[0].__name__ if args else 'values'}"
        elem = args[0] if args else typing.Any
        ok = all(_type_ok(v, elem)[0] for v in value)
        return ok, f"a list of {getattr(elem, '__name__', elem)}"
    return True, str(hint)


def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:
        return {}


def known_names(tasks) -> list[str]:
    names = [n for n, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    return sorted(set(names) | set(BLOCKS))


def yaml_where(d) -> str:
    return str(d.get("yaml_file") or "model YAML") if isinstance(d, dict) else "model YAML"


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check_row_shape(i: int, row, where: str) -> None:
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise NeckConfigError(f"{where}: layer {i}: expected [from, number, module, args], got {row!r}")


def _check_from(f, i: int, prefix: str) -> None:
    """``from`` must name earlier layers: the parser indexes its channel list with it, the forward pass its outputs.

    Layer ``i`` can read layers ``0..i-1`` or ``-1..-i`` counting back (``-1``: the previous layer, or the input image
    for layer 0, which can read nothing else).
    """
    valid = "-1 (the input image)" if i == 0 else f"0..{i - 1}, or -1..-{i} counting back (-1 = the previous layer)"
    indices = f if isinstance(f, list) else [f]
    if isinstance(f, list) and not f:
        raise NeckConfigError(f"{prefix}: 'from' is an empty list; expected a layer index or a list of them: {valid}")
    for x in indices:
        if not is_int(x):
            raise NeckConfigError(f"{prefix}: 'from' must be a layer index or a list of them, got {f!r}; valid {valid}")
        if x != -1 and not (i > 0 and -i <= x < i):
            raise NeckConfigError(f"{prefix}: 'from' index {x} is out of range; layer {i} can read {valid}")


def _check_string_args(args, prefix: str) -> None:
    """Reject string args that are neither a name (``nc``, ``nearest``) nor a Python literal.

    The stock parser reads string args with ``ast.literal_eval`` and lets anything but a ``ValueError`` escape: such a
    string would be a raw ``SyntaxError`` from deep inside it.
    """
    for j, a in enumerate(args):
        if not isinstance(a, str) or a.isidentifier():
            continue
        try:
            ast.literal_eval(a)
        except ValueError:
            continue
        except Exception:
            raise NeckConfigError(
                f"{prefix}: argument {j} {a!r} is neither a literal (a number, True, None, a list...) nor a name "
                "(such as nc)"
            ) from None


def _signature_text(cls) -> str:
    """``Conv(c1, c2, k=1, s=1, ...)``: a built-in module's constructor without annotations, for error messages."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return f"{getattr(cls, '__name__', cls)}(...)"
    text = []
    for p in params:
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text.append(f"{prefix}{p.name}" if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"{cls.__name__}({', '.join(text)})"


def takes_channels(cls) -> bool:
    """Whether a built-in is ``(c1, c2, ...)``: the parser infers ``c1`` and ``args[0]`` is a channel count."""
    try:
        return list(inspect.signature(cls).parameters)[:2] == ["c1", "c2"]
    except (TypeError, ValueError):
        return False


def builtin_usage(cls) -> str:
    note = " (c1 is inferred from the 'from' layer)" if takes_channels(cls) else ""
    return f"expected args for {_signature_text(cls)}{note}"


def resolve_module(m: str, tasks):
    """The class a YAML module name builds (our block for a proxy), or None."""
    if m.startswith("nn."):
        cls = getattr(nn, m[3:], None)
    elif m.startswith("torchvision.ops."):
        try:
            import torchvision.ops as ops
        except Exception:
            return None
        cls = getattr(ops, m[16:], None)
    else:
        cls = BLOCKS[m].cls if m in BLOCKS else vars(tasks).get(m)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def validate_layer(i: int, row, where: str, tasks=None) -> None:
    """Validate one YAML row ``[from, number, module, args]`` (index ``i`` over backbone + head)."""
    tasks = tasks or tasks_module()
    check_row_shape(i, row, where)
    prefix = f"{where}: layer {i}"
    f, n, m, args = row
    if not isinstance(m, str):
        raise NeckConfigError(f"{prefix}: module must be a name, got {m!r}")
    prefix = f"{prefix} ({m})"
    if not isinstance(args, (list, tuple)):
        raise NeckConfigError(f"{prefix}: args must be a list, got {args!r}")
    if not is_int(n) or n < 1:
        raise NeckConfigError(f"{prefix}: number of repeats must be an int >= 1, got {n!r}")
    if m.startswith("nn."):
        if resolve_module(m, tasks) is None:
            raise NeckConfigError(f"{prefix}: torch.nn has no module '{m[3:]}'")
    elif m.startswith("torchvision.ops."):
        if resolve_module(m, tasks) is None:
            raise NeckConfigError(f"{prefix}: torchvision.ops has no module '{m[16:]}'")
    elif m not in BLOCKS and m not in vars(tasks):
        close = difflib.get_close_matches(m, known_names(tasks), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise NeckConfigError(
            f"{prefix}: unknown module '{m}'{hint} (yolo-necks blocks: {', '.join(sorted(BLOCKS)) or 'none'})"
        )
    elif resolve_module(m, tasks) is None:
        raise NeckConfigError(f"{prefix}: '{m}' in ultralytics.nn.tasks is not a layer (an nn.Module class)")
    _check_from(f, i, prefix)
    _check_string_args(args, prefix)
    spec = BLOCKS.get(m)
    if spec is not None:
        _validate_block_args(spec, f, args, prefix)
        return
    cls = resolve_module(m, tasks)
    if not m.startswith(("nn.", "torchvision.ops.")) and takes_channels(cls):
        c2 = literal(args[0]) if args else None
        if not args or not (isinstance(c2, str) or _is_positive_number(c2)):
            got = f"got {c2!r}" if args else "args are empty"
            raise NeckConfigError(
                f"{prefix}: output channels (args[0]) must be a positive number, {got}; {builtin_usage(cls)}"
            )


def _validate_block_args(spec: BlockSpec, f, args, prefix: str) -> None:
    cls = spec.cls
    sig = inspect.signature(cls)
    usage = block_usage(spec)
    if not is_int(f):
        raise NeckConfigError(f"{prefix}: takes one input, but 'from' is {f!r}; {usage}")
    if not args:
        raise NeckConfigError(f"{prefix}: missing output channels; {usage}")
    values = [literal(a) for a in args]
    c2 = values[0]
    if not isinstance(c2, str) and (not is_int(c2) or c2 < 1):
        raise NeckConfigError(f"{prefix}: output channels (args[0]) must be a positive int, got {c2!r}; {usage}")
    try:
        bound = sig.bind(1, 1, *values[1:])
    except TypeError as e:
        raise NeckConfigError(f"{prefix}: {e} (got {len(values)} args {list(args)!r}); {usage}") from None
    hints = _hints(cls)
    for name, value in list(bound.arguments.items())[2:]:
        param = sig.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            continue
        ok, expected = _type_ok(value, hints.get(name, param.annotation))
        if not ok:
            raise NeckConfigError(f"{prefix}: argument '{name}' expects {expected}, got {value!r}; {usage}")


def check_sections(d, where: str) -> list:
    """``backbone`` (non-empty) and ``head`` must be lists of rows; return them concatenated."""
    if not isinstance(d, dict):
        raise NeckConfigError(f"{where}: a model YAML must be a mapping with 'backbone' and 'head', got {d!r}")
    rows = []
    for section in ("backbone", "head"):
        part = d.get(section)
        if not isinstance(part, list):
            got = "it is missing" if section not in d else f"got {part!r}"
            raise NeckConfigError(f"{where}: '{section}' must be a list of [from, number, module, args] rows; {got}")
        rows.extend(part)
    if not d["backbone"]:
        raise NeckConfigError(f"{where}: 'backbone' is empty; expected a list of [from, number, module, args] rows")
    return rows


def _check_top_level(d: dict, rows: list, where: str) -> None:
    """The keys the stock parser reads before its layer loop: ``nc``, ``scales``/``scale``, the multiples, ..."""
    nc = d.get("nc")
    if nc is not None and (not is_int(nc) or nc < 1):
        raise NeckConfigError(f"{where}: 'nc' (number of classes) must be an int >= 1, got {nc!r}")
    if nc is None:
        for i, row in enumerate(rows):
            if "nc" in row[3]:
                raise NeckConfigError(
                    f"{where}: layer {i} ({row[2]}): args use 'nc', but the YAML sets no 'nc' (number of classes); "
                    "expected e.g. 'nc: 80' at the top level"
                )
    scales = d.get("scales")
    triple = "[depth, width, max_channels] of positive numbers"
    if scales:
        if not isinstance(scales, dict):
            raise NeckConfigError(f"{where}: 'scales' must map scale letters to {triple}, got {scales!r}")
        scale = d.get("scale") or next(iter(scales))
        if scale not in scales:
            raise NeckConfigError(
                f"{where}: scale '{scale}' (the letter after the version in the file name) is not in 'scales'; "
                f"expected one of {', '.join(map(str, scales))}"
            )
        value = scales[scale]
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(map(_is_positive_number, value)):
            raise NeckConfigError(f"{where}: scales['{scale}'] must be {triple}, got {value!r}")
    else:
        for key in ("depth_multiple", "width_multiple"):
            if key in d and not _is_positive_number(d[key]):
                raise NeckConfigError(f"{where}: '{key}' must be a positive number, got {d[key]!r}")
    act = d.get("activation")
    if act and not isinstance(act, str):
        raise NeckConfigError(f"{where}: 'activation' must be a torch.nn module call such as 'nn.ReLU()', got {act!r}")
    reg_max = d.get("reg_max")
    if reg_max is not None and (not is_int(reg_max) or reg_max < 1):
        raise NeckConfigError(f"{where}: 'reg_max' must be an int >= 1, got {reg_max!r}")


def validate_model_dict(d: dict, tasks=None) -> list:
    """Validate a model dict before ultralytics' parser builds it; return the rows (backbone + head).

    Everything the stock parser would trip over with a raw exception is checked here where the check is simple and
    certain; what only its module constructors know is converted afterwards (see :func:`_parse_error`).
    """
    tasks = tasks or tasks_module()
    where = yaml_where(d)
    rows = check_sections(d, where)
    for i, row in enumerate(rows):
        validate_layer(i, row, where, tasks)
    _check_top_level(d, rows, where)
    return rows

