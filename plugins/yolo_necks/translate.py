"""Failures past the validation, translated into one-line errors: only what the YAML caused.

The stock parser and the model's first forward pass (ultralytics' stride computation) can still fail for a YAML the
validation let through: a module constructor rejects its args, a ``Concat`` gets maps of different sizes, a block is
fed the wrong channels. Those become a :class:`~yolo_necks.errors.NeckConfigError` naming the file, the layer and the
module, with the original exception chained (``__cause__``). Failures the YAML did not cause keep their own type and
message, unchanged (:func:`is_environment_error`): a download that fails (``URLError``, ``ConnectionError``,
``TimeoutError``), a missing weights file or a full disk (any ``OSError``), ``MemoryError``, CUDA errors, an optional
dependency that does not import; ``KeyboardInterrupt`` and ``SystemExit`` are never caught.
"""

from __future__ import annotations

import sys

import torch.nn as nn

from .catalog import BLOCKS, block_usage
from .errors import NeckConfigError
from .validate import builtin_usage, is_int, literal, resolve_module, yaml_where

# substrings of the RuntimeError messages of CUDA/cuDNN/cuBLAS failures (torch raises plain RuntimeErrors for them)
_DEVICE_ERROR_MARKS = ("CUDA error", "CUDA out of memory", "CUDNN_STATUS", "cuDNN error", "CUBLAS_STATUS",
                       "NCCL error", "MPS backend out of memory", "HIP error")


def is_environment_error(e: BaseException) -> bool:
    """Whether ``e`` came from the machine rather than the YAML: it must pass through untranslated."""
    if isinstance(e, (OSError, MemoryError, ImportError)) or not isinstance(e, Exception):
        return True
    import torch

    for name in ("OutOfMemoryError", "AcceleratorError"):  # torch's own types, where this torch has them
        cls = getattr(torch, name, None) or getattr(torch.cuda, name, None)
        if isinstance(cls, type) and isinstance(e, cls):
            return True
    return isinstance(e, RuntimeError) and any(mark in str(e) for mark in _DEVICE_ERROR_MARKS)


def with_layer(err: NeckConfigError, rows: list, d: dict) -> NeckConfigError:
    """Give a block-construction error the file and layer index of the YAML row that built it (raise the result
    ``from err.__cause__``: the block's own exception stays chained)."""
    block = getattr(err, "block", None)
    if block is None:
        return err
    name, rest = block
    where = yaml_where(d)
    for i, (_, _, m, args) in enumerate(rows):
        if m == name and tuple(literal(a) for a in args[1:]) == rest:
            return NeckConfigError(f"{where}: layer {i} ({name}): {err}")
    return NeckConfigError(f"{where}: {name}: {err}")


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


def parse_error(e: Exception, rows: list, d: dict, parse_code, tasks) -> NeckConfigError:
    """Turn a raw exception of the stock parser into a one-line error naming the layer it was building.

    What the validation cannot know (the keyword set of every built-in module, which modules take several inputs)
    the module constructors find out; the parser's loop variable ``i`` tells which row it was.
    """
    where = yaml_where(d)
    reason = f"{type(e).__name__}: {_first_line(e)}"
    i = _frame_local(e.__traceback__, parse_code, "i")
    if not is_int(i) or not 0 <= i < len(rows):
        act = d.get("activation")
        if act:  # before its layer loop the parser only evaluates the activation (the rest is validated)
            return NeckConfigError(
                f"{where}: 'activation' {act!r} does not build ({reason}); expected a torch.nn module call such as "
                "'nn.ReLU()' or 'nn.LeakyReLU(0.1)'"
            )
        return NeckConfigError(f"{where}: the model does not build ({reason})")
    f, _, m, _ = rows[i]
    cls = resolve_module(m, tasks)
    spec = BLOCKS.get(m)
    usage = block_usage(spec) if spec is not None else builtin_usage(cls) if cls is not None else ""
    if isinstance(e, TypeError) and isinstance(f, list) and "indices must be integers" in str(e):
        what = f"takes one input, but 'from' is {f!r}"
    elif isinstance(e, TypeError) and is_int(f) and "not iterable" in str(e):
        what = f"takes several inputs, but 'from' is {f!r}; expected a list of layer indices such as [-1, 6]"
    else:
        what = f"does not build from these args ({reason})"
    return NeckConfigError(f"{where}: layer {i} ({m}): {what}" + (f"; {usage}" if usage else ""))


def model_being_initialized(init_code):
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


def runs_stride_forward(model, layers: nn.Sequential, tasks) -> bool:
    """Whether the model's ``__init__`` runs its stride-computation forward pass once the parse returns."""
    last = layers[-1] if len(layers) else None
    for model_class, head_class in (("DetectionModel", "Detect"), ("SemanticSegmentationModel", "SemanticSegment")):
        model_cls, head_cls = getattr(tasks, model_class, None), getattr(tasks, head_class, None)
        if model_cls and head_cls and isinstance(model, model_cls) and isinstance(last, head_cls):
            return True
    return False


def guard_first_forward(model: nn.Module, rows: list, where: str) -> None:
    """Give ``model`` a one-shot ``forward`` that turns a failure of its first pass into a one-line error.

    That pass is ultralytics' stride computation in ``__init__``: a YAML whose layers parse but do not fit together
    (a ``Concat`` of different sizes, a block fed the wrong channels) fails only there. The instance attribute shadows
    the class's ``forward`` for that single call and removes itself first, so nothing of it outlives ``__init__`` (it
    is only set when :func:`runs_stride_forward` says that call comes) and a valid model runs exactly as before.
    """
    if "forward" in vars(model):
        return

    def first_forward(*args, **kwargs):
        vars(model).pop("forward", None)
        try:
            return model.forward(*args, **kwargs)
        except Exception as e:
            if is_environment_error(e):
                raise
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
    if not is_int(i) or not 0 <= i < len(rows):
        return NeckConfigError(f"{where}: the model's first forward pass (a {image} image) failed ({reason})")
    m, f = rows[i][2], rows[i][0]
    return NeckConfigError(
        f"{where}: layer {i} ({m}): forward pass failed on input {_shapes(seen['inputs'])} from 'from' {f!r} "
        f"({reason}); its args and the outputs of the layers it reads must fit together (stride check, {image} image)"
    )

