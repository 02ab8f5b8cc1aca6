"""The format table, :func:`check_formats` and :func:`export` of :mod:`yolo_necks.deploy`: a model through
ultralytics' own exporter, and a failure caused by the model as a one-line result naming the operator and the block
(see the package docstring)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NeckConfigError
from ..threads import threads_held
from .runtime import first_tensor, torch_reference

__all__ = ["ALIASES", "EXTRA_HINT", "FORMATS", "ExportResult", "Format", "check_formats", "export", "failing_op",
           "failure_line"]

EXTRA_HINT = 'pip install "yolo-necks[deploy]"'


@dataclass(frozen=True)
class Format:
    """A deployment format: the name ultralytics' exporter takes, the Python modules exporting and running it need,
    how to install them, the suffix of what the exporter writes, and the runtime that runs it."""

    name: str
    export_format: str | None  # ultralytics' `format=`; None: the PyTorch model itself
    modules: tuple[str, ...]
    install: str
    suffix: str
    runtime: str
    needs_cuda: bool = False


FORMATS: dict[str, Format] = {
    "torch": Format("torch", None, (), "", ".pt", "torch"),
    "onnx": Format("onnx", "onnx", ("onnx", "onnxslim", "onnxruntime"), EXTRA_HINT, ".onnx", "onnxruntime"),
    "openvino": Format("openvino", "openvino", ("openvino",), EXTRA_HINT, "_openvino_model", "openvino"),
    "engine": Format("engine", "engine", ("onnx", "onnxslim", "tensorrt"),
                     EXTRA_HINT + " plus the TensorRT wheel of the GPU's CUDA (e.g. pip install tensorrt-cu12)",
                     ".engine", "tensorrt", needs_cuda=True),
}
ALIASES = {"pytorch": "torch", "pt": "torch", "ov": "openvino", "tensorrt": "engine", "trt": "engine"}


def _find_spec(name: str):
    return importlib.util.find_spec(name)


def check_formats(formats) -> list[str]:
    """The formats, normalised (lower case, aliases resolved, duplicates dropped, order kept), after checking that
    each is known and that its modules are installed (and CUDA present for ``engine``).

    ``formats``: a list or a comma-separated string. Raises :class:`NeckConfigError` with one line naming the
    unknown format, or the missing module and what to install.
    """
    items = [v.strip() for v in formats.split(",")] if isinstance(formats, str) else [str(v).strip() for v in formats]
    out: list[str] = []
    for item in items:
        if not item:
            continue
        name = ALIASES.get(item.lower(), item.lower())
        fmt = FORMATS.get(name)
        if fmt is None:
            raise NeckConfigError(f"unknown deployment format '{item}' (known: {', '.join(FORMATS)})")
        for module in fmt.modules:
            if _find_spec(module) is None:
                raise NeckConfigError(f"format '{name}' needs the Python module '{module}', which is not installed: "
                                      f"{fmt.install}")
        if fmt.needs_cuda:
            import torch

            if not torch.cuda.is_available():
                raise NeckConfigError(f"format '{name}' (TensorRT) needs an NVIDIA GPU with CUDA; none is available")
        if name not in out:
            out.append(name)
    if not out:
        raise NeckConfigError("no deployment format given (known: " + ", ".join(FORMATS) + ")")
    return out


@dataclass
class ExportResult:
    """What exporting one model to one format gave.

    ``path``: the exported file (``.onnx``, ``.engine``) or folder (``*_openvino_model/``), None on failure;
    ``export_s``: wall seconds of ultralytics' exporter, a failed one included (0 for ``torch``); ``reason``: one
    line when it failed ("" otherwise); ``op``: the failing operator where the message names it; ``layer`` and
    ``block``: the module path (``model.9``) and class of the layer that calls that operator, found in a trace of
    the model; ``end2end``: whether the file holds the NMS-free head's output.
    """

    fmt: str
    path: str | None
    export_s: float
    imgsz: tuple[int, int]
    dynamic: bool = False
    end2end: bool = False
    reason: str = ""
    op: str = ""
    layer: str = ""
    block: str = ""

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.reason

    def line(self) -> str:
        """``format: block (layer): op: reason`` in one line, for reports (empty when it worked)."""
        if self.ok:
            return ""
        where = f"{self.block} ({self.layer})" if self.block else self.layer
        parts = [self.fmt + (" dynamic" if self.dynamic else ""), where, self.op, self.reason]
        return ": ".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------- the failing op
_OP_PATTERNS = (
    re.compile(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version \d+ is not supported"),
    re.compile(r"No conversion rule found for operations:\s*([\w:.]+)"),
    re.compile(r"--\s*([\w.]+::[\w.]+) with a message"),
    re.compile(r"Could not find an implementation for (\w+)\(\d+\) node"),
    re.compile(r"running (\w+) node\. Name:"),
    re.compile(r"\b((?:aten|prim|onnx|quantized|torchvision)::\w+)"),
)


def failing_op(e: BaseException | str) -> str:
    """The operator an export or runtime error names (``aten::cummax``, ``Einsum``), or "" if it names none."""
    text = e if isinstance(e, str) else f"{e}\n{e.__cause__ or ''}"
    for pattern in _OP_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return ""


def _layer_from_scope(scope: str) -> str:
    """A traced node's scope (``__module.m.model.9/__module.m.model.9.cv``) -> its module path (``m.model.9.cv``)."""
    return scope.rstrip("/").split("/")[-1].replace("__module.", "").strip(". ") if scope else ""


def _block_at(net, layer: str) -> tuple[str, str]:
    """(``model.9``, class name) of the top-level layer of ``net`` that ``layer`` (a module path) lies in."""
    m = re.search(r"(?:^|\.)model\.(\d+)(?:\.|$)", layer)
    if m is None:
        return layer, ""
    top = f"model.{m.group(1)}"
    try:
        return top, type(net.get_submodule(top)).__name__
    except AttributeError:
        return top, ""


def _locate(net, imgsz: tuple[int, int], op: str) -> tuple[str, str]:
    """The layer and block calling the TorchScript operator ``op`` (``aten::cummax``), from a trace of ``net``."""
    layer = ""
    if "::" in op:
        import torch

        from ..translate import is_environment_error

        class _Output(torch.nn.Module):  # the head's tensor only (an eval Detect also returns a dict)
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return first_tensor(self.m(x))

        try:
            ref = torch_reference(net)
            with torch.no_grad(), _quiet_warnings():
                traced = torch.jit.trace(_Output(ref), torch.zeros(1, 3, *imgsz), strict=False, check_trace=False)
            for node in traced.inlined_graph.nodes():
                if node.kind() == op:
                    layer = _layer_from_scope(node.scopeName())
                    break
        except Exception as e:  # locating is a courtesy: the op is already named
            if is_environment_error(e):
                raise
    return _block_at(net, layer) if layer else ("", "")


@contextlib.contextmanager
def _quiet_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _log_level(verbose: bool):
    """ultralytics' LOGGER at WARNING while exporting, unless ``verbose`` (a sweep exports many arms)."""
    from ultralytics.utils import LOGGER

    old = LOGGER.level
    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(old)


# -------------------------------------------------------------------------------------------------------- export
def _load(model_or_weights):
    """(ultralytics model, exporter overrides, callbacks) from a YOLO object, a model or a weights/YAML path."""
    import torch.nn as nn

    if isinstance(model_or_weights, (str, Path)):
        from ultralytics import YOLO

        model_or_weights = YOLO(str(model_or_weights))
    from ultralytics.engine.model import Model

    if isinstance(model_or_weights, nn.Module) and not isinstance(model_or_weights, Model):
        return model_or_weights, {"task": getattr(model_or_weights, "task", "detect")}, None
    net = getattr(model_or_weights, "model", None)
    if not isinstance(model_or_weights, Model) or not isinstance(net, nn.Module):
        raise NeckConfigError(f"export: expected a YOLO object, an ultralytics model or a weights path, got "
                              f"{type(model_or_weights).__name__}")
    return net, dict(getattr(model_or_weights, "overrides", {}) or {}), getattr(model_or_weights, "callbacks", None)


def _imgsz(imgsz) -> tuple[int, int]:
    try:
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[-1]))
    except (TypeError, ValueError, IndexError):
        raise NeckConfigError(f"export: imgsz must be an int or (H, W), got {imgsz!r}") from None
    if h < 1 or w < 1:
        raise NeckConfigError(f"export: imgsz must be positive, got {imgsz!r}")
    return int(h), int(w)


def export(model_or_weights, fmt: str, imgsz=640, dynamic: bool = False, out_dir=None, *, simplify: bool = True,
           end2end: bool | None = None, batch: int = 1, opset: int | None = None,
           verbose: bool = False) -> ExportResult:
    """Export one model to one format with ultralytics' exporter; a failure caused by the model is a result.

    Args:
        model_or_weights: a YOLO object, an ultralytics model (``YOLO(...).model``) or a ``.pt``/YAML path.
        fmt: a name of :data:`FORMATS` (checked with :func:`check_formats`).
        imgsz: the static input size (int or ``(H, W)``); with ``dynamic`` the size traced at.
        dynamic: dynamic batch, height and width.
        out_dir: where the file goes (default: next to the weights, or the working directory for a YAML-built
            model, as ultralytics does); named after the model, with ``-dynamic`` for a dynamic export.
        simplify: onnxslim the ONNX graph (ultralytics' default).
        end2end: the NMS-free head where the model has one (None: yes), else the raw output.
        batch: the static batch size.
        opset: the ONNX opset (None: ultralytics' choice for this torch).
        verbose: let ultralytics log at INFO while exporting.

    Returns:
        :class:`ExportResult`. ``torch`` exports nothing: ``path`` is the weights path given (or None).
    """
    name = check_formats([fmt])[0]
    size = _imgsz(imgsz)
    if name == "torch":
        path = str(model_or_weights) if isinstance(model_or_weights, (str, Path)) else None
        return ExportResult("torch", path, 0.0, size, dynamic, bool(end2end))
    net, overrides, callbacks = _load(model_or_weights)
    head = getattr(net, "model", [None])[-1] if hasattr(net, "model") else None
    has_e2e = getattr(head, "one2one_cv2", None) is not None or bool(getattr(net, "end2end", False))
    nms = False if (has_e2e and end2end is not False) else None
    args = {**overrides, "format": FORMATS[name].export_format, "imgsz": list(size), "batch": int(batch),
            "dynamic": bool(dynamic), "simplify": bool(simplify), "opset": opset, "nms": nms, "data": None,
            "device": "0" if FORMATS[name].needs_cuda else "cpu", "verbose": bool(verbose), "mode": "export"}
    old = getattr(net, "pt_path", None)
    if out_dir is not None:
        yaml_file = getattr(net, "yaml_file", None) or (getattr(net, "yaml", None) or {}).get("yaml_file", "")
        stem = Path(old or yaml_file or "model").stem
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        net.pt_path = str(Path(out_dir) / f"{stem}{'-dynamic' if dynamic else ''}.pt")
    elif dynamic and old:
        net.pt_path = str(Path(old).with_name(f"{Path(old).stem}-dynamic.pt"))
    from ultralytics.engine.exporter import Exporter

    from ..translate import is_environment_error

    import torch

    t0 = time.perf_counter()
    try:  # the exporter sets ultralytics' own thread count: the caller's holds through it and after it
        with _log_level(verbose), threads_held(torch.get_num_threads()):
            path = Exporter(overrides=args, _callbacks=callbacks)(model=net)
        return ExportResult(name, str(path), time.perf_counter() - t0, size, bool(dynamic), nms is False)
    except Exception as e:
        if is_environment_error(e):
            raise
        seconds = time.perf_counter() - t0
        op = failing_op(e)
        layer, block = _locate(net, size, op)
        reason = failure_line(e)
        return ExportResult(name, None, seconds, size, bool(dynamic), nms is False, reason, op, layer, block)
    finally:
        if out_dir is not None or (dynamic and old):
            if old is None:
                with contextlib.suppress(AttributeError):
                    del net.pt_path
            else:
                net.pt_path = old


_NOISE = (re.compile(r"Check '[^']*' failed at \S+:\d+:\s*"), re.compile(r"FrontEnd API failed with \w+:\s*"),
          re.compile(r"\s*Please feel free to request support.*$"))


def failure_line(e: BaseException) -> str:
    """``Type: message`` in one line of at most 300 characters, without the traced graph torch appends to an
    unsupported-operator error, OpenVINO's source locations, or requests to file issues."""
    text = str(e).split("Torch IR graph at exception", 1)[0]
    text = " ".join(text.split())
    for pattern in _NOISE:
        text = pattern.sub("", text)
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
