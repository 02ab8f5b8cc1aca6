"""AP by object size in ``summary.md``: the buckets and how the val boxes fall in them, a table of COCO's AP and AP
small / medium / large per arm with the paired Δ of :mod:`.stats` (the same adjusted intervals and Holm family per
metric as every summarised metric), how far COCO's AP is from ultralytics' mAP50-95 on the same predictions, and the
verdict's clause per size bucket."""

from __future__ import annotations

import json
import math

import pandas as pd

from ..records.columns import METRICS, SIZE_METRICS, as_strings, is_true, num
from .formatting import NA, fmt, fmt_delta, fmt_mean_std, interval_text, md_table, signed

COCO_DEFAULT = (32.0**2, 96.0**2)  # yolo_necks.cocoeval.DEFAULT_BUCKETS (that module is not needed to read a summary)
SIZE_TABLE = ("coco_map50_95", *SIZE_METRICS)


def size_clause(r) -> str | None:
    """``better on small objects (Δ AP small +0.040 [+0.012, +0.068]), worse on large objects (...)``: one part per
    size bucket whose adjusted interval excludes 0, in the direction of the Δ; None when none does."""
    parts = []
    for metric, size in SIZE_METRICS.items():
        d = num(r.get(f"{metric}_delta"))
        if not is_true(r.get(f"{metric}_delta_sig")) or not math.isfinite(d):
            continue
        word = "better" if (d > 0) == METRICS[metric][1] else "worse"
        parts.append(f"{word} on {size} objects (Δ {METRICS[metric][0]} {signed(metric, d)} "
                     f"{interval_text(metric, r)})")
    return ", ".join(parts) if parts else None


def buckets_of(runs: pd.DataFrame) -> tuple[float, float] | None:
    """The size buckets the runs recorded (COCO's for a sweep recorded before the column; None when they differ)."""
    values = [v for v in dict.fromkeys(as_strings(runs["size_buckets"])) if v] if "size_buckets" in runs else []
    if len(values) > 1:
        return None
    if not values:
        return COCO_DEFAULT
    try:
        a, b = json.loads(values[0])
        return float(a), float(b)
    except (ValueError, TypeError):
        return None


def _counts(ok: pd.DataFrame) -> dict[str, int] | None:
    """Ground-truth boxes per bucket (the val split's: the same for every run), or None when not recorded."""
    out = {}
    for size in SIZE_METRICS.values():
        col = f"n_{size}"
        values = [num(v) for v in ok[col]] if col in ok.columns else []
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return None
        out[size] = int(values[-1])
    return out


def _area(v: float) -> str:
    side = math.sqrt(v)
    return f"{v:g} px² ({side:.0f}²)" if abs(side - round(side)) < 1e-9 else f"{v:g} px² (≈{side:.1f}²)"


def size_section(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """``## AP by object size``: the buckets and counts, the table, and the COCO-vs-ultralytics line; nothing for a
    sweep recorded before AP by size."""
    ok = runs[runs["status"].astype(str) == "ok"] if "status" in runs.columns else runs
    if "coco_map50_95_mean" not in summary.columns or not any(
            math.isfinite(num(v)) for v in summary["coco_map50_95_mean"]):
        return []
    buckets, counts = buckets_of(runs), _counts(ok)
    if buckets is None:
        where = "> **Warning**: the runs recorded different size buckets (`size_buckets`); AP by size mixes them."
    else:
        a, b = buckets
        chosen = "COCO's, the default" if buckets == COCO_DEFAULT else "the spec's `size_buckets`"
        where = (f"Buckets by box area in the original image ({chosen}): small ≤ {_area(a)} ≤ medium ≤ {_area(b)} "
                 "≤ large")
    if counts is not None:
        total = sum(counts.values())
        share = " / ".join(f"{counts[s]} {s}" + (f" ({100 * counts[s] / total:.0f}%)" if total else "")
                           for s in SIZE_METRICS.values())
        where += f"; the val split holds {share} boxes"
        if total and all(0.25 <= n / total <= 0.42 for n in counts.values()):
            where += ", roughly in thirds"
        empty = [s for s, n in counts.items() if n == 0]
        if empty:
            where += (f" (no {' or '.join(empty)} object: {' and '.join(f'AP {e}' for e in empty)} "
                      f"{'is' if len(empty) == 1 else 'are'} n/a)")
    lines = ["", "## AP by object size", "", where + ".", ""]
    shown = [m for m in SIZE_TABLE if any(math.isfinite(num(v)) for v in summary[f"{m}_mean"])]
    header = ["Arm"]
    for m in shown:
        header += [METRICS[m][0], f"Δ {METRICS[m][0]} [adj. CI] p (Holm)"]
    rows = []
    for _, r in summary.iterrows():
        cells = [f"**{r['arm']}** (baseline)" if is_true(r["baseline"]) else str(r["arm"])]
        for m in shown:
            cells += ["failed", NA] if not int(num(r.get("n_ok")) or 0) else [fmt_mean_std(m, r), fmt_delta(m, r)]
        rows.append(cells)
    lines += md_table(header, rows)
    precision = [line for m in shown for line in [_precision_line(summary, m)] if line]
    if precision:
        lines += [""] + precision
    lines += ["", "COCO AP and AP by size: COCO's evaluator (faster-coco-eval, the one ultralytics runs for COCO) on "
              "each run's own validation predictions, AP@[.5:.95] at up to 100 detections per image; Δ, intervals and "
              "Holm's adjustment as in the main table (one family per metric, as there). "
              + _evaluators(ok)]
    return lines


def _precision_line(summary: pd.DataFrame, metric: str) -> str | None:
    """``- Precision of Δ AP small: ±0.012 to ±0.020 now; ±0.010 needs 5–9 paired seeds per arm``, or None."""
    others = summary[~summary["baseline"].map(is_true)]
    half = [v for v in (num(x) for x in others.get(f"{metric}_delta_half", [])) if math.isfinite(v)]
    if not half:
        return None
    lo, hi = fmt(metric, min(half)), fmt(metric, max(half))
    text = f"- Precision of Δ {METRICS[metric][0]}: 95% intervals ±{lo}" + (f" to ±{hi}" if hi != lo else "") + " now"
    target = num(summary["target"].iloc[0]) if "target" in summary.columns else math.nan
    need = [int(v) for v in (num(x) for x in others.get(f"{metric}_seeds_needed", [])) if math.isfinite(v)]
    if math.isfinite(target) and need:
        if max(half) <= target:
            text += f": within the target ±{fmt(metric, target)}"
        else:
            many = f"{min(need)}" if min(need) == max(need) else f"{min(need)}–{max(need)}"
            text += f"; ±{fmt(metric, target)} needs {many} paired seeds per arm"
    return text


def _evaluators(ok: pd.DataFrame) -> str:
    """How far COCO's AP is from ultralytics' mAP50-95 on the same predictions, over the finished runs."""
    if not {"coco_map50_95", "map50_95"} <= set(ok.columns):
        return ""
    d = [num(c) - num(u) for c, u in zip(ok["coco_map50_95"], ok["map50_95"])]
    d = [x for x in d if math.isfinite(x)]
    if not d:
        return ""
    lo, hi = signed("map50_95", min(d)), signed("map50_95", max(d))
    spread = f"{lo} to {hi}" if lo != hi else ""
    return (f"COCO AP − ultralytics mAP50-95 of the same run: mean {signed('map50_95', sum(d) / len(d))}"
            + (f" ({spread} over {len(d)} runs)" if spread else "") + ". Both read the precision envelope at 101 "
            "recall points, but COCO takes the precision where each recall point is first reached and averages, "
            "over the 100 most confident detections per image, while ultralytics interpolates linearly and integrates "
            "(trapezoid), over up to 300 detections per image (its max_det): compare arms within one evaluator, "
            "never numbers across the two.")

