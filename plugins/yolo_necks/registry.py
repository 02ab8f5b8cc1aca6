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
close matches), wrong argument counts or types for our blocks, several inputs to a one-input block. Errors are
:class:`~yolo_necks.errors.NeckConfigError` with a one-line message naming the file, the layer index and the module.
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

    def parse_model_with_necks(d, ch, verbose=True):
        rows = validate_model_dict(d, tasks)
        try:
            model, save = parse_model(d, ch, verbose)
        except NeckConfigError as e:
            raise _with_layer(e, rows, d) from None
        _fix_repeats(model)
        return model, save

    parse_model_with_necks._yolo_necks_wrapper = True
    parse_model_with_necks.__wrapped__ = parse_model
    parse_model_with_necks.__doc__ = parse_model.__doc__
    _STATE["parse_model"] = parse_model
    tasks.parse_model = parse_model_with_necks
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


def validate_layer(i: int, row, where: str, tasks=None) -> None:
    """Validate one YAML row ``[from, number, module, args]`` (index ``i`` over backbone + head)."""
    tasks = tasks or _tasks()
    prefix = f"{where}: layer {i}"
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise NeckConfigError(f"{prefix}: expected [from, number, module, args], got {row!r}")
    f, n, m, args = row
    if not isinstance(m, str):
        raise NeckConfigError(f"{prefix}: module must be a name, got {m!r}")
    prefix = f"{prefix} ({m})"
    if not isinstance(args, (list, tuple)):
        raise NeckConfigError(f"{prefix}: args must be a list, got {args!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise NeckConfigError(f"{prefix}: number of repeats must be an int >= 1, got {n!r}")
    if m.startswith("nn."):
        if not isinstance(getattr(nn, m[3:], None), type):
            raise NeckConfigError(f"{prefix}: torch.nn has no module '{m[3:]}'")
        return
    if m.startswith("torchvision.ops."):
        return
    spec = _BLOCKS.get(m)
    if spec is None:
        if m not in vars(tasks):
            close = difflib.get_close_matches(m, _known_names(tasks), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise NeckConfigError(
                f"{prefix}: unknown module '{m}'{hint} (yolo-necks blocks: {', '.join(sorted(_BLOCKS)) or 'none'})"
            )
        return
    _validate_block_args(spec, f, args, prefix)


def _validate_block_args(spec: BlockSpec, f, args, prefix: str) -> None:
    cls = spec.cls
    sig = inspect.signature(cls)
    params = list(sig.parameters.values())
    yaml_names = ["c2"] + [p.name for p in params[2:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    usage = f"expected args [{', '.join(yaml_names)}] (c1 is inferred from the 'from' layer)"
    if not isinstance(f, int) or isinstance(f, bool):
        raise NeckConfigError(f"{prefix}: takes one input, but 'from' is {f!r}; {usage}")
    if not args:
        raise NeckConfigError(f"{prefix}: missing output channels; {usage}")
    values = [_literal(a) for a in args]
    c2 = values[0]
    if not isinstance(c2, str) and (not isinstance(c2, int) or isinstance(c2, bool) or c2 < 1):
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


def validate_model_dict(d: dict, tasks=None) -> list:
    """Validate every row of a model dict before ultralytics' parser builds it; return the rows (backbone + head)."""
    tasks = tasks or _tasks()
    where = str(d.get("yaml_file") or "model YAML")
    rows = []
    for section in ("backbone", "head"):
        part = d.get(section)
        if part is None:
            continue
        if not isinstance(part, list):
            raise NeckConfigError(f"{where}: '{section}' must be a list of [from, number, module, args] rows")
        rows.extend(part)
    for i, row in enumerate(rows):
        validate_layer(i, row, where, tasks)
    return rows


def _with_layer(err: NeckConfigError, rows: list, d: dict) -> NeckConfigError:
    """Give a block-construction error the file and layer index of the YAML row that built it."""
    block = getattr(err, "block", None)
    if block is None:
        return err
    name, rest = block
    where = str(d.get("yaml_file") or "model YAML")
    for i, (_, _, m, args) in enumerate(rows):
        if m == name and tuple(_literal(a) for a in args[1:]) == rest:
            return NeckConfigError(f"{where}: layer {i} ({name}): {err}")
    return NeckConfigError(f"{where}: {name}: {err}")


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
