"""The deployment formats of a sweep (``speed.formats``) in its summaries: per format, each arm's latency in that
runtime, its Δ to the baseline in the same format, parity against PyTorch, and what did not export.

Every format's cells were timed in the torch session's rounds (:mod:`..execute.arm_speed`), so Δ latency in a format
is the mean of the per-round paired differences to the baseline *in that format*, with the paired-t interval over the
rounds, exactly as torch's Δ latency: its p-value from the recorded mean, SD and rounds, Holm over the arms of that
format (its own family, like each metric's) and the adjusted interval of :func:`~.decide.decide`. It measures timing
noise within one session, not the spread between machines.

summary.csv columns per format ``F`` beyond torch (systematic names): ``latency_F_ms_mean`` (median over the rounds),
``latency_F_ms_std`` (SD over the rounds), ``latency_F_ms_delta``, ``_delta_lo``/``_delta_hi`` (unadjusted level
interval), ``_delta_n``, ``_delta_p``, ``_delta_sd``, ``_delta_pct`` (% of the baseline's median in F),
``_delta_p_holm``, ``_delta_adj_lo``/``_delta_adj_hi``/``_delta_adj_level``, ``_delta_sig``; then ``F_runtime``,
``F_device``, ``F_threads``, ``F_export_s``, ``F_parity_max_abs``, ``F_parity_max_rel``, ``F_parity_ok``,
``F_dynamic_ok``, ``F_dynamic_error``, ``F_error``.
"""

from __future__ import annotations

import math

import pandas as pd

from ...deploy.exporting import FORMATS
from ...deploy.runtime import PARITY_TOL
from ..records.columns import is_true, num
from ..records.timings import TORCH
from .decide import Evidence, decide, p_value
from .formatting import NA, md_table, unique
from .tdist import finite, half_width

RUNTIME_LABELS = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "engine": "TensorRT"}
INFO = ("runtime", "device", "threads", "export_s", "parity_max_abs", "parity_max_rel", "parity_ok", "dynamic_ok",
        "dynamic_error", "error")


def summary_formats(summary: pd.DataFrame) -> list[str]:
    """The formats beyond torch that a summary has columns for, in the order of :data:`FORMATS`."""
    return [f for f in FORMATS if f != TORCH and f"latency_{f}_ms_mean" in summary.columns]


def _p(mean: float, sd: float, n: int) -> float:
    return p_value(Evidence(mean, n, sd, n - 1.0)) if n >= 2 and finite(mean) and finite(sd) else math.nan


def add_format_columns(summary: pd.DataFrame, timings: pd.DataFrame | None, level: float = 0.95) -> pd.DataFrame:
    """``summary`` with the columns of every format beyond torch in ``timings`` (each arm's latest speed.csv rows,
    one per format; see the module docstring). Contrast rows get none (NaN)."""
    if summary.empty or timings is None or not len(timings) or "format" not in timings.columns:
        return summary
    fmts = [f for f in dict.fromkeys(timings["format"].astype(str)) if f != TORCH]
    if not fmts:
        return summary
    s = summary.copy()
    arms = ~s["contrast"].map(is_true) if "contrast" in s.columns else pd.Series(True, index=s.index)
    base = s[s["baseline"].map(is_true) & arms]["arm"]
    base = str(base.iloc[0]) if len(base) else None
    added: dict[str, list] = {}
    for fmt in fmts:
        rows = timings[timings["format"].astype(str) == fmt].set_index("arm")
        get = {str(a): r for a, r in rows.iterrows()}
        base_ms = num(get[base]["latency_ms"]) if base in get else math.nan
        cols: dict[str, list] = {k: [] for k in ("mean", "std", "delta", "delta_lo", "delta_hi", "delta_n",
                                                  "delta_p", "delta_sd", "delta_pct")}
        info: dict[str, list] = {k: [] for k in INFO}
        evidence: list[Evidence | None] = []
        for (_, r), is_arm in zip(s.iterrows(), arms):
            t = get.get(str(r["arm"])) if is_arm else None
            t = t.to_dict() if t is not None else {}
            mean, sd = num(t.get("delta_ms")), num(t.get("delta_sd_ms"))
            n = int(num(t.get("delta_n"))) if finite(t.get("delta_n")) else 0
            ok = n >= 2 and finite(mean) and finite(sd) and str(r["arm"]) != base
            half = half_width(sd, n, level) if ok else math.nan
            cols["mean"].append(num(t.get("latency_ms")))
            cols["std"].append(num(t.get("latency_std_ms")))
            cols["delta"].append(mean if str(r["arm"]) != base else math.nan)
            cols["delta_lo"].append(mean - half if ok else math.nan)
            cols["delta_hi"].append(mean + half if ok else math.nan)
            cols["delta_n"].append(n if ok else 0)
            cols["delta_p"].append(_p(mean, sd, n) if ok else math.nan)  # from mean, SD, n (as torch's)
            cols["delta_sd"].append(sd if ok else math.nan)
            cols["delta_pct"].append(100.0 * mean / base_ms if finite(mean) and finite(base_ms) and base_ms > 0
                                     and str(r["arm"]) != base else math.nan)
            for k in INFO:
                v = t.get(k, "")
                info[k].append("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
            evidence.append(Evidence(mean, n, sd, n - 1.0) if ok else None)
        decisions = decide(evidence, 1.0 - level, None, higher_is_better=False)
        cols.update(delta_p_holm=[d.p_holm if d else math.nan for d in decisions],
                    delta_adj_lo=[d.lo if d else math.nan for d in decisions],
                    delta_adj_hi=[d.hi if d else math.nan for d in decisions],
                    delta_adj_level=[d.level if d else math.nan for d in decisions],
                    delta_sig=[bool(d and d.sig) for d in decisions])
        added.update({f"latency_{fmt}_ms_{k}": v for k, v in cols.items()})
        added.update({f"{fmt}_{k}": v for k, v in info.items()})
    return pd.concat([s, pd.DataFrame(added, index=s.index)], axis=1)


# ------------------------------------------------------------------------------------------------- summary.md
def _ms(v) -> str:
    v = num(v)
    return f"{v:.2f}" if math.isfinite(v) else NA


def _signed(v: float) -> str:
    return ("+" if v >= 0 else "−") + f"{abs(v):.2f}"


def format_headers(summary: pd.DataFrame) -> list[str]:
    """The summary table's latency column per format beyond torch (``ONNX Runtime, median (ms)``)."""
    return [f"{RUNTIME_LABELS.get(f, f)}, median (ms)" for f in summary_formats(summary)]


def format_cells(summary: pd.DataFrame, r) -> list[str]:
    """An arm's cells under :func:`format_headers`: median ± SD over the rounds, or why there is none."""
    out = []
    for f in summary_formats(summary):
        mean, std = num(r.get(f"latency_{f}_ms_mean")), num(r.get(f"latency_{f}_ms_std"))
        if math.isfinite(mean):
            out.append(f"{_ms(mean)} ± {_ms(std)}" if math.isfinite(std) else _ms(mean))
        else:
            out.append("not exported" if str(r.get(f"{f}_error") or "").strip() else NA)
    return out


def delta_text(f: str, r) -> str:
    """``**+0.42** (+5.1%) [+0.30, +0.55] p<0.001 (Holm <0.001)``: Δ latency in format ``f`` (bold when its adjusted
    interval excludes 0), or ``—``/n/a."""
    from .formatting import fmt_p

    if is_true(r.get("baseline")):
        return "—"
    d, n = num(r.get(f"latency_{f}_ms_delta")), int(num(r.get(f"latency_{f}_ms_delta_n")) or 0)
    if not math.isfinite(d):
        return NA
    pct = num(r.get(f"latency_{f}_ms_delta_pct"))
    text = _signed(d) + (f" ({pct:+.1f}%)".replace("-", "−") if math.isfinite(pct) else "")
    lo, hi = num(r.get(f"latency_{f}_ms_delta_adj_lo")), num(r.get(f"latency_{f}_ms_delta_adj_hi"))
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} [CI {NA}, n={n}]"
    if is_true(r.get(f"latency_{f}_ms_delta_sig")):
        text = f"**{text}**"
    p, p_holm = fmt_p(r.get(f"latency_{f}_ms_delta_p")), fmt_p(r.get(f"latency_{f}_ms_delta_p_holm"))
    return f"{text} [{_signed(lo)}, {_signed(hi)}] p{p if p.startswith('<') else '=' + p} (Holm {p_holm})"


def _parity(f: str, r) -> str:
    ok, rel = str(r.get(f"{f}_parity_ok", "")), num(r.get(f"{f}_parity_max_rel"))
    if ok == "":
        return NA
    return "ok" if is_true(ok) else f"**no** (max rel {rel:.2g})"


def _dynamic(f: str, r) -> str:
    v = str(r.get(f"{f}_dynamic_ok", ""))
    return "" if v == "" else ("ok" if is_true(v) else "**no**")


def deployment_section(summary: pd.DataFrame, level: float = 0.95) -> list[str]:
    """``## Deployment``: how the arms were exported, checked and timed; per format and arm the runtime, export
    time, parity, dynamic export, latency and Δ latency; one line per cell that did not export or run."""
    fmts = summary_formats(summary)
    if not fmts:
        return []
    if "contrast" in summary.columns:
        summary = summary[~summary["contrast"].map(is_true)]
    names = ", ".join(f"{RUNTIME_LABELS.get(f, f)} (`{f}`)" for f in fmts)

    def on(label: str, device: str, threads: str) -> str:
        return f"{label} on {device or NA}" + (f" with {threads} thread(s)" if threads else "")

    where = "; ".join([on("torch", unique(summary, "speed_device"), unique(summary, "speed_threads"))] + [
        on(RUNTIME_LABELS.get(f, f), unique(summary, f"{f}_device"), unique(summary, f"{f}_threads")) for f in fmts])
    lines = ["", "## Deployment", "",
             f"- formats: {names}, next to torch. Each arm was exported with ultralytics' exporter from its trained "
             "weights (its finished run of the lowest seed; `weights` in speed.csv): fused, fp32, static batch 1 at "
             "the sweep's imgsz, into the sweep folder's `exports/`; ONNX also with dynamic batch and shape, "
             "checked at batch 2 and another image size (Dynamic).",
             "- parity: the head's outputs against PyTorch with the same weights on 2 random images: the largest "
             "absolute difference and the largest difference relative to each output part's scale (boxes: the "
             f"largest box coordinate; class scores: 1); ok when max rel ≤ {PARITY_TOL:g} (docs/deployment.md "
             "says why).",
             "- timed in the same session as torch: every arm in every format interleaved in the same shuffled rounds "
             f"({unique(summary, 'speed_rounds') or NA} rounds, batch 1; {where}). Δ latency: arm − baseline in "
             "the same format, the mean of the per-round paired differences (% of the baseline's median in that "
             "format), [adj. CI] over the rounds, Holm-adjusted over the arms of that format: timing noise of one "
             "session only, not the spread between machines. **Bold**: the adjusted interval excludes 0.", ""]
    header = ["Arm", "Block", "Format", "Runtime", "Export (s)", "Parity max abs", "Parity max rel", "Parity",
              "Dynamic", "Latency, median (ms)", "Δ latency (ms) [adj. CI] p (Holm)"]
    rows, failed, off = [], [], []
    for f in fmts:
        for _, r in summary.iterrows():
            error = str(r.get(f"{f}_error") or "").strip()
            if error:
                failed.append(f"- **{r['arm']}** ({r['block']}), {f}: {error.removeprefix(f'{f}: ')}")
                continue
            if str(r.get(f"{f}_runtime") or "") == "":
                continue  # not timed in this format (an arm added since)
            rel, mx = num(r.get(f"{f}_parity_max_rel")), num(r.get(f"{f}_parity_max_abs"))
            rows.append([str(r["arm"]) + (" (baseline)" if is_true(r.get("baseline")) else ""), str(r["block"]), f,
                         str(r.get(f"{f}_runtime")), _ms(r.get(f"{f}_export_s")),
                         f"{mx:.2g}" if math.isfinite(mx) else NA, f"{rel:.2g}" if math.isfinite(rel) else NA,
                         _parity(f, r), _dynamic(f, r), format_cells(summary, r)[fmts.index(f)], delta_text(f, r)])
            if str(r.get(f"{f}_parity_ok", "")) != "" and not is_true(r.get(f"{f}_parity_ok")):
                off.append(f"{r['arm']} in {f} (max rel {rel:.2g})")
            dyn = str(r.get(f"{f}_dynamic_error") or "").strip()
            if dyn:
                failed.append(f"- **{r['arm']}** ({r['block']}), {f} with dynamic shapes (the static export is "
                              f"timed): {dyn.removeprefix(f'{f} dynamic: ')}")
    lines += md_table(header, rows) if rows else ["No arm exported to any of these formats."]
    if off:
        lines += ["", f"> **Warning**: outputs beyond the parity tolerance: {', '.join(off)}; their latency is of a "
                  "model that does not compute what PyTorch computes."]
    if failed:
        lines += ["", "Did not export or run (one line each: arm, block, format, then the failing block, layer and "
                  "operator where the message names them; the arm's other formats and the other arms stand):", ""]
        lines += failed
    for f in fmts:
        base = summary[summary["baseline"].map(is_true)]
        if len(base) and str(base.iloc[0].get(f"{f}_error") or "").strip():
            lines += ["", f"> The baseline did not export to {f}: no Δ latency in {f}."]
    return lines
