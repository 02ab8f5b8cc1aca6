"""Deployment formats: a model exported with ultralytics' own exporter, run in ONNX Runtime or OpenVINO (or
TensorRT on a GPU), compared with PyTorch, and timed like a torch module.

::

    from yolo_necks import deploy
    deploy.check_formats(["torch", "onnx", "openvino"])       # one NeckConfigError line when a runtime is missing
    res = deploy.export("best.pt", "onnx", imgsz=640)         # ExportResult: path, export_s, or a one-line reason
    run = deploy.load_runner(res.path, "onnx", threads=2)     # run(x) -> list[np.ndarray]; run.version
    deploy.parity(model, run, deploy.sample_inputs(640))      # Parity(max_abs, max_rel, ok), ok: max_rel <= 1e-3
    timing.time_interleaved({"torch": net, "onnx": run}, x, warmup, repeats, budget)   # a runner takes tensors too

Formats (:data:`FORMATS`): ``torch`` (the model itself), ``onnx`` and ``openvino`` (the ``deploy`` extra:
``pip install "yolo-necks[deploy]"``), ``engine`` (TensorRT: an NVIDIA GPU and ``pip install tensorrt-cu12`` or the
wheel matching its CUDA; not part of the extra). Every export goes through ultralytics' ``Exporter`` exactly as
``YOLO(...).export(format=..., imgsz=..., dynamic=..., device=...)`` calls it: it fuses Conv+BatchNorm, traces an
fp32 eval copy (``torch.onnx.export`` with ``dynamo=False`` at ultralytics' opset and onnxslim for ONNX, TorchScript
into ``openvino.convert_model`` for OpenVINO, ONNX then the TensorRT builder for engines) and writes its metadata.
``dynamic=True`` makes batch, height and width dynamic (ONNX, OpenVINO, TensorRT). Models whose head has an
end-to-end (NMS-free) branch, such as YOLO26, are exported with that branch (``nms=False``: output ``(N, k, 6)``
boxes, score, class) unless ``end2end=False`` asks for the raw one-to-many output ultralytics exports by default.

A failed export is a result, not an exception: :class:`ExportResult` with ``ok`` False, a one-line ``reason``, the
failing operator where the message names one (``Exporting the operator 'aten::cummax' to ONNX opset version 18 is
not supported`` -> ``aten::cummax``; OpenVINO's ``No conversion rule found for operations: aten::i0`` -> ``aten::i0``)
and the layer and block that call it (from the traced graph's scopes). Failures of the machine (memory, the disk,
CUDA, a missing module) keep their own type (:func:`yolo_necks.translate.is_environment_error`).

Modules: ``exporting`` (the format table, :func:`check_formats`, :func:`export`), ``runtime`` (the runners and the
parity rule: :data:`PARITY_TOL`, its measurement and why), ``bench`` (``yolo-necks bench --formats``).
"""

from .exporting import (ALIASES, EXTRA_HINT, FORMATS, ExportResult, Format, check_formats, export, failing_op,
                        failure_line)
from .runtime import PARITY_TOL, Parity, Runner, first_tensor, load_runner, parity, sample_inputs, torch_reference

__all__ = ["ALIASES", "EXTRA_HINT", "FORMATS", "PARITY_TOL", "ExportResult", "Format", "Parity", "Runner",
           "check_formats", "export", "failing_op", "failure_line", "first_tensor", "load_runner", "parity",
           "sample_inputs", "torch_reference"]
