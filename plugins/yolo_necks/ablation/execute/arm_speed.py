"""Speed measured where it can be compared: every arm timed once per sweep, interleaved with the others.

Latency belongs to an architecture, not to a seed's weights, so a run does not time itself. Once the sweep's runs
are trained (and again when a resumed or adaptive sweep changes the arms), the sweep process times *every* arm in one
session on one device of the sweep host (``speed.device``, else the sweep's device), with nothing else of the sweep
running: each arm's model is built from its YAML (weights initialised from seed 0), fused (conv + batch-norm folded,
as ultralytics deploys it) and put in eval mode, and the arms are timed interleaved, one forward pass each per round,
over ``speed.repeats`` rounds after ``speed.warmup`` untimed passes (:func:`yolo_necks.timing.time_interleaved`, as
``yolo-necks bench`` does), batch 1, no pre-processing or NMS; throughput at ``throughput_batch`` the same way. The
arms' order is shuffled every round by a seed drawn per session and recorded (``order_seed``), so that no arm always
runs first or after the same other arm: position is not confounded with arm.

Per arm the session records the median and p90 over rounds, the spread (SD over rounds), throughput, and its Δ to
the baseline from the mean of the per-round paired differences (rounds are paired: the arms ran in the same round),
with a paired-t interval over the rounds: it measures timing noise within this one session, not the spread between
machines or seeds. It also records what the timing got: on a CPU, the share of its thread budget the timing process
actually used (process CPU time / wall / threads; a starved timing, under 90%, is flagged in the summary, never
averaged in silently); on CUDA, how many other processes used the GPU. Sessions go to ``speed.csv`` in the sweep
folder (one row per arm and session); the summary takes each arm's latest. Every round's time of every arm, with its
position in that round, goes to ``speed_rounds.csv`` (:func:`~yolo_necks.ablation.records.timings.record_timings`).

With ``speed.formats`` beyond torch, every arm is first exported to each format from its trained weights, loaded in
its runtime and checked against PyTorch (:mod:`.formats`); the same session then times the torch models and every
runtime that loaded, interleaved in the same shuffled rounds (named ``arm|format`` in the rounds), so the CPU-share
check covers them all. The runtimes get the torch thread count and a CPU copy of the input (ONNX Runtime and OpenVINO
run on the CPU; TensorRT on the GPU). One ``speed.csv`` row per arm and format; Δ latency per format is against the
baseline in that format.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import secrets
import socket
import time

import torch

from ...threads import threads_held
from ..records.timings import TORCH, round_key, timing_key
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


def time_arms(models: list, spec, threads: int | None = None, order_seed: int | None = None,
              weights: dict[str, str] | None = None) -> tuple[list[dict], dict[str, list[float]]]:
    """Time every arm of ``models`` in one interleaved session, the arms' order shuffled every round by
    ``order_seed`` (None: one drawn now); return one ``speed.csv`` row per arm and format (its Δ to the baseline is
    added by the analysis, :func:`~yolo_necks.ablation.analyse.stats.latency_deltas`; ``round_positions``, not a
    speed.csv field, is the row's 1-based position in each round, for ``speed_rounds.csv``) and each arm's
    per-round times in ms (keyed by :func:`~..records.timings.round_key`). ``weights``: each arm's trained weights,
    which the formats beyond torch are exported from (:mod:`.formats`)."""
    if order_seed is None:
        order_seed = secrets.randbelow(2**31)
    settings = spec.speed
    dev = torch_device(settings.device or spec.device)
    dtype = resolve_dtype(settings.dtype, dev)
    if dev.type == "cpu" and dtype == torch.float16:
        raise ValueError("speed.dtype fp16 is not supported on the CPU")
    formats = [f for f in getattr(settings, "formats", (TORCH,)) if f != TORCH]
    cells: dict = {}
    with threads_held(threads if dev.type == "cpu" else None):
        runtime_threads = threads or torch.get_num_threads()  # the runtimes get as many threads as torch
        try:
            if formats:  # exported, loaded and checked before anything is timed (exports keep torch's threads)
                from .formats import deploy_arms, exports_root

                names = [m.arm.name for m in models]
                cells = deploy_arms(names, weights or {}, formats, spec.imgsz, runtime_threads, exports_root(spec))
            nets = {m.arm.name: prepare(_build(m), dev, dtype) for m in models}
            gen = torch.Generator().manual_seed(0)
            x1 = torch.rand(1, 3, spec.imgsz, spec.imgsz, generator=gen).to(device=dev, dtype=dtype)
            host = x1.detach().float().cpu().numpy()  # what the runtimes take: the same image, already on the host
            timed = {**nets, **{round_key(a, f): (lambda _x, r=c.runner: r(host))
                                for (a, f), c in cells.items() if c.runner is not None}}
            rounds: dict[str, list[float]] = {}
            orders: list[list[str]] = []
            used = torch.get_num_threads() if dev.type == "cpu" else 0
            wall0, cpu0 = time.perf_counter(), time.process_time()
            latency = _interleaved(timed, x1, settings.warmup, settings.repeats, rounds, order_seed, orders)
            share = (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0) / max(1, used)
            throughput = _throughput(nets, spec, dev, dtype, gen, order_seed)
            others = _other_gpu_processes(dev) if dev.type == "cuda" else ""
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    base = next((m.arm.name for m in models if m.arm.baseline), None)
    session = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for m in models:
        name, lat = m.arm.name, latency[m.arm.name]
        base_row = {
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
            "torch": torch.__version__, "torch_build": torch_build(),
            "timing_key": timing_key(m, spec, (weights or {}).get(name)), "order_seed": order_seed,
            "round_positions": [order.index(name) + 1 for order in orders],
        }
        rows.append({**base_row, "format": TORCH, "runtime": f"torch {torch.__version__}"})
        for fmt in formats:
            rows.append(_format_row(base_row, cells[(name, fmt)], latency, orders, dev, runtime_threads))
    return rows, rounds


def _format_row(base: dict, cell, latency: dict, orders: list[list[str]], dev: torch.device, threads: int) -> dict:
    """An arm's ``speed.csv`` row in a format beyond torch: its runtime's latency from the same rounds (none where the
    cell failed), batch 1 and static (no throughput), and the cell's export, parity and error columns."""
    key = round_key(cell.arm, cell.fmt)
    lat = latency.get(key)
    on_gpu = cell.fmt == "engine"
    row = {**base, **cell.columns(), "latency_ms": lat.median_ms if lat else None,
           "latency_p90_ms": lat.p90_ms if lat else None, "latency_std_ms": lat.std_ms if lat else None,
           "latency_min_ms": lat.min_ms if lat else None, "rounds": lat.repeats if lat else 0,
           "throughput_ips": None, "throughput_batch": "", "throughput_rounds": "", "dtype": "fp32",
           "round_positions": [order.index(key) + 1 for order in orders] if lat else []}
    if not on_gpu and dev.type != "cpu":  # the runtime ran on the CPU beside a torch timing on the GPU
        row.update(device="cpu", device_name=device_name(torch.device("cpu"), threads=False), gpu_other_processes="",
                   threads=threads)
    elif on_gpu and dev.type == "cpu":
        row.update(device="cuda:0", device_name=device_name(torch.device("cuda:0")), cpu_share="", starved=False)
    return row


def _interleaved(nets: dict, x: torch.Tensor, warmup: int, repeats: int, rounds: dict, order_seed: int,
                 orders: list | None = None) -> dict:
    from ...timing import time_interleaved

    return time_interleaved(nets, x, warmup=warmup, repeats=repeats, budget=0, rounds_out=rounds,
                            order_seed=order_seed, orders_out=orders)


def _throughput(nets: dict, spec, dev: torch.device, dtype: torch.dtype, gen: torch.Generator,
                order_seed: int) -> dict[str, float]:
    settings = spec.speed
    try:
        xb = torch.rand(settings.throughput_batch, 3, spec.imgsz, spec.imgsz, generator=gen).to(device=dev, dtype=dtype)
        timings = _interleaved(nets, xb, max(1, min(settings.warmup, 5)), settings.throughput_repeats, {}, order_seed)
        return {name: t.throughput_ips for name, t in timings.items()}
    except torch.OutOfMemoryError:  # a too-large throughput batch must not cost the latency timing
        from ultralytics.utils import LOGGER

        LOGGER.warning(f"ablate: throughput batch {settings.throughput_batch} out of memory; throughput not measured")
        return {}
