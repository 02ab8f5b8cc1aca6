"""Running an exported model, and checking it against PyTorch: the runners and the parity rule of
:mod:`yolo_necks.deploy` (which re-exports everything public here).

Runners
    :func:`load_runner` returns a :class:`Runner`: ``runner(x) -> list[np.ndarray]`` for an ONNX file (ONNX Runtime,
    ``CPUExecutionProvider``, ``intra_op_num_threads = threads``, no spin-waiting between calls), an OpenVINO folder
    (CPU plugin, ``INFERENCE_NUM_THREADS = threads``, fp32, latency hint, threads not pinned), a TensorRT engine
    (ultralytics' own ``AutoBackend`` on CUDA) or PyTorch weights (the fused eval model). ``x`` is a NumPy array or a
    CPU torch tensor (taken zero-copy), so a runner goes straight into :func:`yolo_necks.timing.time_interleaved`
    next to torch modules: the same rounds, the same input, the host-side outputs included in the time.

    OpenVINO's CPU plugin runs in bfloat16 by default on CPUs with native bf16 (AVX512-BF16, AMX); ultralytics'
    own OpenVINO backend keeps that default on x86 Linux. The runner pins fp32 (``INFERENCE_PRECISION_HINT=f32``):
    the comparison is fp32 against fp32, and the time is the fp32 time. ONNX Runtime's intra-op pool spins between
    calls by default (a busy core while other arms are timed); the runner turns spinning off, and OpenVINO's thread
    pinning too, so that a runtime does not take cores from the arms timed after it in the same round.

Parity
    :func:`parity` runs a fused fp32 eval copy of the PyTorch model and the runner on the same inputs and compares
    the head's output. The raw Detect output ``(N, 4 + nc + extra, anchors)`` is compared in parts, each against
    its own scale: boxes in pixels (scale: the largest box coordinate), then class scores and any further rows (scale
    1: probabilities). The NMS-free output of end-to-end heads (YOLO26 exported with ``nms=False``; which one a file
    holds is read from ultralytics' metadata in it) is ``(N, k, 6 + extra)`` rows sorted by score: scores are
    compared column-wise (a sorted list does not depend on the order of ties), boxes and class row by row, a row
    matching any row of the same class whose score is within the tolerance (near-ties may swap places), and a row
    whose score is within the tolerance of the k-th score may be one the other side ranked just out of its top k
    (only its score is compared).

    ``max_abs`` is the largest absolute difference, ``max_rel`` the largest difference of a part divided by that
    part's scale, and ``ok`` is ``max_rel <= PARITY_TOL`` with equal shapes and finite outputs. ``PARITY_TOL = 1e-3``,
    i.e. 1 px per 1000 px of box coordinate and 0.001 of a class probability, far below what changes a detection.
    In fp32 the runtimes differ from PyTorch only by summation order (oneDNN, ONNX Runtime's MLAS and OpenVINO's
    kernels sum convolutions in other orders). Measured on every shipped block (tests/test_deploy.py: nano models,
    64 px, weights conditioned so that features and logits stay O(1)): ``max_rel`` <= 1e-5 for static ONNX and
    OpenVINO (boxes within 3e-4 px), <= 6.3e-5 for dynamic ONNX at other batch sizes and shapes (7e-3 px): 16x
    below the tolerance at worst, 100x typically. Real errors land far above it: OpenVINO's default bf16 on this
    CPU gives 4.6e-2 to 6.4e-2 (2-4 px), the neck's output scaled by 1.1 gives 7.7e-2 and more.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import NeckConfigError

PARITY_TOL = 1e-3  # max difference relative to the output part's scale (see the module docstring)

__all__ = ["PARITY_TOL", "Parity", "Runner", "first_tensor", "load_runner", "parity", "sample_inputs",
           "torch_reference"]


def _version(dist: str) -> str:
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def _array(x) -> np.ndarray:
    """``x`` as a C-contiguous float32 NumPy array (a CPU float32 torch tensor without a copy)."""
    if not isinstance(x, np.ndarray):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        x = x.numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


@dataclass
class Runner:
    """A loaded exported model: ``runner(x) -> list[np.ndarray]`` (its outputs, in order, on the host).

    ``runtime`` names the runtime and ``version`` its version (``"onnxruntime 1.32.0"``); ``end2end`` whether the
    file holds the NMS-free head's output (from ultralytics' metadata); ``input_shape`` the static input shape, with
    ``None`` for dynamic dimensions.
    """

    fmt: str
    path: str
    threads: int
    runtime: str
    version: str
    call: object = field(repr=False)
    end2end: bool = False
    input_shape: tuple | None = None

    def __call__(self, x) -> list[np.ndarray]:
        return self.call(_array(x))


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _onnx_runner(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape)
    meta = session.get_modelmeta().custom_metadata_map

    def call(a: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {name: a})

    return Runner("onnx", str(path), threads, "onnxruntime", _version("onnxruntime"), call,
                  _truthy(meta.get("end2end", False)), shape)


def _openvino_runner(path: Path, threads: int) -> Runner:
    import openvino as ov

    xml = path if path.suffix == ".xml" else next(iter(sorted(path.glob("*.xml"))), None)
    if xml is None:
        raise NeckConfigError(f"load_runner: no OpenVINO .xml model in '{path}'")
    core = ov.Core()
    model = core.read_model(str(xml))
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
    supported = set(core.get_property("CPU", "SUPPORTED_PROPERTIES"))
    compiled = core.compile_model(model, "CPU", {k: v for k, v in config.items() if k in supported})
    request = compiled.create_infer_request()
    n_out = len(compiled.outputs)
    pshape = compiled.input(0).get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else None for d in pshape)
    end2end = False
    meta_file = xml.parent / "metadata.yaml"
    if meta_file.exists():
        import yaml

        end2end = _truthy((yaml.safe_load(meta_file.read_text()) or {}).get("end2end", False))

    def call(a: np.ndarray) -> list[np.ndarray]:
        request.infer({0: a})
        return [request.get_output_tensor(i).data.copy() for i in range(n_out)]  # buffers are reused per call

    return Runner("openvino", str(path), threads, "openvino", _version("openvino"), call, end2end, shape)


def _engine_runner(path: Path, threads: int) -> Runner:  # pragma: no cover - needs an NVIDIA GPU and TensorRT
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    backend = AutoBackend(str(path), device=torch.device("cuda:0"), fp16=False, verbose=False)
    end2end = bool(getattr(backend, "end2end", False) or (getattr(backend, "metadata", {}) or {}).get("end2end"))

    def call(a: np.ndarray) -> list[np.ndarray]:
        out = backend(torch.from_numpy(a).to("cuda:0"))
        out = out if isinstance(out, (list, tuple)) else [out]
        return [o.cpu().numpy() if hasattr(o, "cpu") else np.asarray(o) for o in out]  # waits for the GPU

    return Runner("engine", str(path), threads, "tensorrt", _version("tensorrt"), call, end2end, None)


def _torch_runner(path: Path, threads: int) -> Runner:
    import torch
    from ultralytics import YOLO

    net = torch_reference(YOLO(str(path)))
    end2end = bool(getattr(net, "end2end", False))

    def call(a: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [first_tensor(net(torch.from_numpy(a))).numpy()]

    return Runner("torch", str(path), threads, "torch", _version("torch"), call, end2end, None)


_LOADERS = {"onnx": _onnx_runner, "openvino": _openvino_runner, "engine": _engine_runner, "torch": _torch_runner}


def load_runner(path, fmt: str, threads: int = 1) -> Runner:
    """Load an exported model for inference on this machine; see the module docstring for each runtime's settings.

    Args:
        path: the ``.onnx`` file, the ``*_openvino_model/`` folder (or its ``.xml``), the ``.engine`` file, or ``.pt``
            weights for ``torch``: what :func:`yolo_necks.deploy.export` returned in ``ExportResult.path``.
        fmt: ``onnx``, ``openvino``, ``engine`` or ``torch``.
        threads: the runtime's intra-op threads (use the thread count torch is timed with).
    """
    loader = _LOADERS.get(str(fmt).lower())
    if loader is None:
        raise NeckConfigError(f"load_runner: unknown format '{fmt}' (known: {', '.join(_LOADERS)})")
    if int(threads) < 1:
        raise NeckConfigError(f"load_runner: threads must be >= 1, got {threads}")
    p = Path(path)
    if not p.exists():
        raise NeckConfigError(f"load_runner: '{path}' does not exist")
    return loader(p, int(threads))


# ------------------------------------------------------------------------------------------------------- parity
class Parity(NamedTuple):
    """How far a runtime's outputs are from PyTorch's: largest absolute and scale-relative difference, and whether
    it is within :data:`PARITY_TOL` (shapes equal, outputs finite)."""

    max_abs: float
    max_rel: float
    ok: bool


def torch_reference(model, end2end: bool | None = None):
    """A fused fp32 eval copy of ``model`` (a YOLO object or an ultralytics model): what the exporter traces.
    ``end2end`` selects the head's branch (the NMS-free one-to-one branch or the raw one-to-many one) where the head
    has both; None keeps the model's own choice."""
    import torch.nn as nn
    from ultralytics.engine.model import Model

    net = model.model if isinstance(model, Model) else model
    if not isinstance(net, nn.Module):
        raise NeckConfigError(f"parity: expected an ultralytics YOLO object or model, got {type(model).__name__}")
    net = copy.deepcopy(net).float().eval()
    if end2end is not None and hasattr(net, "end2end"):
        if end2end and not getattr(net.model[-1], "one2one_cv2", None) and not getattr(net, "end2end", False):
            raise NeckConfigError("parity: the runtime holds an NMS-free output but the PyTorch model has no "
                                  "one-to-one head (fused without it?)")
        net.end2end = end2end
    if hasattr(net, "fuse") and not (hasattr(net, "is_fused") and net.is_fused()):
        net = net.fuse(verbose=False)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def first_tensor(out):
    """The first tensor of a model's output (an eval Detect returns ``(y, raw preds)``)."""
    import torch

    while not isinstance(out, torch.Tensor):
        out = out[0]  # eval Detect: (y, raw preds); segment/pose: ((y, protos), ...)
    return out


def _head_nc(net) -> int | None:
    head = getattr(net, "model", [None])[-1] if hasattr(net, "model") else None
    nc = getattr(head, "nc", None)
    return int(nc) if isinstance(nc, int) else None


def _part_diffs(ref: np.ndarray, got: np.ndarray, nc: int | None) -> tuple[float, float]:
    """(max abs, max scale-relative) of the raw output ``(N, 4 + nc + extra, anchors)``: boxes, then the rest."""
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    if ref.ndim == 3 and nc is not None and ref.shape[1] >= 4 + nc:
        parts = [(slice(0, 4), None), (slice(4, None), 1.0)]
        rel = 0.0
        for sl, scale in parts:
            part = d[:, sl]
            if part.size:
                s = scale if scale is not None else max(1.0, float(np.abs(ref[:, sl]).max()))
                rel = max(rel, float(part.max()) / s)
        return float(d.max()) if d.size else 0.0, rel
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    m = float(d.max()) if d.size else 0.0
    return m, m / scale


def _end2end_diffs(ref: np.ndarray, got: np.ndarray, tol: float) -> tuple[float, float]:
    """(max abs, max scale-relative) of NMS-free outputs ``(N, k, 6 + extra)`` (see the module docstring)."""
    worst_abs = worst_rel = 0.0
    for r, g in zip(ref.astype(np.float64), got.astype(np.float64)):
        score_abs = float(np.abs(r[:, 4] - g[:, 4]).max()) if len(r) else 0.0
        box_scale = max(1.0, float(np.abs(r[:, :4]).max())) if len(r) else 1.0
        cutoff = r[-1, 4] if len(r) else 0.0
        box_abs = 0.0
        for i in range(len(g)):
            cand = (np.abs(r[:, 4] - g[i, 4]) <= tol) & (r[:, 5] == g[i, 5])
            cand[i] = cand[i] or r[i, 5] == g[i, 5]
            if not cand.any():
                if abs(g[i, 4] - cutoff) <= tol:  # may be ranked just outside the other side's top k
                    continue
                return math.inf, math.inf  # a class or a box that PyTorch does not have
            box_abs = max(box_abs, float(np.abs(r[cand, :4] - g[i, :4]).max(axis=1).min()))
        worst_abs = max(worst_abs, score_abs, box_abs)
        worst_rel = max(worst_rel, score_abs, box_abs / box_scale)
    return worst_abs, worst_rel


def parity(torch_model, runner, inputs, tol: float = PARITY_TOL) -> Parity:
    """Compare ``runner``'s first output with the PyTorch model's head output on each of ``inputs``.

    Args:
        torch_model: a YOLO object or ultralytics model (a fused fp32 eval copy is made, with the head branch the
            runner's file holds), or a module already prepared by :func:`torch_reference`.
        runner: a :class:`Runner` (or any ``callable(np.ndarray) -> list[np.ndarray]``).
        inputs: arrays or tensors ``(B, 3, H, W)`` in [0, 1] that the runner accepts (static exports: their shape).
        tol: the tolerance on ``max_rel`` (default :data:`PARITY_TOL`).

    Returns:
        ``Parity(max_abs, max_rel, ok)``; a shape mismatch gives ``(inf, inf, False)``, a NaN or infinity in either
        output ``(nan, nan, False)``.
    """
    import torch

    end2end = getattr(runner, "end2end", None)
    net = torch_reference(torch_model, end2end)
    nc = _head_nc(net)
    worst_abs = worst_rel = 0.0
    for x in inputs:
        a = _array(x)
        with torch.inference_mode():
            ref = first_tensor(net(torch.from_numpy(a.copy()))).numpy()
        got = np.asarray(runner(a)[0])
        e2e = bool(end2end) and ref.ndim == 3 and got.ndim == 3 and ref.shape[2] == got.shape[2] >= 6
        if e2e and ref.shape[1] > got.shape[1]:  # k = min(max_det, anchors); topk rows are sorted by score
            ref = ref[:, : got.shape[1]]
        if ref.shape != got.shape:
            return Parity(math.inf, math.inf, False)
        if not (np.isfinite(ref).all() and np.isfinite(got).all()):  # nothing to compare: never within tolerance
            return Parity(math.nan, math.nan, False)
        m_abs, m_rel = _end2end_diffs(ref, got, tol) if e2e else _part_diffs(ref, got, nc)
        worst_abs, worst_rel = max(worst_abs, m_abs), max(worst_rel, m_rel)
    return Parity(worst_abs, worst_rel, bool(worst_rel <= tol))


def sample_inputs(imgsz, batch: int = 1, n: int = 2, seed: int = 0) -> list[np.ndarray]:
    """``n`` reproducible random images ``(batch, 3, H, W)`` in [0, 1] (``imgsz``: an int or ``(H, W)``)."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    rng = np.random.default_rng(seed)
    return [rng.random((batch, 3, h, w), dtype=np.float32) for _ in range(n)]
