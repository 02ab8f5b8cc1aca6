"""Speed measured where it can be compared: every arm timed once per sweep, interleaved with the others.

Latency belongs to an architecture, not to a seed's weights, so a run does not time itself. Once the sweep's runs
are trained (and again when a resumed or adaptive sweep changes the arms), the sweep process times *every* arm in one
session on one device of the sweep host (``speed.device``, else the sweep's device), with nothing else of the sweep
running: each arm's model is built from its YAML (weights initialised from seed 0), fused (conv + batch-norm folded,
as ultralytics deploys it) and put in eval mode, and the arms are timed round-robin, one forward pass each per round,
over ``speed.repeats`` rounds after ``speed.warmup`` untimed passes (:func:`yolo_necks.timing.time_interleaved`, as
``yolo-necks bench`` does), batch 1, no pre-processing or NMS; throughput at ``throughput_batch`` the same way.

Per arm the session records the median and p90 over rounds, the spread (SD over rounds), throughput, and its Δ to
the baseline from the per-round paired differences (rounds are paired: the arms ran next to each other), with a
paired-t interval. It also records what the timing got: on a CPU, the share of its thread budget the timing process
actually used (process CPU time / wall / threads; a starved timing, under 90%, is flagged in the summary, never
averaged in silently); on CUDA, how many other processes used the GPU. Sessions go to ``speed.csv`` in the sweep
folder (one row per arm and session); the summary takes each arm's latest.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import time

import torch

from ..records.timings import timing_key
from .speed import device_name, prepare, resolve_dtype, torch_build, torch_device

MIN_SHARE = 0.9  # a timing that got less of its thread budget than this is flagged as starved

def _other_gpu_processes(device: torch.device) -> str:
    """Processes other than this one on the timing GPU ('' when it cannot be told: no NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        return str(sum(p.pid != os.getpid() for p in procs))
    except Exception:
        return ""


def _build(model) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)  # the weights' values do not shape the latency; their initialisation is fixed anyway
    d = {**model.model_dict, "yaml_file": model.file_name}
    return DetectionModel(d, ch=3, nc=d.get("nc"), verbose=False)


def time_arms(models: list, spec, threads: int | None = None) -> tuple[list[dict], dict[str, list[float]]]:
    """Time every arm of ``models`` in one interleaved session; return one ``speed.csv`` row per arm (its Δ to the
    baseline is added by the analysis, :func:`~yolo_necks.ablation.analyse.stats.latency_deltas`) and each arm's
    per-round times in ms."""
    settings = spec.speed
    dev = torch_device(settings.device or spec.device)
    dtype = resolve_dtype(settings.dtype, dev)
    if dev.type == "cpu" and dtype == torch.float16:
        raise ValueError("speed.dtype fp16 is not supported on the CPU")
    saved_threads = torch.get_num_threads()
    if threads and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        nets = {m.arm.name: prepare(_build(m), dev, dtype) for m in models}
        gen = torch.Generator().manual_seed(0)
        x1 = torch.rand(1, 3, spec.imgsz, spec.imgsz, generator=gen).to(device=dev, dtype=dtype)
        rounds: dict[str, list[float]] = {}
        used = torch.get_num_threads() if dev.type == "cpu" else 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        latency = _interleaved(nets, x1, settings.warmup, settings.repeats, rounds)
        share = (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0) / max(1, used)
        throughput = _throughput(nets, spec, dev, dtype, gen)
        others = _other_gpu_processes(dev) if dev.type == "cuda" else ""
    finally:
        torch.set_num_threads(saved_threads)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    base = next((m.arm.name for m in models if m.arm.baseline), None)
    session = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for m in models:
        name, lat = m.arm.name, latency[m.arm.name]
        rows.append({
            "session": session, "timed_at": session, "host": socket.gethostname(), "arm": name,
            "block": m.arm.label, "placement": m.placement, "model_yaml": m.file_name, "imgsz": spec.imgsz,
            "latency_ms": lat.median_ms, "latency_p90_ms": lat.p90_ms, "latency_std_ms": lat.std_ms,
            "latency_min_ms": lat.min_ms, "rounds": lat.repeats, "warmup": settings.warmup,
            "throughput_ips": throughput.get(name, math.nan), "throughput_batch": settings.throughput_batch,
            "throughput_rounds": settings.throughput_repeats,
            "baseline": name == base, "dtype": "fp16" if dtype == torch.float16 else "fp32", "device": str(dev),
            "device_name": device_name(dev, threads=False), "threads": used or "",
            "cpu_share": round(share, 4) if dev.type == "cpu" else "",
            "starved": bool(dev.type == "cpu" and share < MIN_SHARE), "gpu_other_processes": others,
            "torch": torch.__version__, "torch_build": torch_build(), "timing_key": timing_key(m, spec),
        })
    return rows, rounds


def _interleaved(nets: dict, x: torch.Tensor, warmup: int, repeats: int, rounds: dict) -> dict:
    from ...timing import time_interleaved

    return time_interleaved(nets, x, warmup=warmup, repeats=repeats, budget=0, rounds_out=rounds)


def _throughput(nets: dict, spec, dev: torch.device, dtype: torch.dtype, gen: torch.Generator) -> dict[str, float]:
    settings = spec.speed
    try:
        xb = torch.rand(settings.throughput_batch, 3, spec.imgsz, spec.imgsz, generator=gen).to(device=dev, dtype=dtype)
        timings = _interleaved(nets, xb, max(1, min(settings.warmup, 5)), settings.throughput_repeats, {})
        return {name: t.throughput_ips for name, t in timings.items()}
    except torch.OutOfMemoryError:  # a too-large throughput batch must not cost the latency timing
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"ablate: throughput batch {settings.throughput_batch} out of memory; throughput not measured")
        return {}
