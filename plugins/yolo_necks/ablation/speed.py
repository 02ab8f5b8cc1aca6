"""Speed of a trained arm, measured the same way for every run.

The model is a fused copy (conv + batch-norm folded, as ultralytics deploys it) in eval mode; one forward pass is
timed, without pre-processing or NMS. Latency is batch 1: the median and p90 of ``repeats`` (>= 100) passes after
``warmup`` untimed ones, each synchronised on CUDA (:func:`yolo_necks.timing.measure`). Throughput is images per
second at ``throughput_batch``. fp16 on CUDA and fp32 on CPU unless the spec says otherwise. Every setting that
shapes the numbers is returned with them and lands in ``results.csv``.
"""

from __future__ import annotations

import copy
import platform

import torch

from ..timing import measure
from .spec import SpeedSettings

SPEED_COLUMNS = (
    "latency_ms", "latency_p90_ms", "latency_std_ms", "throughput_ips", "speed_device", "speed_device_name",
    "speed_dtype", "speed_repeats", "speed_warmup", "throughput_batch", "throughput_repeats", "speed_threads",
)  # fmt: skip


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


def measure_speed(model: torch.nn.Module, imgsz: int, settings: SpeedSettings, device: str) -> dict:
    """Latency (batch 1) and throughput of ``model`` at ``imgsz``; returns the speed columns of a results row."""
    dev = torch_device(settings.device or device)
    dtype = resolve_dtype(settings.dtype, dev)
    if dev.type == "cpu" and dtype == torch.float16:
        raise ValueError("speed.dtype fp16 is not supported on the CPU")
    net = prepare(model, dev, dtype)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.rand(1, 3, imgsz, imgsz, generator=gen).to(device=dev, dtype=dtype)
    lat = measure(net, x1, warmup=settings.warmup, repeats=settings.repeats)
    del x1
    throughput = float("nan")
    try:
        xb = torch.rand(settings.throughput_batch, 3, imgsz, imgsz, generator=gen).to(device=dev, dtype=dtype)
        tp = measure(net, xb, warmup=max(1, min(settings.warmup, 5)), repeats=settings.throughput_repeats)
        throughput = tp.throughput_ips
        del xb
    except torch.OutOfMemoryError:  # a too-large throughput batch must not fail a trained run
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"ablate: throughput batch {settings.throughput_batch} out of memory; throughput not measured")
    finally:
        del net
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "latency_ms": lat.median_ms,
        "latency_p90_ms": lat.p90_ms,
        "latency_std_ms": lat.std_ms,
        "throughput_ips": throughput,
        "speed_device": str(dev),
        "speed_device_name": device_name(dev),
        "speed_dtype": "fp16" if dtype == torch.float16 else "fp32",
        "speed_repeats": settings.repeats,
        "speed_warmup": settings.warmup,
        "throughput_batch": settings.throughput_batch,
        "throughput_repeats": settings.throughput_repeats,
        "speed_threads": torch.get_num_threads() if dev.type == "cpu" else "",
    }
