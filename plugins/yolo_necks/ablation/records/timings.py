"""``speed.csv``: the sweep's timing sessions, one row per arm and session (written by the sweep process after
training, read by the summaries and ``compare``), and the key that says whether an arm's timing is still current."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from .store import atomic_write

SPEED_CSV = "speed.csv"
FIELDS = [
    "session", "timed_at", "host", "node", "arm", "block", "placement", "model_yaml", "imgsz", "latency_ms", "latency_p90_ms",
    "latency_std_ms", "latency_min_ms", "rounds", "warmup", "throughput_ips", "throughput_batch", "throughput_rounds",
    "delta_ms", "delta_lo_ms", "delta_hi_ms", "delta_sd_ms", "delta_n", "delta_p", "baseline", "dtype", "device",
    "device_name", "threads", "cpu_share", "starved", "gpu_other_processes", "torch", "torch_build", "timing_key",
]


def timing_key(model, spec) -> str:
    """What a timing of an arm depends on: its model, the image size, the speed settings and the device."""
    settings = {k: v for k, v in asdict(spec.speed).items() if k != "device"}
    text = json.dumps([model.model_dict, spec.imgsz, settings, spec.speed.device or spec.device], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_timings(folder: str | Path):
    """``speed.csv`` of a sweep folder as a DataFrame (empty without one)."""
    import pandas as pd

    path = Path(folder) / SPEED_CSV
    if not path.is_file():
        return pd.DataFrame(columns=FIELDS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def latest_timings(folder: str | Path):
    """Each arm's most recent timing (the rows of the latest session that timed it)."""
    df = read_timings(folder)
    if not len(df):
        return df
    return df.drop_duplicates(subset=["arm"], keep="last").reset_index(drop=True)


def needs_timing(folder: str | Path, models: list, spec) -> bool:
    """True unless the latest session timed every arm of ``models`` with its current :func:`timing_key`."""
    df = read_timings(folder)
    if not len(df):
        return True
    last = df[df["session"] == df["session"].iloc[-1]]
    timed = dict(zip(last["arm"], last["timing_key"]))
    return any(timed.get(m.arm.name) != timing_key(m, spec) for m in models)


def record_timings(folder: str | Path, rows: list[dict]) -> Path:
    """Append a session's rows to ``speed.csv`` (atomically, like results.csv)."""
    import csv
    import io

    path = Path(folder) / SPEED_CSV
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    buf = io.StringIO()
    if not old:
        buf.write(",".join(FIELDS) + "\n")
    writer = csv.DictWriter(buf, FIELDS, extrasaction="ignore", lineterminator="\n")
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write(path, old + buf.getvalue())
    return path
