"""Reports derived from ``results.csv`` only: ``summary.csv``, ``summary.md``, ``pareto.png``, and ``compare``.

Nothing here trains: ``yolo-necks report DIR`` regenerates every file of a sweep folder from its ``results.csv``
(the only thing read from the folder's ``spec.yaml`` is the primary ``metric`` and the precision ``target``), and
``yolo-necks compare`` puts several sweeps side by side. Figures are drawn on matplotlib's Agg canvas directly (no
pyplot, no change of the process-wide backend).

``summary.md`` opens with a verdict per arm in plain words (better / worse / no detectable difference on the primary
metric, with Δ and its Holm-adjusted interval, and the Pareto trade-off against latency), then the table (every Δ
with its adjusted interval, paired-t p and Holm-adjusted p; **bold** where the adjusted interval excludes 0; a
Pareto column), then one precision-planning line per arm ("±0.031 now; ±0.010 needs 9 seeds").
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import NeckConfigError
from .stats import (DEFAULT_METRIC, DEFAULT_TARGET, METRICS, _is_true, _num, add_inference, as_strings,
                    check_metric_target, latest_runs, mixed_settings, pareto_arms, summarize)  # fmt: skip

RESULTS, SUMMARY_CSV, SUMMARY_MD, PARETO = "results.csv", "summary.csv", "summary.md", "pareto.png"
# columns of the summary table: (metric, show a Δ column)
TABLE = [("params", False), ("gflops", False), ("map50_95", True), ("map50", True), ("precision", False),
         ("recall", False), ("latency_ms", True), ("throughput_ips", False)]  # fmt: skip
NA = "n/a"


# ------------------------------------------------------------------------------------------------------ loading
def load_results(path: str | Path) -> pd.DataFrame:
    """``results.csv`` (or a sweep folder holding one) as a DataFrame of its readable rows.

    Unreadable lines (truncated, garbage) are reported once by the store, left out here and listed in
    ``df.attrs["unreadable"]`` (1-based line numbers), so the summary can say so; the file keeps them.
    """
    from .store import ResultsStore

    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
    if not p.is_file():
        raise NeckConfigError(f"{p}: results file not found")
    store = ResultsStore(p)
    records = store.read_records(warn=True)
    missing = [c for c in ("arm", "seed", "status") if c not in records.header]
    if missing:
        raise NeckConfigError(f"{p}: not a results.csv (missing columns {', '.join(missing)})")
    try:
        df = store.frame(warn=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:  # pragma: no cover - rows were checked
        raise NeckConfigError(f"{p}: not a readable results.csv ({' '.join(str(e).split())})") from None
    if "error" in df.columns:
        df["error"] = ["" if pd.isna(v) else str(v) for v in df["error"]]
    df.attrs["unreadable"] = records.bad_lines
    return df


# ----------------------------------------------------------------------------------------------------- formatting
def fmt(metric: str, v) -> str:
    v = _num(v)
    if not math.isfinite(v):
        return NA
    if metric == "params":
        return f"{v / 1e6:.3f}M"
    return METRICS[metric][2].format(v)


def fmt_mean_std(metric: str, row) -> str:
    mean, std = _num(row.get(f"{metric}_mean")), _num(row.get(f"{metric}_std"))
    if not math.isfinite(mean):
        return NA
    if metric in ("params", "gflops") or not math.isfinite(std):
        return fmt(metric, mean)
    return f"{fmt(metric, mean)} ± {fmt(metric, std)}"


def _signed(metric: str, v: float) -> str:
    text = fmt(metric, abs(v))
    return ("+" if v >= 0 else "−") + text


def fmt_p(p) -> str:
    """A p-value in two significant digits; ``<0.001`` below that; ``n/a`` when missing."""
    p = _num(p)
    if not math.isfinite(p):
        return NA
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def _p_is(p) -> str:
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
    if _is_true(row.get("baseline")):
        return "—"
    d, n = _num(row.get(f"{metric}_delta")), int(_num(row.get(f"{metric}_delta_n")) or 0)
    if not math.isfinite(d):
        return NA
    text = _signed(metric, d)
    if metric == "latency_ms":
        base = _num(row.get(f"{metric}_mean")) - d
        if base > 0:
            text += f" ({100 * d / base:+.1f}%)".replace("-", "−")
    if not ci:
        return text
    key = "delta_adj" if adjusted else "delta"
    lo, hi = _num(row.get(f"{metric}_{key}_lo")), _num(row.get(f"{metric}_{key}_hi"))
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} [CI {NA}, n={n}]"
    if not adjusted:
        return f"{text} [{_signed(metric, lo)}, {_signed(metric, hi)}]"
    if _is_true(row.get(f"{metric}_delta_sig")):
        text = f"**{text}**"
    p, p_holm = fmt_p(row.get(f"{metric}_delta_p")), fmt_p(row.get(f"{metric}_delta_p_holm"))
    p = p if p.startswith("<") else f"={p}"
    return f"{text} [{_signed(metric, lo)}, {_signed(metric, hi)}] p{p} (Holm {p_holm})"


def _level(v) -> str:
    """0.99 -> ``99%``, 0.9875 -> ``98.75%``."""
    return f"{100 * _num(v):.4g}%"


def _floats(col: pd.Series) -> list[float]:
    """Cells as floats, NaN for anything missing (also pandas' NA of nullable integer columns)."""
    return [_num(v) for v in col]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + [
        "| " + " | ".join(r) + " |" for r in esc
    ]


def _unique(runs: pd.DataFrame, col: str) -> str:
    """The distinct non-empty values of a column, comma-separated."""
    if col not in runs.columns:
        return ""
    return ", ".join(v for v in dict.fromkeys(as_strings(runs[col])) if v)


# -------------------------------------------------------------------------------------------------------- summary
def _primary(summary: pd.DataFrame) -> tuple[str, float]:
    """The (primary metric, target) the summary was computed with (the defaults for an older summary)."""
    metric = str(summary["primary_metric"].iloc[0]) if "primary_metric" in summary.columns else DEFAULT_METRIC
    target = _num(summary["target"].iloc[0]) if "target" in summary.columns else DEFAULT_TARGET
    return metric, target


def _interval(metric: str, r) -> str:
    lo, hi = _num(r.get(f"{metric}_delta_adj_lo")), _num(r.get(f"{metric}_delta_adj_hi"))
    return f"[{_signed(metric, lo)}, {_signed(metric, hi)}]"


def _arm_verdict(r, metric: str, target: float, base: str) -> str:
    """One plain-words line for a non-baseline arm: the verdict on the primary metric, then latency and Pareto."""
    label = METRICS[metric][0]
    verdict = str(r.get("verdict", ""))
    n = int(_num(r.get(f"{metric}_delta_n")) or 0)
    head = f"- **{r['arm']}** ({r['block']}): "
    if verdict == "failed":
        return head + f"failed: none of its {int(r['n_runs'])} runs finished; no comparison."
    d = _num(r.get(f"{metric}_delta"))
    if verdict == "undetermined":
        if n == 1:
            return head + f"undetermined: needs ≥2 paired seeds (has 1; Δ {label} {_signed(metric, d)} from it)."
        return head + f"undetermined: no seed finished in both this arm and the baseline {base}."
    stats = (f"Δ {_signed(metric, d)} {_interval(metric, r)} ({_level(r.get(f'{metric}_delta_adj_level'))} "
             f"interval, Holm p {_p_is(r.get(f'{metric}_delta_p_holm'))})")  # fmt: skip
    if verdict in ("better", "worse"):
        text = f"**{verdict}** on {label}: {stats}"
    else:
        text = f"no detectable difference in {label} at this precision: {stats}"
        lo, hi = _num(r.get(f"{metric}_delta_adj_lo")), _num(r.get(f"{metric}_delta_adj_hi"))
        if -target <= lo and hi <= target:
            text += f"; the interval rules out differences beyond ±{fmt(metric, target)}"
    parts = [text]
    if metric != "latency_ms":
        parts += [c for c in [_latency_clause(r)] if c]
    if _is_true(r.get("pareto")):
        parts.append("Pareto-optimal")
    return head + "; ".join(parts) + "."


def _latency_clause(r) -> str | None:
    """``latency +0.04 ms (+0.5%) [−2.9, +3.0]: no detectable difference`` (adjusted interval), or None."""
    d = _num(r.get("latency_ms_delta"))
    if not math.isfinite(d):
        return None
    text = f"latency {_signed('latency_ms', d)} ms"
    base = _num(r.get("latency_ms_mean")) - d
    if base > 0:
        text += f" ({100 * d / base:+.1f}%)".replace("-", "−")
    if int(_num(r.get("latency_ms_delta_n")) or 0) < 2 or not math.isfinite(_num(r.get("latency_ms_delta_adj_lo"))):
        return text + ": not resolved (fewer than 2 paired seeds)"
    word = ("faster" if d < 0 else "slower") if _is_true(r.get("latency_ms_delta_sig")) else "no detectable difference"
    return f"{text} {_interval('latency_ms', r)}: {word}"


def _verdict_section(summary: pd.DataFrame, metric: str, target: float, level: float) -> list[str]:
    label = METRICS[metric][0]
    lines = ["## Verdict", ""]
    base_rows = summary[summary["baseline"].map(_is_true)]
    if not len(base_rows):
        return lines + ["No baseline arm in this sweep: no Δ, no verdict.", ""]
    base = str(base_rows["arm"].iloc[0])
    others = summary[~summary["baseline"].map(_is_true)]
    if not len(others):
        return lines + [f"Only the baseline {base}: nothing to compare.", ""]
    if int(_num(base_rows["n_ok"].iloc[0]) or 0) == 0:
        return lines + [f"The baseline {base} has no finished run: no Δ, no verdict.", ""]
    m = sum(map(math.isfinite, _floats(others[f"{metric}_delta_p_holm"])))
    ns = sorted({int(_num(v) or 0) for v in others[f"{metric}_delta_n"] if int(_num(v) or 0) >= 2})
    seeds = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}") if ns else "fewer than 2"
    lines += [f"Δ {label} vs the baseline **{base}** over {seeds} paired seeds; intervals and p-values Holm-adjusted "
              f"for the {m} arm{'s' * (m != 1)} compared (family-wise {level:.0%}).", ""]  # fmt: skip
    lines += [_arm_verdict(r, metric, target, base) for _, r in others.iterrows()]
    front = summary[summary["pareto"].map(_is_true)] if "pareto" in summary.columns else summary.iloc[0:0]
    if len(front):
        pts = ", ".join(f"{r['arm']} ({fmt('map50_95', r['map50_95_mean'])}, {fmt('latency_ms', r['latency_ms_mean'])}"
                        " ms)" for _, r in front.sort_values("latency_ms_mean").iterrows())  # fmt: skip
        text = (f"- **Trade-off** (mean mAP50-95 vs mean latency): Pareto-optimal {pts}; each other arm is matched "
                "or beaten on both by one of these.")  # fmt: skip
        lat_n = _floats(others["latency_ms_delta_n"]) if "latency_ms_delta_n" in others else []
        if any(k >= 2 for k in lat_n) and not others["latency_ms_delta_sig"].map(_is_true).any():
            text += " No latency Δ is detectable, so the ordering by latency may be noise."
        lines.append(text)
    half = [v for v in _floats(others[f"{metric}_delta_half"]) if math.isfinite(v)]
    need = [int(v) for v in _floats(others[f"{metric}_seeds_needed"]) if math.isfinite(v)]
    if half and need:
        lo_h, hi_h = fmt(metric, min(half)), fmt(metric, max(half))
        now = f"±{lo_h}" if lo_h == hi_h else f"±{lo_h} to ±{hi_h}"
        text = f"- **Precision**: the 95% intervals of Δ {label} are {now} now"
        if max(half) <= target:
            text += f": the target ±{fmt(metric, target)} is reached"
        else:
            many = f"{min(need)}" if min(need) == max(need) else f"{min(need)}–{max(need)}"
            text += f"; ±{fmt(metric, target)} needs {many} paired seeds per arm"
        few = [str(r["arm"]) for _, r in others.iterrows()
               if int(_num(r.get("n_ok")) or 0) and int(_num(r.get(f"{metric}_delta_n")) or 0) < 2]  # fmt: skip
        if few:
            text += f" ({', '.join(few)}: fewer than 2 paired seeds, no interval yet)"
        lines.append(text + " (see Precision below).")
    return lines + [""]


def planning_line(r, metric: str, target: float, base: str) -> str:
    """``focal vs sppf, mAP50-95: ±0.031 now (3 seeds, SD 0.012); ±0.010 needs 9 seeds``, or why not."""
    label = METRICS[metric][0]
    head = f"{r['arm']} vs {base}, {label}: "
    if int(_num(r.get("n_ok")) or 0) == 0:
        return head + f"no finished run ({int(r['n_runs'])} failed)"
    n = int(_num(r.get(f"{metric}_delta_n")) or 0)
    half, sd = _num(r.get(f"{metric}_delta_half")), _num(r.get(f"{metric}_delta_sd"))
    need = _num(r.get(f"{metric}_seeds_needed"))
    if n < 2 or not math.isfinite(half):
        return head + f"needs ≥2 paired seeds (has {n})"
    now = f"±{fmt(metric, half)} now ({n} seeds, SD {fmt(metric, sd)}"
    if sd == 0:
        now += ": identical differences on every seed"
    now += ")"
    if half <= target:
        return head + f"{now}; target ±{fmt(metric, target)} reached"
    return head + f"{now}; ±{fmt(metric, target)} needs {int(need)} seeds"


def _precision_section(summary: pd.DataFrame, metric: str, target: float) -> list[str]:
    others = summary[~summary["baseline"].map(_is_true)]
    base_rows = summary[summary["baseline"].map(_is_true)]
    if not len(others) or not len(base_rows) or f"{metric}_delta_half" not in summary.columns:
        return []
    base = str(base_rows["arm"].iloc[0])
    label = METRICS[metric][0]
    return ["", "## Precision", "",
            f"Paired seeds needed for a 95% interval of ±{fmt(metric, target)} on Δ {label} (the target: "
            "`yolo-necks report --target`, or `target` in the spec), from the observed SD of the paired differences. "
            "\"now\" is the half-width of the current 95% interval: the smallest Δ these seeds resolve (the adjusted "
            "intervals above are wider). An SD from a few seeds is itself rough, so read the seed count as a guide; "
            "a sweep that adds seeds should stop on this precision, never on a p-value.", ""] + [
        "- " + planning_line(r, metric, target, base) for _, r in others.iterrows()]  # fmt: skip


def _start_line(runs: pd.DataFrame) -> str:
    """Where the arms' weights started: from scratch, or a pretrained checkpoint with, per arm, the tensors it
    filled and the layers that trained from scratch (the swapped block, class-count-dependent head convs)."""
    checkpoint = _unique(runs, "pretrained")
    if not checkpoint:
        return "- start: from scratch (random initialisation, no pretrained checkpoint)"
    freeze = _unique(runs, "freeze")
    per_arm = []
    for arm in dict.fromkeys(runs["arm"]):
        arm_runs = runs[runs["arm"] == arm]
        transferred = _unique(arm_runs, "transferred") or NA
        scratch = _unique(arm_runs, "scratch_layers").replace("; ", ", ") or "none"
        per_arm.append(f"{arm} {transferred} tensors (from scratch: {scratch})")
    return (f"- start: every arm from `{checkpoint}` (sha256 {_unique(runs, 'pretrained_sha')}), "
            f"freeze {freeze or 'none'}; transferred: " + "; ".join(per_arm))


def render_markdown(results: pd.DataFrame, summary: pd.DataFrame, level: float = 0.95) -> str:
    """``summary.md``: title, verdict, setting, the table with its note, precision planning, failed runs."""
    runs = latest_runs(results)
    metric, target = _primary(summary)
    sweep = _unique(runs, "sweep") or "sweep"
    reduced = _unique(runs, "reduced")
    title = f"# Neck ablation `{sweep}`" + (f" (reduced: {reduced})" if reduced else "")
    lines = [title, ""]
    if reduced:
        lines += [f"> **Reduced sweep ({reduced})**: smaller images, fewer images and epochs (and easier dataset parameters) than the full sweep so "
                  "that it finishes on this machine. Params, GFLOPs and latency are exact for this setting; mAP after "
                  "so short a schedule from scratch is a rough early-training signal, not a final result.", ""]  # fmt: skip
    lines += _verdict_section(summary, metric, target, level)
    lines += ["## Runs", ""]
    base = summary[summary["baseline"]]["arm"].tolist() if len(summary) else []
    seeds = " ".join(str(s) for s in dict.fromkeys(runs["seed"]))
    setting = [
        f"model {_unique(runs, 'model')} scale {_unique(runs, 'scale')}",
        f"data {_unique(runs, 'data')} {_unique(runs, 'data_params').replace('{}', '')}".rstrip(),
        f"{_unique(runs, 'epochs')} epochs, imgsz {_unique(runs, 'imgsz')}, batch {_unique(runs, 'batch')}",
        f"seeds {seeds}, deterministic",
        f"device {_unique(runs, 'device')} ({_unique(runs, 'device_name')})",
        f"train_args {_unique(runs, 'train_args') or '{}'}",
    ]
    lines += ["- " + "; ".join(setting[:3]), "- " + "; ".join(setting[3:])]
    ok = runs[runs["status"].astype(str) == "ok"]
    if len(ok):
        lines.append(
            f"- speed: fused model in eval mode, forward pass only (no pre-processing or NMS), "
            f"{_unique(ok, 'speed_dtype')} on {_unique(ok, 'speed_device')} ({_unique(ok, 'speed_device_name')}); "
            f"latency = batch-1 median (and p90) of {_unique(ok, 'speed_repeats')} timed passes after "
            f"{_unique(ok, 'speed_warmup')} warm-up passes; throughput at batch {_unique(ok, 'throughput_batch')} "
            f"({_unique(ok, 'throughput_repeats')} timed passes)"
        )
    lines.append(
        "- mAP from ultralytics' validator on the val split with each run's best weights; params/GFLOPs from "
        "ultralytics (unfused model, at imgsz). Failed runs are not averaged."
    )
    lines.append(_start_line(runs))
    mixed = mixed_settings(results)
    if mixed:
        what = "; ".join(f"{k}: {' vs '.join(v)}" for k, v in mixed.items())
        lines += ["", f"> **Warning**: the latest runs do not share the same settings ({what}); deltas mix them."]
    lines.append("")
    header = ["Arm", "Block", "Runs ok"]
    for col, delta in TABLE:
        label = METRICS[col][0]
        header.append(label)
        if delta:
            header.append(f"Δ {label} [adj. CI] p (Holm)")
    header.append("Pareto")
    rows = []
    for _, r in summary.iterrows():
        arm = f"**{r['arm']}** (baseline)" if r["baseline"] else str(r["arm"])
        runs_ok = f"{int(r['n_ok'])}/{int(r['n_runs'])}"
        if int(r["n_failed"]):
            runs_ok += f" ({int(r['n_failed'])} failed)"
        cells = [arm, str(r["block"]), runs_ok]
        for col, delta in TABLE:
            if int(r["n_ok"]) == 0:
                cells.append("failed")
                if delta:
                    cells.append(NA)
                continue
            cells.append(fmt_mean_std(col, r))
            if delta:
                cells.append(fmt_delta(col, r))
        cells.append("yes" if _is_true(r.get("pareto")) else "")
        rows.append(cells)
    lines += _md_table(header, rows)
    lines += ["", _table_note(summary, base, metric, level)]
    lines += _precision_section(summary, metric, target)
    failed = runs[runs["status"].astype(str) != "ok"]
    if len(failed):
        lines += ["", "## Failed runs", ""]
        lines += _md_table(
            ["Arm", "Seed", "Status", "Error", "Run folder"],
            [[str(r["arm"]), str(r["seed"]), str(r["status"]), str(r.get("error", "")), str(r.get("run_dir", ""))]
             for _, r in failed.iterrows()],
        )  # fmt: skip
    bad = results.attrs.get("unreadable") or []
    if bad:
        lines += ["", f"> **Warning**: {RESULTS} has {len(bad)} unreadable line(s) ({', '.join(map(str, bad))}: "
                  "truncated or not a results row); they are left out of this summary and kept in the file."]
    lines += ["", f"Generated by `yolo-necks report` from {RESULTS} ({len(results)} rows, {len(runs)} latest runs)."]
    return "\n".join(lines) + "\n"


def _table_note(summary: pd.DataFrame, base: list[str], metric: str, level: float) -> str:
    """The note under the table: what Δ, the adjusted interval, the bold mark, p, Holm and Pareto mean."""
    alpha = 1.0 - level
    others = summary[~summary["baseline"].map(_is_true)]
    m = sum(map(math.isfinite, _floats(others[f"{metric}_delta_p_holm"])))
    family = (f"the m = {m} arms compared with the baseline (per metric; arms with fewer than 2 paired seeds have no "
              "p-value and do not count)")  # fmt: skip
    return (
        f"Δ = arm − baseline ({', '.join(base) or 'none'}), paired by seed. [adj. CI]: Student-t interval over the "
        f"paired seeds, adjusted for {family} consistently with Holm's procedure: at level 1 − {alpha:g}/m "
        + (f"({_level(1 - alpha / m)}) " if m else "")
        + f"for a Δ Holm does not reject, at 1 − {alpha:g}/(m − j + 1) for the Δ rejected at Holm step j. "
        f"**Bold** Δ: the adjusted interval excludes 0, exactly when the Holm-adjusted p ≤ {alpha:g} (family-wise "
        f"error ≤ {alpha:.0%}). p: paired t-test; Holm: Holm-adjusted p. CI n/a: fewer than 2 paired seeds. "
        f"Unadjusted {level:.0%} intervals are in summary.csv (`*_delta_lo`, `*_delta_hi`). Pareto: no other arm is "
        "at least as accurate (mean mAP50-95) and at least as fast (mean latency) and better on one (the front in "
        "pareto.png)."
    )


def plot_pareto(summary: pd.DataFrame, path: Path, title: str, xlabel: str) -> Path:
    """mAP50-95 against batch-1 latency, mean ± std over seeds, baseline marked, Pareto front drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pts = summary[(summary["n_ok"] > 0)].copy()
    pts = pts[pts["latency_ms_mean"].map(_num).map(math.isfinite) & pts["map50_95_mean"].map(_num).map(math.isfinite)]
    for _, r in pts.iterrows():
        x, y = float(r["latency_ms_mean"]), float(r["map50_95_mean"])
        xerr = _num(r["latency_ms_std"])
        yerr = _num(r["map50_95_std"])
        is_base = bool(r["baseline"])
        ax.errorbar(
            x, y, xerr=xerr if math.isfinite(xerr) else None, yerr=yerr if math.isfinite(yerr) else None,
            fmt="*" if is_base else "o", ms=14 if is_base else 7, color="tab:red" if is_base else "tab:blue",
            ecolor="0.55", elinewidth=1, capsize=3, zorder=3,
        )  # fmt: skip
        ax.annotate(f"{r['arm']}" + (" (baseline)" if is_base else ""), (x, y), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)  # fmt: skip
    front = pts[pts["arm"].isin(pareto_arms(pts))].sort_values("latency_ms_mean")  # the table's Pareto column
    if len(front) > 1:
        ax.plot(front["latency_ms_mean"].astype(float), front["map50_95_mean"].astype(float), "--", color="0.6", lw=1,
                zorder=1, label="Pareto front")  # fmt: skip
        ax.legend(loc="lower right", fontsize=8)
    if not len(pts):
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    failed = [str(a) for a in summary[summary["n_ok"] == 0]["arm"]]
    if failed:
        ax.text(0.01, 0.01, f"failed, not shown: {', '.join(failed)}", transform=ax.transAxes, fontsize=8,
                color="tab:red", va="bottom")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP50-95 (val), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def report_settings(folder: str | Path, target: float | None = None, metric: str | None = None) -> tuple[str, float]:
    """The primary ``metric`` and precision ``target`` of a sweep's report: the arguments when given, else the
    sweep folder's ``spec.yaml`` (top-level ``metric``/``target``, or ``target``/``metric`` inside a ``seeds``
    mapping such as ``{min: 3, max: 20, target: 0.01}``), else ``map50_95`` and 0.01."""
    spec: dict = {}
    path = Path(folder) / "spec.yaml"
    if (target is None or metric is None) and path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            loaded = None  # the report only needs results.csv; an unreadable spec means the defaults
        spec = loaded if isinstance(loaded, dict) else {}
    seeds = spec.get("seeds") if isinstance(spec.get("seeds"), dict) else {}
    values = {}
    for key, given, default in (("metric", metric, DEFAULT_METRIC), ("target", target, DEFAULT_TARGET)):
        if given is not None:
            values[key] = (given, "report")
        elif key in spec or key in seeds:
            values[key] = (spec[key] if key in spec else seeds[key], f"{path}: key '{key}'")
        else:
            values[key] = (default, "report")
    (metric, metric_src), (target, target_src) = values["metric"], values["target"]
    try:
        check_metric_target(str(metric), DEFAULT_TARGET)
    except ValueError as e:
        raise NeckConfigError(f"{metric_src}: {e}") from None
    try:
        return check_metric_target(str(metric), target)
    except ValueError as e:
        raise NeckConfigError(f"{target_src}: {e}") from None


def write_report(sweep: str | Path, target: float | None = None, metric: str | None = None) -> dict:
    """(Re)generate ``summary.csv``, ``summary.md`` and ``pareto.png`` of a sweep folder (or next to a results.csv).

    ``metric`` (primary metric of the verdicts and planning) and ``target`` (wanted half-width of its 95% interval
    of Δ) default to the folder's spec.yaml, else ``map50_95`` and 0.01 (:func:`report_settings`).
    Returns ``{"summary": DataFrame, "markdown": str, "paths": [...], "metric": str, "target": float}``.
    """
    p = Path(sweep)
    folder = p if p.is_dir() else p.parent
    results = load_results(p)
    metric, target = report_settings(folder, target, metric)
    summary = summarize(results, metric=metric, target=target)
    if summary.empty:
        raise NeckConfigError(f"{folder / RESULTS}: no runs recorded yet")
    md = render_markdown(results, summary)
    from .store import atomic_write

    atomic_write(folder / SUMMARY_CSV, summary.to_csv(index=False))
    atomic_write(folder / SUMMARY_MD, md)
    runs = latest_runs(results)
    ok = runs[runs["status"].astype(str) == "ok"]
    sweep_name = _unique(runs, "sweep") or folder.name
    reduced = _unique(runs, "reduced")
    title = f"{sweep_name}: mAP50-95 vs latency" + (f" (reduced: {reduced})" if reduced else "")
    xlabel = "batch-1 latency (ms)"
    if len(ok):
        xlabel += f", {_unique(ok, 'speed_dtype')} on {_unique(ok, 'speed_device_name') or _unique(ok, 'speed_device')}"
    plot_pareto(summary, folder / PARETO, title, xlabel)
    paths = [folder / n for n in (SUMMARY_CSV, SUMMARY_MD, PARETO)]
    return {"summary": summary, "markdown": md, "paths": paths, "metric": metric, "target": target}


# -------------------------------------------------------------------------------------------------------- compare
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
        summary = pd.read_csv(p)
        summary["baseline"] = summary["baseline"].astype(str).str.lower().isin(["true", "1"])
        if not any(c.endswith("_delta_p_holm") for c in summary.columns):  # written before Holm: derive it
            summary = add_inference(summary)
    elif "status" in head:
        summary = summarize(load_results(p))
    else:
        raise NeckConfigError(f"{p}: neither a results.csv nor a summary.csv of a sweep")
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
    header = ["Arm"]
    for label in labels:
        for m in metrics:
            header += [f"{label}: {METRICS[m][0]}", f"{label}: Δ vs baseline"]
    first = metrics[0]
    for label in labels[1:]:
        header.append(f"{METRICS[first][0]}: {label} − {labels[0]}")
    rows = []
    for arm in arms:
        cells = [arm]
        means = []
        for s in loaded:
            hit = s[s["arm"] == arm]
            r = hit.iloc[0].to_dict() if len(hit) else None
            means.append(_num(r.get(f"{first}_mean")) if r else float("nan"))
            for m in metrics:
                if r is None:
                    cells += ["—", "—"]
                elif int(_num(r.get("n_ok")) or 0) == 0:
                    cells += ["failed", NA]
                else:
                    cells += [fmt_mean_std(m, r), fmt_delta(m, r)]
        for mean in means[1:]:
            d = mean - means[0]
            cells.append(_signed(first, d) if math.isfinite(d) else NA)
        rows.append(cells)
    lines = ["# Sweep comparison", ""]
    for label, s, p in zip(labels, loaded, paths):
        base = ", ".join(s[s["baseline"]]["arm"]) or "none"
        info = [f"baseline {base}"]
        for col, name in (("reduced", "reduced"), ("epochs", "epochs"), ("imgsz", "imgsz"), ("data", "data"),
                          ("device", "device")):  # fmt: skip
            if col in s.columns and s[col].notna().any() and str(s[col].dropna().iloc[0]) not in ("", "nan"):
                info.append(f"{name} {s[col].dropna().iloc[0]}")
        lines.append(f"- **{label}** ({p}): " + ", ".join(info))
    lines += [
        "",
        "Δ vs baseline: paired by seed within each sweep; [interval] from Student's t, adjusted (Holm) for the arms "
        "each sweep compares with its baseline, per metric; p: paired t-test, Holm: Holm-adjusted p; **bold**: the "
        "adjusted interval excludes 0 (Holm-adjusted p ≤ 0.05). The last column(s): difference of means between "
        "sweeps (not paired).",
        "",
    ]
    lines += _md_table(header, rows)
    return "\n".join(lines) + "\n"
