"""Latency measurement shared by ``yolo-necks bench`` and the ablation harness.

One function, :func:`measure`, times a callable the same way everywhere: warm-up passes first, then ``repeats`` timed
passes, each one synchronised on CUDA, and reports the median, p90, spread and throughput. Numbers are reported,
never asserted on.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class Timing:
    """Summary of ``repeats`` timed calls, in milliseconds per call."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    repeats: int
    warmup: int
    batch: int

    @property
    def throughput_ips(self) -> float:
        """Items (images) per second at the median latency."""
        return self.batch * 1000.0 / self.median_ms if self.median_ms > 0 else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["throughput_ips"] = self.throughput_ips
        return d


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure(fn, x: torch.Tensor, warmup: int = 10, repeats: int = 100) -> Timing:
    """Time ``fn(x)``: ``warmup`` untimed calls, then ``repeats`` calls each timed alone (synchronised on CUDA).

    Args:
        fn: the callable to time (usually a module in eval mode).
        x: its input; its device decides whether CUDA synchronisation is used, its first dim is the batch.
        warmup: untimed calls before timing (lets cuDNN/oneDNN pick kernels and caches fill).
        repeats: timed calls (at least 1).
    """
    if repeats < 1:
        raise ValueError(f"measure: repeats must be >= 1, got {repeats}")
    device = x.device
    for _ in range(max(0, warmup)):
        fn(x)
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return Timing(
        median_ms=statistics.median(times),
        p90_ms=percentile(times, 90),
        mean_ms=statistics.fmean(times),
        std_ms=statistics.pstdev(times) if len(times) > 1 else 0.0,
        min_ms=min(times),
        repeats=repeats,
        warmup=warmup,
        batch=int(x.shape[0]) if x.dim() else 1,
    )


def time_interleaved(fns: dict[str, object], x: torch.Tensor, warmup: int, repeats: int, budget: float,
                     rounds_out: dict[str, list[float]] | None = None, order_seed: int | None = None,
                     orders_out: list[list[str]] | None = None):
    """Time every callable on ``x`` interleaved: ``warmup`` untimed calls each, then up to ``repeats`` rounds in
    which every callable runs once.

    Every timed call goes through :func:`yolo_necks.timing.measure` (one repeat, synchronised on CUDA). The number
    of rounds is cut (to at least 3) when the estimated time exceeds ``budget`` seconds (``budget <= 0``: no cap).
    ``order_seed``: each round runs the callables in an order shuffled by ``random.Random(order_seed)`` (the same
    seed, the same orders), so that no callable always runs first or always after the same other one (caches,
    clocks and allocator state left by the previous call); None keeps the order of ``fns`` in every round.
    Returns ``{name: Timing}`` over the rounds; ``rounds_out``, when given, receives each callable's milliseconds
    round by round (the rounds of two callables are paired: they ran in the same round), ``orders_out`` each round's
    order of names.
    """
    estimate = 0.0
    for fn in fns.values():
        estimate += measure(fn, x, warmup=max(0, warmup - 1), repeats=1).median_ms / 1000.0
    rounds = repeats
    if budget > 0 and estimate > 0:
        rounds = max(min(3, repeats), min(repeats, int(budget / estimate)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    shuffler = random.Random(order_seed) if order_seed is not None else None
    for _ in range(rounds):
        order = list(fns)
        if shuffler is not None:
            shuffler.shuffle(order)
        for k in order:
            times[k].append(measure(fns[k], x, warmup=0, repeats=1).median_ms)
        if orders_out is not None:
            orders_out.append(order)
    if rounds_out is not None:
        rounds_out.update(times)
    out = {}
    batch = int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() else 1
    for k, v in times.items():
        out[k] = Timing(
            median_ms=statistics.median(v),
            p90_ms=percentile(v, 90),
            mean_ms=statistics.fmean(v),
            std_ms=statistics.pstdev(v) if len(v) > 1 else 0.0,
            min_ms=min(v),
            repeats=len(v),
            warmup=warmup,
            batch=batch,
        )
    return out
