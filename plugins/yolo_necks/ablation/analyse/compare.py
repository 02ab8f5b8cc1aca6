"""``yolo-necks compare``: the arms of several sweeps side by side, each against its own baseline."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ...errors import NeckConfigError
from .formatting import NA, fmt_delta, fmt_mean_std, md_table, signed
from ..records.timings import latest_timings
from .report import RESULTS, SUMMARY_CSV, load_results
from .sections import adaptive_policy
from ..records.columns import METRICS, is_true, num
from .stats import summarize, upgrade_summary


def load_summary(path: str | Path) -> tuple[pd.DataFrame, str]:
    """(summary, label) from a sweep folder, a results.csv or a summary.csv."""
    p = Path(path)
    if p.is_dir():
        if (p / RESULTS).is_file():
            p = p / RESULTS
        elif (p / SUMMARY_CSV).is_file():
            p = p / SUMMARY_CSV
        else:
            raise NeckConfigError(f"{path}: no {RESULTS} or {SUMMARY_CSV} in this folder")
    if not p.is_file():
        raise NeckConfigError(f"{path}: file not found")
    try:
        head = pd.read_csv(p, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise NeckConfigError(f"{p}: not a readable CSV ({' '.join(str(e).split())})") from None
    if "n_ok" in head:
        summary = upgrade_summary(pd.read_csv(p))
    elif "status" in head:
        timings = latest_timings(p.parent)
        policy = adaptive_policy(p.parent)  # adaptive seeds: Stein's pilot makes the seed part
        summary = summarize(load_results(p), timings=timings if len(timings) else None,
                            pilot=policy["min"] if policy else None)
    else:
        raise NeckConfigError(f"{p}: neither a results.csv nor a summary.csv of a sweep")
    if "contrast" in summary.columns:  # a sweep's contrasts between its arms: its own summary.md, never compared here
        summary = summary[~summary["contrast"].map(is_true)].reset_index(drop=True)
    if summary.empty:
        raise NeckConfigError(f"{p}: no runs recorded")
    label = str(summary["sweep"].dropna().iloc[0]) if "sweep" in summary and summary["sweep"].notna().any() else ""
    return summary, label or p.parent.name


def compare(paths: list[str | Path], metrics: list[str] | None = None) -> str:
    """Markdown: the arms of several sweeps side by side; per sweep each metric (mean ± std) and its Δ vs that
    sweep's baseline (Holm-adjusted interval, p and Holm p, bold where the adjusted interval excludes 0, as in
    summary.md); then, for the first metric, each sweep's difference to the first sweep."""
    metrics = list(metrics or ["map50_95", "latency_ms"])
    for m in metrics:
        if m not in METRICS:
            raise NeckConfigError(f"compare: unknown metric '{m}' (choose from {', '.join(METRICS)})")
    if len(paths) < 1:
        raise NeckConfigError("compare: give at least one results.csv, summary.csv or sweep folder")
    loaded, labels = [], []
    for p in paths:
        summary, label = load_summary(p)
        base = label
        k = 2
        while label in labels:
            label, k = f"{base} ({k})", k + 1
        loaded.append(summary)
        labels.append(label)
    arms = list(dict.fromkeys(a for s in loaded for a in s["arm"]))
    placed = any("placement" in s.columns and s["placement"].astype(object).fillna("").astype(str).str.len().gt(0).any()
                 for s in loaded)
    header = ["Arm"] + ["Placement"] * placed
    for label in labels:
        for m in metrics:
            header += [f"{label}: {METRICS[m][0]}", f"{label}: Δ vs baseline"]
    first = metrics[0]
    for label in labels[1:]:
        header.append(f"{METRICS[first][0]}: {label} − {labels[0]}")
    rows = []
    for arm in arms:
        places = [str(s[s["arm"] == arm]["placement"].iloc[0]) for s in loaded
                  if "placement" in s.columns and (s["arm"] == arm).any()]
        places = [p for p in dict.fromkeys(places) if p and p != "nan"]
        cells = [arm] + [" | ".join(places) or "—"] * placed
        means = []
        for s in loaded:
            hit = s[s["arm"] == arm]
            r = hit.iloc[0].to_dict() if len(hit) else None
            means.append(num(r.get(f"{first}_mean")) if r else float("nan"))
            for m in metrics:
                if r is None:
                    cells += ["—", "—"]
                elif int(num(r.get("n_ok")) or 0) == 0:
                    cells += ["failed", NA]
                else:
                    cells += [fmt_mean_std(m, r), fmt_delta(m, r)]
        for mean in means[1:]:
            d = mean - means[0]
            cells.append(signed(first, d) if math.isfinite(d) else NA)
        rows.append(cells)
    lines = ["# Sweep comparison", ""]
    for label, s, p in zip(labels, loaded, paths):
        base = ", ".join(s[s["baseline"]]["arm"]) or "none"
        info = [f"baseline {base}"]
        for col, name in (("reduced", "reduced"), ("epochs", "epochs"), ("imgsz", "imgsz"), ("data", "data"),
                          ("device", "device")):
            if col in s.columns and s[col].notna().any() and str(s[col].dropna().iloc[0]) not in ("", "nan"):
                info.append(f"{name} {s[col].dropna().iloc[0]}")
        devices = _latency_devices(s)
        info.append(f"latency timed on {' | '.join(devices) or 'an unrecorded device'}")
        lines.append(f"- **{label}** ({p}): " + ", ".join(info))
    timed_on = {d for s in loaded for d in _latency_devices(s)}
    if "latency_ms" in metrics and len(timed_on) > 1:
        lines += ["", f"> **Warning**: the latency columns come from different devices ({', '.join(sorted(timed_on))}); "
                  "compare latencies only within one sweep (or between sweeps timed on the same device model)."]
    lines += [
        "",
        "Δ vs baseline: paired by seed within each sweep; [interval] from Student's t, adjusted (Holm) for the arms "
        "each sweep compares with its baseline, per metric; p: paired t-test, Holm: Holm-adjusted p; **bold**: the "
        "adjusted interval excludes 0 (Holm-adjusted p ≤ 0.05). The last column(s): difference of means between "
        "sweeps, unpaired: the sweeps share no runs, so no interval or test is given for them; comparisons within a "
        "sweep (Δ vs its baseline, its contrasts between arms) are paired by seed and are in its own summary.md.",
        "",
    ]
    lines += md_table(header, rows)
    return "\n".join(lines) + "\n"


def _latency_devices(summary: pd.DataFrame) -> list[str]:
    """The device models a sweep's latencies were timed on (its arms' timing sessions, or its runs' rows)."""
    values = summary["speed_device_name"].fillna("").astype(str) if "speed_device_name" in summary.columns else []
    return [v for v in dict.fromkeys(x.strip() for part in values for x in part.split("|")) if v and v != "nan"]
