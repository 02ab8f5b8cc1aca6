"""Devices, dtypes and builds for timing: the device a speed measurement runs on, its human-readable name, the torch
build, and the fused eval-mode copy of a model that is timed (conv + batch-norm folded, as ultralytics deploys it).
The timing of a sweep's arms itself is :mod:`.arm_speed`."""

from __future__ import annotations

import copy
import platform

import torch


def torch_device(device: str) -> torch.device:
    """Ultralytics device string ('cpu', '0', '0,1', 'cuda:1', 'mps') -> the torch device timing runs on."""
    text = str(device).strip().lower()
    if text in ("", "cpu"):
        return torch.device("cpu")
    first = text.split(",")[0].strip()
    if first.isdigit():
        return torch.device(f"cuda:{first}")
    return torch.device(first)


def device_name(device: torch.device, threads: bool = True) -> str:
    """Human-readable name of a device: the GPU model, or the CPU model (with torch's current thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            from ultralytics.utils.torch_utils import get_cpu_info

            cpu = get_cpu_info()
        except Exception:  # pragma: no cover - depends on the platform
            cpu = platform.processor() or platform.machine()
        if not threads:
            return cpu
        n = torch.get_num_threads()
        return f"{cpu} ({n} thread{'s' if n != 1 else ''})"
    return device.type


def torch_build() -> str:
    """What besides the version makes a torch build compute differently: its CUDA and cuDNN versions, or a CPU-only
    build, and the CPU kernel libraries it carries (``2.14.1+cu130, CUDA 13.0, cuDNN 91300, MKL, oneDNN``)."""
    parts = [torch.__version__]
    if torch.version.cuda:
        parts.append(f"CUDA {torch.version.cuda}")
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        parts += [f"cuDNN {cudnn}"] if cudnn else []
    else:
        parts.append("CPU-only")
    parts += [name for name, ok in (("MKL", torch.backends.mkl.is_available()),
                                    ("oneDNN", torch.backends.mkldnn.is_available())) if ok]
    return ", ".join(parts)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "fp16" or (dtype == "auto" and device.type == "cuda"):
        return torch.float16
    return torch.float32


def prepare(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A fused, eval-mode copy of ``model`` on ``device`` in ``dtype`` (the original is left untouched)."""
    from ultralytics.nn.tasks import BaseModel

    net = copy.deepcopy(model).float()
    if isinstance(net, BaseModel):
        net = net.fuse(verbose=False)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device=device, dtype=dtype).eval()
