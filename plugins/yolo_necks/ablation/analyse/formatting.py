"""Cells of the summaries: numbers, mean ± std, signed deltas with their intervals and p-values, Markdown tables."""

from __future__ import annotations

import math

import pandas as pd

from ..records.columns import METRICS, as_strings, is_true, num

NA = "n/a"


def fmt(metric: str, v) -> str:
    v = num(v)
    if not math.isfinite(v):
        return NA
    if metric == "params":
        return f"{v / 1e6:.3f}M"
    return METRICS[metric][2].format(v)


def fmt_mean_std(metric: str, row) -> str:
    mean, std = num(row.get(f"{metric}_mean")), num(row.get(f"{metric}_std"))
    if not math.isfinite(mean):
        return NA
    if metric in ("params", "gflops") or not math.isfinite(std):
        return fmt(metric, mean)
    return f"{fmt(metric, mean)} ± {fmt(metric, std)}"


def signed(metric: str, v: float) -> str:
    text = fmt(metric, abs(v))
    return ("+" if v >= 0 else "−") + text


def fmt_p(p) -> str:
    """A p-value in two significant digits; ``<0.001`` below that; ``n/a`` when missing."""
    p = num(p)
    if not math.isfinite(p):
        return NA
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def p_is(p) -> str:
    """``= 0.28``, ``< 0.001``, ``= n/a``: a p-value after its name."""
    text = fmt_p(p)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def fmt_delta(metric: str, row, ci: bool | None = None, adjusted: bool = True) -> str:
    """``+0.012 [−0.004, +0.028] p=0.04 (Holm 0.19)``, ``+0.012 [CI n/a, n=1]``, or ``—`` for the baseline.

    ``adjusted`` (default): the Holm-consistent adjusted interval, the paired-t p and the Holm-adjusted p, and the
    Δ in **bold** when the adjusted interval excludes 0 (Holm-adjusted p <= 0.05); else the unadjusted 95% interval.
    Params and GFLOPs do not vary over seeds: no interval by default."""
    if ci is None:
        ci = metric not in ("params", "gflops")
    if is_true(row.get("baseline")):
        return "—"
    d, n = num(row.get(f"{metric}_delta")), int(num(row.get(f"{metric}_delta_n")) or 0)
    if not math.isfinite(d):
        return NA
    text = signed(metric, d)
    if metric == "latency_ms":
        text += latency_pct(row)
    if not ci:
        return text
    key = "delta_adj" if adjusted else "delta"
    lo, hi = num(row.get(f"{metric}_{key}_lo")), num(row.get(f"{metric}_{key}_hi"))
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} [CI {NA}, n={n}]"
    if not adjusted:
        return f"{text} [{signed(metric, lo)}, {signed(metric, hi)}]"
    if is_true(row.get(f"{metric}_delta_sig")):
        text = f"**{text}**"
    p, p_holm = fmt_p(row.get(f"{metric}_delta_p")), fmt_p(row.get(f"{metric}_delta_p_holm"))
    p = p if p.startswith("<") else f"={p}"
    return f"{text} [{signed(metric, lo)}, {signed(metric, hi)}] p{p} (Holm {p_holm})"


def latency_kind(summary: pd.DataFrame) -> str:
    """``median``: the arms were timed once per sweep (each arm's latency is the median over one session's rounds);
    ``mean``: older sweeps timed every run (a mean over seeds of per-run medians)."""
    timed = "speed_session" in summary.columns and summary["speed_session"].astype(str).str.len().gt(0).any()
    return "median" if timed else "mean"


def latency_pct(row) -> str:
    """`` (+5.8%)``: Δ latency as a share of the baseline's latency (its median over the timing rounds,
    ``latency_ms_delta_pct``; summaries without that column: the arm's latency minus Δ), or ''."""
    d, pct = num(row.get("latency_ms_delta")), num(row.get("latency_ms_delta_pct"))
    if not math.isfinite(pct):
        base = num(row.get("latency_ms_mean")) - d
        pct = 100 * d / base if base > 0 else float("nan")
    return f" ({pct:+.1f}%)".replace("-", "−") if math.isfinite(pct) else ""


def level_text(v) -> str:
    """0.99 -> ``99%``, 0.9875 -> ``98.75%``."""
    return f"{100 * num(v):.4g}%"


def floats(col: pd.Series) -> list[float]:
    """Cells as floats, NaN for anything missing (also pandas' NA of nullable integer columns)."""
    return [num(v) for v in col]


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + [
        "| " + " | ".join(r) + " |" for r in esc
    ]


def unique(runs: pd.DataFrame, col: str) -> str:
    """The distinct non-empty values of a column, comma-separated."""
    if col not in runs.columns:
        return ""
    return ", ".join(v for v in dict.fromkeys(as_strings(runs[col])) if v)



def interval_text(metric: str, r) -> str:
    lo, hi = num(r.get(f"{metric}_delta_adj_lo")), num(r.get(f"{metric}_delta_adj_hi"))
    return f"[{signed(metric, lo)}, {signed(metric, hi)}]"
