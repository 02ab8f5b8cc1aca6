"""Registration of neck blocks with ultralytics' model parser.

This is the only module that knows ultralytics' parser internals (``ultralytics.nn.tasks.parse_model``), checked
against ultralytics 8.3-8.4. What it relies on, and checks at :func:`register` time with a tiny self-test parse:

1. ``parse_model`` resolves a layer's module name with ``globals()[name]`` inside ``ultralytics.nn.tasks``;
2. for modules in its private ``base_modules`` set (``Conv``, ``SPPF``, ...) it infers channels the way we want:
   ``c1`` from the ``from`` layer, ``c2 = make_divisible(min(args[0], max_channels) * width, 8)``, then calls
   ``m(c1, c2, *args[1:])``, and scales repeats by depth;
3. it attaches ``i``, ``f``, ``type`` and ``np`` to each built layer.

That set is a local ``frozenset`` we cannot extend, so each registered block is exposed in ``tasks``' namespace
through a tiny *proxy class* whose metaclass makes it hash and compare equal to ``Conv``: the stock parser then takes
the ``Conv`` branch (channel inference, width/depth scaling, the ``activation:`` key, its own summary table) and
calls the proxy, whose ``__new__`` returns an instance of the real block. Nothing else changes: ``isinstance`` and
pickling see the real class, ultralytics' own names (``SPP``, ``SPPF``, ...) are never shadowed, and stock YAMLs
parse exactly as before.

``parse_model`` itself is wrapped to validate YAML rows before the stock parser sees them: unknown module names (with
close matches), ``from`` indices outside the model, wrong argument counts or types for our blocks, several inputs to a
one-input block, malformed top-level keys. Errors are :class:`~yolo_necks.errors.NeckConfigError` with a one-line
message naming the file, the layer index and the module. Whatever the stock parser or the model's first forward pass
still raises for a malformed YAML becomes the same one-line error (no raw traceback is reachable from a YAML). For that
we also rely, best effort and without a self-test (if they move, the errors just lose their layer index), on:

4. ``parse_model``'s loop variable ``i`` (the layer being built when it raised, read from the traceback);
5. ``_initialize_yolo_model(model, cfg, ch, nc, verbose)``, which ``DetectionModel`` and its relatives call to load
   the YAML and parse it, right before ``__init__`` runs the stride-computation forward pass when the last layer is a
   ``Detect`` (``SemanticSegment`` for ``SemanticSegmentationModel``). We wrap it to check the keys it reads before
   parsing, and give the model a one-shot ``forward`` for that pass (found through the ``model`` local of that call, so
   it also works for the first model of a process, built before :func:`register` wrapped anything).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import sys
import threading
import typing
from dataclasses import dataclass
from importlib import metadata

import torch.nn as nn

from .errors import NeckConfigError, UltralyticsCompatError

ENTRY_POINT_GROUP = "yolo_necks.blocks"
_RESERVED_ATTRS = ("i", "f", "type", "np")  # set by ultralytics' parser on every layer


@dataclass(frozen=True)
class BlockSpec:
    """A registered block: its YAML name, class and where the registration came from."""

    name: str
    cls: type
    source: str


_BLOCKS: dict[str, BlockSpec] = {}
_LOCK = threading.RLock()
_STATE = {"installed": False, "parse_model": None, "torch_safe_load": None, "excepthook": None}


# --------------------------------------------------------------------------------------------------------- proxies
class _ConvAlias(type(nn.Module)):
    """Metaclass of the name proxies: a proxy hashes and compares equal to ultralytics' ``Conv``.

    That is what routes it through the parser's built-in channel-inference branch. Only proxies (never the real
    block classes) have this metaclass, and proxies live only in ``ultralytics.nn.tasks``' namespace.
    """

    def __eq__(cls, other):
        return other is cls._conv or type.__eq__(cls, other) is True

    def __ne__(cls, other):
        return not cls.__eq__(other)

    def __hash__(cls):
        return hash(cls._conv)

    def __repr__(cls):  # the parser prints str(m)[8:-2] as the layer type
        target = cls._target
        return f"<class '{target.__module__}.{target.__qualname__}'>"

    __str__ = __repr__


def _make_proxy(spec: BlockSpec, conv: type) -> type:
    target = spec.cls

    def __new__(proxy, *args, **kwargs):
        try:
            block = target(*args, **kwargs)
        except (TypeError, ValueError) as e:  # bad block arguments: parse_model_with_necks adds the layer index
            err = NeckConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__)
            err.block = (spec.name, tuple(args[2:]))
            raise err from None
        if len(args) >= 2:  # read (and removed) by _fix_repeats right after the parse
            block._yolo_necks_init = (args[0], args[1], args[2:])
        return block

    return _ConvAlias(
        spec.name,
        (nn.Module,),
        {
            "__new__": __new__,
            "__module__": "yolo_necks.registry",
            "__doc__": f"Parser proxy for {target.__module__}.{target.__qualname__} (see yolo_necks.registry).",
            "_target": target,
            "_conv": conv,
            "_yolo_necks_proxy": True,
        },
    )


def _is_proxy(obj) -> bool:
    return isinstance(obj, type) and getattr(obj, "_yolo_necks_proxy", False) is True


# ------------------------------------------------------------------------------------------------------ public API
def register_block(cls: type | None = None, *, name: str | None = None, replace: bool = False):
    """Register an ``nn.Module`` class so model YAMLs can name it. Usable as ``@register_block`` or with arguments.

    The class must take ultralytics' ``(c1, c2, *args)`` signature: ``c1`` is inferred from the ``from`` layer and
    ``c2`` is the YAML's ``args[0]`` scaled by the width multiple and capped by ``max_channels``.

    Args:
        cls: the block class.
        name: YAML name (default: the class name). It may not shadow an ultralytics module name.
        replace: allow re-registering a name with a different class.
    """

    def deco(c):
        _add(c, name or c.__name__, source=f"{c.__module__}.{c.__qualname__}", replace=replace)
        return c

    return deco(cls) if cls is not None else deco


def unregister_block(name: str) -> None:
    """Remove a registered block (and its parser proxy). Unknown names are ignored."""
    with _LOCK:
        _BLOCKS.pop(name, None)
        tasks = sys.modules.get("ultralytics.nn.tasks")
        if tasks is not None and _is_proxy(vars(tasks).get(name)):
            delattr(tasks, name)


def registered_blocks() -> dict[str, type]:
    """Return ``{yaml name: class}`` of every registered block (registering the built-ins first)."""
    _register_builtins()
    return {name: spec.cls for name, spec in _BLOCKS.items()}


def register(entry_points: bool = True) -> dict[str, type]:
    """Make every registered block resolvable by name in ultralytics model YAMLs. Idempotent.

    Installs the parser proxies and the ``parse_model`` wrapper, allow-lists our classes for
    ``ULTRALYTICS_SAFE_LOAD=1`` checkpoint loading, and loads third-party blocks from the ``yolo_necks.blocks``
    entry-point group.

    Raises:
        UltralyticsCompatError: the ultralytics internals this relies on are missing or changed.
    """
    with _LOCK:
        _register_builtins()
        if entry_points:
            _load_entry_points()
        if not _STATE["installed"]:
            _install(_tasks())
            _STATE["installed"] = True
        _sync_proxies()
        _allow_safe_load()
    return registered_blocks()


# ------------------------------------------------------------------------------------------------------- internals
def _ultralytics_version() -> str:
    try:
        return metadata.version("ultralytics")
    except metadata.PackageNotFoundError:
        return "unknown"


def _compat_error(what: str) -> UltralyticsCompatError:
    return UltralyticsCompatError(
        f"yolo-necks cannot register with ultralytics {_ultralytics_version()}: {what}. "
        "Install a supported ultralytics (>=8.3,<9) or report this incompatibility."
    )


def _tasks():
    try:
        import ultralytics.nn.tasks as tasks
    except Exception as e:  # pragma: no cover - depends on the environment
        raise _compat_error(f"'ultralytics.nn.tasks' does not import ({type(e).__name__}: {e})") from e
    return tasks


def _add(cls, name: str, source: str, replace: bool = False) -> None:
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise NeckConfigError(f"register_block: {cls!r} is not an nn.Module subclass")
    if not name.isidentifier():
        raise NeckConfigError(f"register_block: name '{name}' is not a valid identifier")
    for attr in _RESERVED_ATTRS:
        if attr in vars(cls):
            raise NeckConfigError(
                f"register_block: {cls.__qualname__} defines attribute '{attr}', which ultralytics' parser "
                f"overwrites on every layer (reserved: {', '.join(_RESERVED_ATTRS)})"
            )
    try:
        params = list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        params = []
    if len(params) < 2:
        raise NeckConfigError(f"register_block: {cls.__qualname__} must take (c1, c2, *args); signature has {params}")
    with _LOCK:
        old = _BLOCKS.get(name)
        if old is not None and old.cls is not cls and not replace:
            raise NeckConfigError(
                f"register_block: name '{name}' is already registered to {old.source}; pass replace=True to override"
            )
        tasks = sys.modules.get("ultralytics.nn.tasks")
        if tasks is not None:
            _check_not_builtin(tasks, name)
        _BLOCKS[name] = BlockSpec(name, cls, source)
        if _STATE["installed"]:
            _sync_proxies()
            _allow_safe_load()


def _check_not_builtin(tasks, name: str) -> None:
    existing = vars(tasks).get(name)
    if existing is not None and not _is_proxy(existing):
        raise NeckConfigError(
            f"register_block: '{name}' is an ultralytics name ({existing!r}); built-ins are never shadowed, "
            "register the block under another name"
        )


def _register_builtins() -> None:
    if any(spec.source == "yolo_necks" for spec in _BLOCKS.values()):
        return
    from .blocks import BUILTIN_BLOCKS

    with _LOCK:
        for cls in BUILTIN_BLOCKS:
            _BLOCKS.setdefault(cls.__name__, BlockSpec(cls.__name__, cls, "yolo_necks"))


def _load_entry_points() -> None:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # pragma: no cover - Python < 3.10 API
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    for ep in eps:
        if ep.name in _BLOCKS and _BLOCKS[ep.name].source == f"entry point {ep.value}":
            continue
        try:
            obj = ep.load()
        except Exception as e:
            raise NeckConfigError(
                f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}) failed to load: "
                f"{type(e).__name__}: {e}"
            ) from e
        _add(obj, ep.name, source=f"entry point {ep.value}")


def _sync_proxies() -> None:
    tasks = _tasks()
    for name, spec in _BLOCKS.items():
        current = vars(tasks).get(name)
        if _is_proxy(current) and current._target is spec.cls:
            continue
        _check_not_builtin(tasks, name)
        setattr(tasks, name, _make_proxy(spec, tasks.Conv))
    for name, obj in list(vars(tasks).items()):  # drop proxies of unregistered blocks
        if _is_proxy(obj) and name not in _BLOCKS:
            delattr(tasks, name)


def _allow_safe_load() -> None:
    """Allow-list our classes for ``torch.load(weights_only=True)`` (``ULTRALYTICS_SAFE_LOAD=1``)."""
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4: ultralytics' restricted loading degrades to a standard load
        return
    classes = [spec.cls for spec in _BLOCKS.values()]
    with contextlib.suppress(ImportError):
        from .fast import FAST_MODULES

        classes.extend(FAST_MODULES)
    add(classes)


def _original(tasks, name: str):
    fn = getattr(tasks, name, None)
    # unwrap the start-up hook's lazy wrapper and our own wrapper to reach ultralytics' function
    while fn is not None and (getattr(fn, "_yolo_necks_lazy", False) or getattr(fn, "_yolo_necks_wrapper", False)):
        fn = fn.__wrapped__
    return fn


def _install(tasks) -> None:
    parse_model = _original(tasks, "parse_model")
    missing = [n for n in ("Conv", "make_divisible") if not hasattr(tasks, n)]
    if parse_model is None:
        missing.insert(0, "parse_model")
    if missing:
        raise _compat_error(f"ultralytics.nn.tasks has no {', '.join(missing)}")
    try:
        params = list(inspect.signature(parse_model).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:3] != ["d", "ch", "verbose"]:
        raise _compat_error(f"parse_model signature changed to ({', '.join(params)}), expected (d, ch, verbose)")
    _self_test(tasks, parse_model)
    initialize = _original(tasks, "_initialize_yolo_model")
    init_code = getattr(initialize, "__code__", None)

    def parse_model_with_necks(d, ch, verbose=True):
        rows = validate_model_dict(d, tasks)
        default_act = getattr(tasks.Conv, "default_act", None)
        try:
            model, save = parse_model(d, ch, verbose)
        except Exception as e:
            if default_act is not None:  # the stock parser restores it only when it returns
                tasks.Conv.default_act = default_act
            if isinstance(e, NeckConfigError):
                raise _with_layer(e, rows, d) from None
            raise _parse_error(e, rows, d, parse_model.__code__, tasks) from e
        _fix_repeats(model)
        target = _model_being_initialized(init_code)
        if target is not None and _runs_stride_forward(target, model, tasks):
            _guard_first_forward(target, rows, _where(d))
        return model, save

    parse_model_with_necks._yolo_necks_wrapper = True
    parse_model_with_necks.__wrapped__ = parse_model
    parse_model_with_necks.__doc__ = parse_model.__doc__
    _STATE["parse_model"] = parse_model
    tasks.parse_model = parse_model_with_necks
    if _init_signature_ok(initialize):
        tasks._initialize_yolo_model = _wrap_initialize(initialize, tasks)
    safe_load = _original(tasks, "torch_safe_load")
    if safe_load is not None:  # the allow-list is in place now: the lazy hook is no longer needed
        _STATE["torch_safe_load"] = safe_load
        tasks.torch_safe_load = safe_load
    _install_excepthook()


class _Probe(nn.Module):
    """The self-test's block: records the channels it was built with."""

    def __init__(self, c1: int, c2: int, tag: str = "x"):
        super().__init__()
        self.c1, self.c2, self.tag = c1, c2, tag
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x)


def _self_test(tasks, parse_model) -> None:
    """Parse a tiny model with a proxy block and check channels, scaling and attributes come out as expected."""
    name = "_YoloNecksProbe"
    setattr(tasks, name, _make_proxy(BlockSpec(name, _Probe, "self-test"), tasks.Conv))
    d = {
        "nc": 1,
        "scales": {"t": [0.5, 0.5, 48]},
        "scale": "t",
        "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, name, [128, "probe"]], [-1, 1, "Conv", [16, 1]]],
        "head": [],
    }
    try:
        import torch

        with torch.random.fork_rng(devices=[]):  # its layers' weight init must not shift the user's seeded stream
            model, _ = parse_model(d, 3, False)
        probe, after = model[1], model[2]
        expected_c2 = tasks.make_divisible(min(128, 48) * 0.5, 8)
        problems = []
        if not isinstance(probe, _Probe):
            problems.append(f"registered layer built as {type(probe).__name__}, not the block")
        elif (probe.c1, probe.c2, probe.tag) != (16, expected_c2, "probe"):
            problems.append(
                f"channel inference gave (c1, c2, arg)=({probe.c1}, {probe.c2}, {probe.tag!r}), "
                f"expected (16, {expected_c2}, 'probe')"
            )
        if getattr(getattr(after, "conv", None), "in_channels", None) != expected_c2:
            problems.append("the next layer's input channels do not follow the block's c2")
        if not all(hasattr(probe, a) for a in _RESERVED_ATTRS):
            problems.append("parser no longer attaches i/f/type/np to layers")
    except Exception as e:
        problems = [f"self-test parse failed ({type(e).__name__}: {e})"]
    finally:
        delattr(tasks, name)
    if problems:
        raise _compat_error("parse_model internals changed: " + "; ".join(problems))


def _install_excepthook() -> None:
    """Print our one-line errors without a traceback when they reach the top level (e.g. the stock `yolo` CLI)."""
    if _STATE["excepthook"] is not None:
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        from .errors import NeckError

        if isinstance(exc, NeckError):
            print(f"yolo-necks: error: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    _STATE["excepthook"] = hook
    sys.excepthook = hook


# ------------------------------------------------------------------------------------------------------ validation
def _literal(a):
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


def _known_names(tasks) -> list[str]:
    names = [n for n, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    return sorted(set(names) | set(_BLOCKS))


def _where(d) -> str:
    return str(d.get("yaml_file") or "model YAML") if isinstance(d, dict) else "model YAML"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_row_shape(i: int, row, where: str) -> None:
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
        if not _is_int(x):
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


def _takes_channels(cls) -> bool:
    """Whether a built-in is ``(c1, c2, ...)``: the parser infers ``c1`` and ``args[0]`` is a channel count."""
    try:
        return list(inspect.signature(cls).parameters)[:2] == ["c1", "c2"]
    except (TypeError, ValueError):
        return False


def _builtin_usage(cls) -> str:
    note = " (c1 is inferred from the 'from' layer)" if _takes_channels(cls) else ""
    return f"expected args for {_signature_text(cls)}{note}"


def _block_usage(spec: BlockSpec) -> str:
    params = list(inspect.signature(spec.cls).parameters.values())
    yaml_names = ["c2"] + [p.name for p in params[2:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return f"expected args [{', '.join(yaml_names)}] (c1 is inferred from the 'from' layer)"


def _resolve(m: str, tasks):
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
        cls = _BLOCKS[m].cls if m in _BLOCKS else vars(tasks).get(m)
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def validate_layer(i: int, row, where: str, tasks=None) -> None:
    """Validate one YAML row ``[from, number, module, args]`` (index ``i`` over backbone + head)."""
    tasks = tasks or _tasks()
    _check_row_shape(i, row, where)
    prefix = f"{where}: layer {i}"
    f, n, m, args = row
    if not isinstance(m, str):
        raise NeckConfigError(f"{prefix}: module must be a name, got {m!r}")
    prefix = f"{prefix} ({m})"
    if not isinstance(args, (list, tuple)):
        raise NeckConfigError(f"{prefix}: args must be a list, got {args!r}")
    if not _is_int(n) or n < 1:
        raise NeckConfigError(f"{prefix}: number of repeats must be an int >= 1, got {n!r}")
    if m.startswith("nn."):
        if _resolve(m, tasks) is None:
            raise NeckConfigError(f"{prefix}: torch.nn has no module '{m[3:]}'")
    elif m.startswith("torchvision.ops."):
        if _resolve(m, tasks) is None:
            raise NeckConfigError(f"{prefix}: torchvision.ops has no module '{m[16:]}'")
    elif m not in _BLOCKS and m not in vars(tasks):
        close = difflib.get_close_matches(m, _known_names(tasks), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise NeckConfigError(
            f"{prefix}: unknown module '{m}'{hint} (yolo-necks blocks: {', '.join(sorted(_BLOCKS)) or 'none'})"
        )
    elif _resolve(m, tasks) is None:
        raise NeckConfigError(f"{prefix}: '{m}' in ultralytics.nn.tasks is not a layer (an nn.Module class)")
    _check_from(f, i, prefix)
    _check_string_args(args, prefix)
    spec = _BLOCKS.get(m)
    if spec is not None:
        _validate_block_args(spec, f, args, prefix)
        return
    cls = _resolve(m, tasks)
    if not m.startswith(("nn.", "torchvision.ops.")) and _takes_channels(cls):
        c2 = _literal(args[0]) if args else None
        if not args or not (isinstance(c2, str) or _is_positive_number(c2)):
            got = f"got {c2!r}" if args else "args are empty"
            raise NeckConfigError(
                f"{prefix}: output channels (args[0]) must be a positive number, {got}; {_builtin_usage(cls)}"
            )


def _validate_block_args(spec: BlockSpec, f, args, prefix: str) -> None:
    cls = spec.cls
    sig = inspect.signature(cls)
    usage = _block_usage(spec)
    if not _is_int(f):
        raise NeckConfigError(f"{prefix}: takes one input, but 'from' is {f!r}; {usage}")
    if not args:
        raise NeckConfigError(f"{prefix}: missing output channels; {usage}")
    values = [_literal(a) for a in args]
    c2 = values[0]
    if not isinstance(c2, str) and (not _is_int(c2) or c2 < 1):
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


def _check_sections(d, where: str) -> list:
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
    if nc is not None and (not _is_int(nc) or nc < 1):
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
    if reg_max is not None and (not _is_int(reg_max) or reg_max < 1):
        raise NeckConfigError(f"{where}: 'reg_max' must be an int >= 1, got {reg_max!r}")


def validate_model_dict(d: dict, tasks=None) -> list:
    """Validate a model dict before ultralytics' parser builds it; return the rows (backbone + head).

    Everything the stock parser would trip over with a raw exception is checked here where the check is simple and
    certain; what only its module constructors know is converted afterwards (see :func:`_parse_error`).
    """
    tasks = tasks or _tasks()
    where = _where(d)
    rows = _check_sections(d, where)
    for i, row in enumerate(rows):
        validate_layer(i, row, where, tasks)
    _check_top_level(d, rows, where)
    return rows


def _with_layer(err: NeckConfigError, rows: list, d: dict) -> NeckConfigError:
    """Give a block-construction error the file and layer index of the YAML row that built it."""
    block = getattr(err, "block", None)
    if block is None:
        return err
    name, rest = block
    where = _where(d)
    for i, (_, _, m, args) in enumerate(rows):
        if m == name and tuple(_literal(a) for a in args[1:]) == rest:
            return NeckConfigError(f"{where}: layer {i} ({name}): {err}")
    return NeckConfigError(f"{where}: {name}: {err}")


# ------------------------------------------------------------------------------------- errors past the validation
def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def _frame_local(tb, code, name: str):
    """The value of local ``name`` in the traceback's frame running ``code`` (None if there is none)."""
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return tb.tb_frame.f_locals.get(name)
        tb = tb.tb_next
    return None


def _parse_error(e: Exception, rows: list, d: dict, parse_code, tasks) -> NeckConfigError:
    """Turn a raw exception of the stock parser into a one-line error naming the layer it was building.

    What the validation cannot know (the keyword set of every built-in module, which modules take several inputs)
    the module constructors find out; the parser's loop variable ``i`` tells which row it was.
    """
    where = _where(d)
    reason = f"{type(e).__name__}: {_first_line(e)}"
    i = _frame_local(e.__traceback__, parse_code, "i")
    if not _is_int(i) or not 0 <= i < len(rows):
        act = d.get("activation")
        if act:  # before its layer loop the parser only evaluates the activation (the rest is validated)
            return NeckConfigError(
                f"{where}: 'activation' {act!r} does not build ({reason}); expected a torch.nn module call such as "
                "'nn.ReLU()' or 'nn.LeakyReLU(0.1)'"
            )
        return NeckConfigError(f"{where}: the model does not build ({reason})")
    f, _, m, _ = rows[i]
    cls = _resolve(m, tasks)
    spec = _BLOCKS.get(m)
    usage = _block_usage(spec) if spec is not None else _builtin_usage(cls) if cls is not None else ""
    if isinstance(e, TypeError) and isinstance(f, list) and "indices must be integers" in str(e):
        what = f"takes one input, but 'from' is {f!r}"
    elif isinstance(e, TypeError) and _is_int(f) and "not iterable" in str(e):
        what = f"takes several inputs, but 'from' is {f!r}; expected a list of layer indices such as [-1, 6]"
    else:
        what = f"does not build from these args ({reason})"
    return NeckConfigError(f"{where}: layer {i} ({m}): {what}" + (f"; {usage}" if usage else ""))


def _model_being_initialized(init_code):
    """The model whose ``_initialize_yolo_model`` call (our caller, a few frames up) is parsing its YAML, or None."""
    if init_code is None:
        return None
    try:
        frame = sys._getframe(2)
    except ValueError:  # called from the bottom of a stack
        return None
    for _ in range(6):
        if frame is None:
            return None
        if frame.f_code is init_code:
            return frame.f_locals.get("model")
        frame = frame.f_back
    return None


def _runs_stride_forward(model, layers: nn.Sequential, tasks) -> bool:
    """Whether the model's ``__init__`` runs its stride-computation forward pass once the parse returns."""
    last = layers[-1] if len(layers) else None
    for model_class, head_class in (("DetectionModel", "Detect"), ("SemanticSegmentationModel", "SemanticSegment")):
        model_cls, head_cls = getattr(tasks, model_class, None), getattr(tasks, head_class, None)
        if model_cls and head_cls and isinstance(model, model_cls) and isinstance(last, head_cls):
            return True
    return False


def _guard_first_forward(model: nn.Module, rows: list, where: str) -> None:
    """Give ``model`` a one-shot ``forward`` that turns a failure of its first pass into a one-line error.

    That pass is ultralytics' stride computation in ``__init__``: a YAML whose layers parse but do not fit together
    (a ``Concat`` of different sizes, a block fed the wrong channels) fails only there. The instance attribute shadows
    the class's ``forward`` for that single call and removes itself first, so nothing of it outlives ``__init__`` (it
    is only set when :func:`_runs_stride_forward` says that call comes) and a valid model runs exactly as before.
    """
    if "forward" in vars(model):
        return

    def first_forward(*args, **kwargs):
        vars(model).pop("forward", None)
        try:
            return model.forward(*args, **kwargs)
        except Exception as e:
            raise _forward_error(e, model, rows, where, args, kwargs) from e

    vars(model)["forward"] = first_forward


def _shapes(x) -> str:
    if hasattr(x, "shape"):
        return "x".join(str(s) for s in x.shape)
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_shapes(v) for v in x) + "]"
    return type(x).__name__


def _forward_error(e: Exception, model: nn.Module, rows: list, where: str, args, kwargs) -> NeckConfigError:
    """Name the layer where the first forward pass failed, with the shapes it got (found by running it again)."""
    import torch

    reason = f"{type(e).__name__}: {_first_line(e)}"
    seen = {}

    def record(layer, inputs):
        seen["layer"], seen["inputs"] = layer, inputs[0] if inputs else None

    layers = getattr(model, "model", None)
    handles = [layer.register_forward_pre_hook(record) for layer in layers] if isinstance(layers, nn.Sequential) else []
    failed = False
    try:
        with torch.no_grad():
            model.forward(*args, **kwargs)
    except Exception:
        failed = True
    finally:
        for handle in handles:
            handle.remove()
    layer = seen.get("layer") if failed else None
    image = _shapes(args[0]) if args else "an image"
    i = getattr(layer, "i", None)
    if not _is_int(i) or not 0 <= i < len(rows):
        return NeckConfigError(f"{where}: the model's first forward pass (a {image} image) failed ({reason})")
    m, f = rows[i][2], rows[i][0]
    return NeckConfigError(
        f"{where}: layer {i} ({m}): forward pass failed on input {_shapes(seen['inputs'])} from 'from' {f!r} "
        f"({reason}); its args and the outputs of the layers it reads must fit together (stride check, {image} image)"
    )


def _init_signature_ok(initialize) -> bool:
    try:
        return list(inspect.signature(initialize).parameters)[:5] == ["model", "cfg", "ch", "nc", "verbose"]
    except (TypeError, ValueError):
        return False


def _wrap_initialize(initialize, tasks):
    """Wrap ``_initialize_yolo_model``: it reads ``backbone[0][2]`` and ``nc`` before the parse, and ``nc`` after."""

    def initialize_with_necks(model, cfg, ch, nc, verbose, *args, **kwargs):
        d = cfg if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
        where = _where(d)
        rows = _check_sections(d, where)
        _check_row_shape(0, rows[0], where)
        if "nc" not in d or (d["nc"] is None and not nc):
            raise NeckConfigError(f"{where}: the YAML sets no 'nc' (number of classes); expected e.g. 'nc: 80'")
        return initialize(model, d, ch, nc, verbose, *args, **kwargs)

    initialize_with_necks._yolo_necks_wrapper = True
    initialize_with_necks.__wrapped__ = initialize
    initialize_with_necks.__doc__ = initialize.__doc__
    return initialize_with_necks


def _fix_repeats(model: nn.Module) -> None:
    """Repeated blocks (n > 1) that change width: ultralytics builds every copy c1 -> c2; chain them c2 -> c2."""
    for layer in model:
        copies = list(layer) if isinstance(layer, nn.Sequential) else [layer]
        init = [copy.__dict__.pop("_yolo_necks_init", None) for copy in copies]
        if len(copies) < 2 or init[0] is None or init[0][0] == init[0][1]:
            continue
        _, c2, rest = init[0]
        for j in range(1, len(copies)):
            layer[j] = type(copies[0])(c2, c2, *rest)
        layer.np = sum(p.numel() for p in layer.parameters())


# ----------------------------------------------------------------------------------------------------------- CLI
def blocks_main(argv: list[str]) -> int:
    """``yolo-necks blocks``: list the registered blocks and their YAML arguments."""
    if argv and argv[0] in {"-h", "--help"}:
        print(
            "usage: yolo-necks blocks [--markdown [--readme README.md]]\n\n"
            "List every block usable by name in model YAMLs, with its YAML arguments.\n"
            "--markdown   print the table of model_yamls/ necks with params and GFLOPs at yolov8n scale\n"
            "--readme F   write that table between the blocks-table markers of F\n"
            "--yamls DIR  the model YAML folder (default: ./model_yamls)"
        )
        return 0
    if "--markdown" in argv:
        from pathlib import Path

        from .tables import markdown, update_readme

        yaml_dir = Path(argv[argv.index("--yamls") + 1]) if "--yamls" in argv else Path("model_yamls")
        if not yaml_dir.is_dir():
            yaml_dir = Path(__file__).resolve().parents[2] / "model_yamls"  # the source checkout
        if "--readme" in argv:
            readme = Path(argv[argv.index("--readme") + 1])
            print(f"{readme}: {'updated' if update_readme(readme, yaml_dir) else 'already up to date'}")
        else:
            print(markdown(yaml_dir))
        return 0
    register()
    for name, spec in sorted(_BLOCKS.items()):
        params = list(inspect.signature(spec.cls).parameters.values())[2:]
        args = ", ".join(["c2"] + [str(p).replace(" ", "") for p in params])
        print(f"{name:<18} [{args}]  ({spec.source})")
    return 0
