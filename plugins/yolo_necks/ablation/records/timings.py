"""``speed.csv``: the sweep's timing sessions, one row per arm and session (written by the sweep process after
training, read by the summaries and ``compare``), and the key that says whether an arm's timing is still current.
``speed_rounds.csv``: every timed round of those sessions in long format (``session, round, position, arm, ms,
format``; round and position 1-based: position 1 ran first in its round), so that a reader can check the per-round
numbers behind a median and a Δ (and whether the position in a round mattered).

With ``speed.formats`` beyond torch a session has one row per arm and format (``format``: ``torch``, ``onnx``,
``openvino``, ``engine``), all timed in the same rounds; a row of a format the arm did not export to or run in holds
the one-line ``error`` and no latency. Rows written before formats existed are torch rows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from .store import atomic_write

SPEED_CSV = "speed.csv"
ROUNDS_CSV = "speed_rounds.csv"
ROUND_FIELDS = ["session", "round", "position", "arm", "ms", "format"]
FIELDS = [
    "session", "timed_at", "host", "node", "arm", "block", "placement", "model_yaml", "imgsz", "latency_ms", "latency_p90_ms",
    "latency_std_ms", "latency_min_ms", "rounds", "warmup", "throughput_ips", "throughput_batch", "throughput_rounds",
    "delta_ms", "delta_lo_ms", "delta_hi_ms", "delta_sd_ms", "delta_n", "delta_p", "baseline", "dtype", "device",
    "device_name", "threads", "cpu_share", "starved", "gpu_other_processes", "torch", "torch_build", "timing_key",
    "order_seed",  # the seed of the arms' per-round shuffled order (empty in sessions timed in a fixed order)
    # speed.formats (empty in sessions before them: torch rows): the format, its runtime and version, the export
    # (seconds, from which trained weights), parity against PyTorch, the dynamic ONNX export's parity, and the
    # one-line reason a format's cell has no latency
    "format", "runtime", "export_s", "parity_max_abs", "parity_max_rel", "parity_ok", "dynamic_ok", "dynamic_error",
    "error", "weights",
]
TORCH = "torch"


def round_key(arm: str, fmt: str | None = None) -> str:
    """The name an arm's format is timed under in a session's rounds: the arm (torch), else ``arm|format``."""
    return arm if not fmt or fmt == TORCH else f"{arm}|{fmt}"


def format_rows(df, fmt: str = TORCH):
    """The rows of a speed.csv frame timed in ``fmt`` (a frame without a ``format`` column holds torch rows only)."""
    if df is None or "format" not in df.columns:
        return df if fmt == TORCH else (df.iloc[0:0] if df is not None else df)
    formats = df["format"].fillna(TORCH).astype(str).replace("", TORCH)
    return df[formats == fmt]


def timing_key(model, spec, weights: str | None = None) -> str:
    """What a timing of an arm depends on: its model, the image size, the speed settings and the device; with
    formats beyond torch also the trained ``weights`` its exports come from. With torch alone the key is the one
    sessions timed before ``speed.formats`` existed (they are not timed again)."""
    settings = {k: v for k, v in asdict(spec.speed).items() if k != "device"}
    parts = [model.model_dict, spec.imgsz, settings, spec.speed.device or spec.device]
    if tuple(settings.pop("formats", None) or (TORCH,)) != (TORCH,):
        settings["formats"] = list(spec.speed.formats)
        parts.append(str(weights or ""))
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_timings(folder: str | Path):
    """``speed.csv`` of a sweep folder as a DataFrame (empty without one)."""
    import pandas as pd

    path = Path(folder) / SPEED_CSV
    if not path.is_file():
        return pd.DataFrame(columns=FIELDS)
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "format" not in df.columns:
        df["format"] = TORCH
    df["format"] = df["format"].fillna(TORCH).astype(str).replace("", TORCH)  # rows from before formats: torch
    return df


def latest_timings(folder: str | Path):
    """Each arm's most recent timing: the rows of the latest session that timed it, one per format (``format``)."""
    df = read_timings(folder)
    if not len(df):
        return df
    last = df.drop_duplicates(subset=["arm"], keep="last").set_index("arm")["session"]
    df = df[df["session"].astype(str).values == df["arm"].map(last).astype(str).values]
    return df.drop_duplicates(subset=["arm", "format"], keep="last").reset_index(drop=True)


def needs_timing(folder: str | Path, models: list, spec, weights: dict[str, str] | None = None) -> bool:
    """True unless the latest session timed every arm of ``models`` with its current :func:`timing_key` (``weights``:
    each arm's trained weights that formats beyond torch are exported from)."""
    df = read_timings(folder)
    if not len(df):
        return True
    last = df[df["session"] == df["session"].iloc[-1]]
    timed = dict(zip(last["arm"], last["timing_key"]))
    weights = weights or {}
    return any(timed.get(m.arm.name) != timing_key(m, spec, weights.get(m.arm.name)) for m in models)


def _cell(v):
    return "" if v is None else repr(v) if isinstance(v, float) else v


def record_timings(folder: str | Path, rows: list[dict], rounds: dict[str, list[float]] | None = None) -> Path:
    """Append a session's rows to ``speed.csv`` (atomically, like results.csv); with ``rounds`` (each arm's per-round
    ms), also every round to ``speed_rounds.csv``, each arm's position in a round from its row's
    ``round_positions`` (empty where a row has none). A ``speed.csv`` written before a field existed is rewritten
    once with today's header, its rows unchanged (the new fields empty)."""
    import csv
    import io

    path = Path(folder) / SPEED_CSV
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    buf = io.StringIO()
    header = next(csv.reader(io.StringIO(old)), None) if old else None
    if header != FIELDS:
        fields = FIELDS + [f for f in (header or []) if f not in FIELDS]  # today's order, older extras kept
        writer = csv.DictWriter(buf, fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv.DictReader(io.StringIO(old)) if old else [])
        old = ""
    else:
        writer = csv.DictWriter(buf, FIELDS, extrasaction="ignore", lineterminator="\n")
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    atomic_write(path, old + buf.getvalue())
    if rounds is not None:
        record_rounds(folder, rows, rounds)
    return path


def record_rounds(folder: str | Path, rows: list[dict], rounds: dict[str, list[float]]) -> Path:
    """Append a session's per-round times to ``speed_rounds.csv`` (long format, :data:`ROUND_FIELDS`), round by
    round and, within a round, in the order the arms (and their formats) ran; ``rounds`` is keyed by
    :func:`round_key`. A file written before a field existed is rewritten once with today's header."""
    import csv
    import io

    path = Path(folder) / ROUNDS_CSV
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ROUND_FIELDS, extrasaction="ignore", lineterminator="\n")
    header = next(csv.reader(io.StringIO(old)), None) if old else None
    if header != ROUND_FIELDS:
        writer.writeheader()
        writer.writerows(csv.DictReader(io.StringIO(old)) if old else [])
        old = ""
    cells = []
    for row in rows:
        fmt = row.get("format") or TORCH
        times, positions = rounds.get(round_key(row["arm"], fmt), []), row.get("round_positions") or []
        for i, ms in enumerate(times):
            pos = positions[i] if i < len(positions) else ""
            cells.append({"session": row.get("session", ""), "round": i + 1, "position": pos, "arm": row["arm"],
                          "ms": _cell(float(ms)), "format": fmt})
    cells.sort(key=lambda c: (c["round"], c["position"] if c["position"] != "" else 0))
    writer.writerows(cells)
    atomic_write(path, old + buf.getvalue())
    return path
