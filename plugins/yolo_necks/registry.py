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

``parse_model`` itself is wrapped to validate YAML rows before the stock parser sees them (:mod:`yolo_necks.validate`);
whatever the stock parser or the model's first forward pass still raises *because of the YAML* becomes the same kind of
one-line :class:`~yolo_necks.errors.NeckConfigError` (:mod:`yolo_necks.translate`), while failures of the machine
(network, disk, memory, CUDA) pass through with their own type. For that we also rely, best effort and without a
self-test (if they move, the errors just lose their layer index), on:

4. ``parse_model``'s loop variable ``i`` (the layer being built when it raised, read from the traceback);
5. ``_initialize_yolo_model(model, cfg, ch, nc, verbose)``, which ``DetectionModel`` and its relatives call to load
   the YAML and parse it, right before ``__init__`` runs the stride-computation forward pass when the last layer is a
   ``Detect`` (``SemanticSegment`` for ``SemanticSegmentationModel``). We wrap it to check the keys it reads before
   parsing, and give the model a one-shot ``forward`` for that pass (found through the ``model`` local of that call, so
   it also works for the first model of a process, built before :func:`register` wrapped anything).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from importlib import metadata

import torch.nn as nn

from .catalog import BLOCKS, ENTRY_POINT_GROUP, LOCK, RESERVED_ATTRS, BlockSpec, register_builtins, registered_blocks
from .errors import NeckConfigError, compat_error
from .translate import (guard_first_forward, is_environment_error, model_being_initialized, parse_error,
                        runs_stride_forward, with_layer)
from .validate import check_row_shape, check_sections, tasks_module, validate_model_dict, yaml_where

__all__ = ["register", "register_block", "registered_blocks", "unregister_block"]

_STATE = {"installed": False, "excepthook": None}


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
            raise err from e
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
    with LOCK:
        BLOCKS.pop(name, None)
        tasks = sys.modules.get("ultralytics.nn.tasks")
        if tasks is not None and _is_proxy(vars(tasks).get(name)):
            delattr(tasks, name)


def register(entry_points: bool = True) -> dict[str, type]:
    """Make every registered block resolvable by name in ultralytics model YAMLs. Idempotent.

    Installs the parser proxies and the ``parse_model`` wrapper, allow-lists our classes for
    ``ULTRALYTICS_SAFE_LOAD=1`` checkpoint loading, and loads third-party blocks from the ``yolo_necks.blocks``
    entry-point group.

    Raises:
        UltralyticsCompatError: the ultralytics internals this relies on are missing or changed.
    """
    with LOCK:
        register_builtins()
        if entry_points:
            _load_entry_points()
        if not _STATE["installed"]:
            _install(tasks_module())
            _STATE["installed"] = True
        _sync_proxies()
        _allow_safe_load()
    return registered_blocks()


# ------------------------------------------------------------------------------------------------------- internals
def _add(cls, name: str, source: str, replace: bool = False) -> None:
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise NeckConfigError(f"register_block: {cls!r} is not an nn.Module subclass")
    if not name.isidentifier():
        raise NeckConfigError(f"register_block: name '{name}' is not a valid identifier")
    for attr in RESERVED_ATTRS:
        if attr in vars(cls):
            raise NeckConfigError(
                f"register_block: {cls.__qualname__} defines attribute '{attr}', which ultralytics' parser "
                f"overwrites on every layer (reserved: {', '.join(RESERVED_ATTRS)})"
            )
    try:
        params = list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        params = []
    if len(params) < 2:
        raise NeckConfigError(f"register_block: {cls.__qualname__} must take (c1, c2, *args); signature has {params}")
    with LOCK:
        old = BLOCKS.get(name)
        if old is not None and old.cls is not cls and not replace:
            raise NeckConfigError(
                f"register_block: name '{name}' is already registered to {old.source}; pass replace=True to override"
            )
        tasks = sys.modules.get("ultralytics.nn.tasks")
        if tasks is not None:
            _check_not_builtin(tasks, name)
        BLOCKS[name] = BlockSpec(name, cls, source)
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


def _load_entry_points() -> None:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    for ep in eps:
        if ep.name in BLOCKS and BLOCKS[ep.name].source == f"entry point {ep.value}":
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
    tasks = tasks_module()
    for name, spec in BLOCKS.items():
        current = vars(tasks).get(name)
        if _is_proxy(current) and current._target is spec.cls:
            continue
        _check_not_builtin(tasks, name)
        setattr(tasks, name, _make_proxy(spec, tasks.Conv))
    for name, obj in list(vars(tasks).items()):  # drop proxies of unregistered blocks
        if _is_proxy(obj) and name not in BLOCKS:
            delattr(tasks, name)


def _allow_safe_load() -> None:
    """Allow-list our classes for ``torch.load(weights_only=True)`` (``ULTRALYTICS_SAFE_LOAD=1``)."""
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4: ultralytics' restricted loading degrades to a standard load
        return
    classes = [spec.cls for spec in BLOCKS.values()]
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
        raise compat_error(f"ultralytics.nn.tasks has no {', '.join(missing)}")
    try:
        params = list(inspect.signature(parse_model).parameters)
    except (TypeError, ValueError):
        params = []
    if params[:3] != ["d", "ch", "verbose"]:
        raise compat_error(f"parse_model signature changed to ({', '.join(params)}), expected (d, ch, verbose)")
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
                raise with_layer(e, rows, d) from e.__cause__ or e
            if is_environment_error(e):  # the network, the disk, memory, CUDA: not the YAML's fault
                raise
            raise parse_error(e, rows, d, parse_model.__code__, tasks) from e
        _fix_repeats(model)
        target = model_being_initialized(init_code)
        if target is not None and runs_stride_forward(target, model, tasks):
            guard_first_forward(target, rows, yaml_where(d))
        return model, save

    parse_model_with_necks._yolo_necks_wrapper = True
    parse_model_with_necks.__wrapped__ = parse_model
    parse_model_with_necks.__doc__ = parse_model.__doc__
    tasks.parse_model = parse_model_with_necks
    if _init_signature_ok(initialize):
        tasks._initialize_yolo_model = _wrap_initialize(initialize, tasks)
    safe_load = _original(tasks, "torch_safe_load")
    if safe_load is not None:  # the allow-list is in place now: the lazy hook is no longer needed
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
        if not all(hasattr(probe, a) for a in RESERVED_ATTRS):
            problems.append("parser no longer attaches i/f/type/np to layers")
    except Exception as e:
        problems = [f"self-test parse failed ({type(e).__name__}: {e})"]
    finally:
        delattr(tasks, name)
    if problems:
        raise compat_error("parse_model internals changed: " + "; ".join(problems))


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



def _init_signature_ok(initialize) -> bool:
    try:
        return list(inspect.signature(initialize).parameters)[:5] == ["model", "cfg", "ch", "nc", "verbose"]
    except (TypeError, ValueError):
        return False


def _wrap_initialize(initialize, tasks):
    """Wrap ``_initialize_yolo_model``: it reads ``backbone[0][2]`` and ``nc`` before the parse, and ``nc`` after."""

    def initialize_with_necks(model, cfg, ch, nc, verbose, *args, **kwargs):
        d = cfg if isinstance(cfg, dict) else tasks.yaml_model_load(cfg)
        where = yaml_where(d)
        rows = check_sections(d, where)
        check_row_shape(0, rows[0], where)
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

